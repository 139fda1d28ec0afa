#!/usr/bin/env bash
# Runs the whole tier locally on embedded defaults, pushes the sample appointments through
# the reference EMR connector, lets the worker send, and says where to look:
#
#   cache-server     127.0.0.1:50051 (gRPC over mutual TLS), metrics 127.0.0.1:9464
#   survey-bridge    https://localhost:8443 (pages, reports), ledger 127.0.0.1:50052,
#                    http://localhost:8080 redirects, metrics 127.0.0.1:9466
#   outreach-worker  metrics 127.0.0.1:9465; LOCAL-ONLY channels: SMS to a file outbox,
#                    email to a local mail sink (Debian's python3-aiosmtpd on 127.0.0.1:2525,
#                    a Maildir), quiet hours off so that the demonstration sends at any hour
#
# Everything lives in ./state: a development CA and keys, SQLite files, audit logs, the
# outboxes. Ctrl-C stops all of it cleanly. Run it again to start again with the same state:
# the cache starts empty, by design, so the sample is pushed again (new GUIDs); patients who
# declined or unsubscribed stay on the suppression list and get nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

state=state
certs=$state/certs
mkdir -p "$state" "$state/emr"
if ! /usr/bin/python3 -c "import aiosmtpd" 2>/dev/null; then
  echo "run-local: the local mail sink needs Debian's aiosmtpd: apt-get install python3-aiosmtpd" >&2
  exit 69
fi
cargo build --release -p cache-server -p survey-bridge -p outreach-worker -p emr-connector
release=${CARGO_TARGET_DIR:-target}/release
bin=$release/cache-server
bridge=$release/survey-bridge
worker=$release/outreach-worker
connector=$release/emr-connector

if [[ ! -f $certs/survey-bridge-secret.key ]]; then
  "$bin" certs --out "$certs"
fi
if [[ ! -f $certs/suppression.key ]]; then
  (umask 077; od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$certs/suppression.key")
fi
mkdir -p "$state/mail/cur" "$state/mail/new" "$state/mail/tmp"

extra=() worker_extra=()
if [[ $(id -u) -ne 0 ]]; then
  echo "note: not root, so memory cannot be locked past RLIMIT_MEMLOCK; starting the cache and the worker unlocked (development only)"
  extra+=(--allow-unlocked)
  worker_extra+=(--set memory.allow_unlocked=true)
fi

cache_args=(--config deploy/cache-server.example.toml \
  --set "tls.cert=$certs/cache-server.pem" \
  --set "tls.key=$certs/cache-server.key" \
  --set "tls.client_ca=$certs/ca.pem" \
  --set "audit.path=$state/audit.jsonl" \
  --set "audit.key_file=$certs/audit.key" \
  "${extra[@]}" "$@")

bridge_args=(--config deploy/survey-bridge.example.toml \
  --set "database_url=sqlite://$state/survey-bridge.db?mode=rwc" \
  --set "key_file=$certs/survey-bridge-secret.key" \
  --set "tls.cert=$certs/survey-bridge.pem" \
  --set "tls.key=$certs/survey-bridge.key" \
  --set "tls.client_ca=$certs/ca.pem" \
  --set "audit.path=$state/survey-bridge-audit.jsonl" \
  --set "audit.key_file=$certs/audit.key" \
  --set "cache.ca=$certs/ca.pem" \
  --set "cache.cert=$certs/bridge.pem" \
  --set "cache.key=$certs/bridge.key" \
  --set "http_listen=127.0.0.1:8080")

worker_args=(--config deploy/outreach-worker.example.toml \
  --set "database_url=sqlite://$state/outreach-worker.db?mode=rwc" \
  --set "key_file=$certs/suppression.key" \
  --set "metrics_listen=127.0.0.1:9465" \
  --set "cache.ca=$certs/ca.pem" --set "cache.cert=$certs/outreach.pem" \
  --set "cache.key=$certs/outreach.key" \
  --set "bridge.ca=$certs/ca.pem" --set "bridge.cert=$certs/outreach.pem" \
  --set "bridge.key=$certs/outreach.key" \
  --set "email.host=127.0.0.1" --set "email.port=2525" --set "email.tls=none" \
  --set "sms.outbox=$state/sms-outbox.jsonl" \
  --set "quiet_hours.enabled=false" \
  --set "sms.per_second=50" --set "email.per_second=50" \
  --set "worker.poll_seconds=1" "${worker_extra[@]}")

pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "stopping: worker, bridge, cache, mail sink"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

wait_port() {
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "run-local: nothing listens on 127.0.0.1:$1; see the logs in $state/" >&2
  exit 69
}

/usr/bin/python3 -m aiosmtpd -n -l 127.0.0.1:2525 -c aiosmtpd.handlers.Mailbox "$state/mail" \
  2>>"$state/mail-sink.log" &
pids+=($!)
"$bin" "${cache_args[@]}" 2>>"$state/cache-server.log" &
pids+=($!)
"$bridge" "${bridge_args[@]}" 2>>"$state/survey-bridge.log" &
pids+=($!)
wait_port 2525
wait_port 50051
wait_port 8443
"$worker" "${worker_args[@]}" 2>>"$state/outreach-worker.log" &
pids+=($!)
wait_port 9465

# The demonstration's report reader: a provider of site-1001. Re-runs reset the password.
if "$bridge" "${bridge_args[@]}" account list | grep -q '^demo.provider'; then
  account=$("$bridge" "${bridge_args[@]}" account reset demo.provider --totp)
else
  account=$("$bridge" "${bridge_args[@]}" account add demo.provider --role provider \
    --site site-1001 --provider prov-a1)
fi
password=$(sed -n 's/.*password: \([^ ]*\).*/\1/p' <<<"$account" | head -n 1)

# The EMR side: the sample export split by site (one connector certificate per site),
# pushed with the reference connector. The GUID maps are the clinic's to keep; the old ones
# name GUIDs of the previous run's cache, which a restart emptied, so they go.
rm -f "$state"/emr/*.guids.csv
for site in site-1001 site-1002 site-1003; do
  csv=$state/emr/$site.csv
  if [[ ! -f $csv ]]; then
    awk -F, -v site="$site" 'NR == 1 || $2 == site' testdata/contacts.csv >"$csv"
  fi
  "$connector" push --url https://localhost:50051 --server-name localhost --ca "$certs/ca.pem" \
    --cert "$certs/emr-$site.pem" --key "$certs/emr-$site.key" --map "$state/emr/$site.guids.csv" "$csv"
done

echo "waiting for the worker to send..."
for _ in $(seq 1 120); do
  left=$(curl -s http://127.0.0.1:9464/metrics | awk '$1 == "cache_entries" { print $2 }')
  [[ ${left:-1} == 0 ]] && break
  sleep 1
done
sms_count=$(wc -l <"$state/sms-outbox.jsonl" 2>/dev/null || echo 0)
mail_count=$(find "$state/mail/new" -type f | wc -l)
links=$(grep -ho 'https://localhost:8443/s/[0-9a-f-]\{36\}' "$state/sms-outbox.jsonl" 2>/dev/null | head -n 3 || true)

cat <<MSG

The tier is running (logs: $state/*.log; audit: $state/audit.jsonl, $state/survey-bridge-audit.jsonl).

Sent invitations (LOCAL-ONLY channels, they hold the sample's fictional contact details):
  SMS    $sms_count in $state/sms-outbox.jsonl (one JSON line each)
  email  $mail_count in $state/mail/new/ (one file each)

A few consent links (trust $certs/ca.pem, or accept the browser's warning):
$(sed 's/^/  /' <<<"$links")

Reports: https://localhost:8443/login
  user demo.provider, password $password
  (the second factor is set up at the first sign-in: scan the QR code with an authenticator)
  Reports show released periods only (a month is released 7 days after it ends), so this
  run's answers, counted in the live month, appear once it is; until then the report says
  there is nothing to show yet. Answers wait sealed in a pool until 5 of a provider's month
  are in (the bridge folds them hourly).

cache-server     gRPC 127.0.0.1:50051 (mutual TLS, server name localhost), callers' certificates
                 in $certs/{emr-site-1001,outreach,bridge,admin}.pem; metrics
                 curl http://127.0.0.1:9464/metrics
survey-bridge    https://localhost:8443 (http://localhost:8080 redirects), ledger 127.0.0.1:50052,
                 $state/survey-bridge.db; metrics curl http://127.0.0.1:9466/metrics
outreach-worker  metrics curl http://127.0.0.1:9465/metrics; suppression list
                 $state/outreach-worker.db (HMACs only)
EMR connector    GUID maps in $state/emr/*.guids.csv; push more with
                 $connector push --help
Configs          deploy/*.example.toml, overridden by the flags in this script.

Ctrl-C stops everything.
MSG
wait "${pids[@]}"
