#!/usr/bin/env bash
# Runs the whole tier locally on embedded defaults, pushes the sample appointments through
# the reference EMR connector, lets the worker send, and says where to look:
#
#   cache-server     127.0.0.1:50051 (gRPC over mutual TLS), metrics 127.0.0.1:9464
#   survey-bridge    https://localhost:8443 (pages, reports), ledger 127.0.0.1:50052,
#                    http://localhost:8080 redirects, metrics 127.0.0.1:9466
#   outreach-worker  metrics 127.0.0.1:9465; LOCAL-ONLY channels: SMS to a file outbox,
#                    email to the worker's own Maildir outbox (email_outbox), quiet hours off
#                    so that the demonstration sends at any hour
#
# Everything lives in ./state: a development CA and keys, SQLite files, audit logs, the
# outboxes. Ctrl-C stops all of it cleanly. Run it again to start again with the same state:
# the cache starts empty, by design, so the sample is pushed again (new GUIDs); patients who
# declined or unsubscribed stay on the suppression list and get nothing.
#
# Needs only bash, the usual base tools (coreutils, awk, sed, grep, find) and Rust with a C
# compiler to build. Optional: curl, to read the metrics by hand (a note says so when it is
# missing; the script itself reads them over bash's /dev/tcp).
#
# Settings, by environment:
#   RUN_LOCAL_STATE=DIR       the state directory (default ./state), e.g. a temporary one
#   RUN_LOCAL_BIN_DIR=DIR     use the binaries already built in DIR (e.g. target/debug)
#                             instead of `cargo build --release`
#   RUN_LOCAL_UNTIL_SENT=1    unattended (CI): start everything, push the sample, wait until
#                             its invitations are in the outboxes, print the summary, stop
#                             everything and exit 0; exit 1 with the reason on failure
#   RUN_LOCAL_TIMEOUT=SECONDS how long to wait for the sends (default 180)
# Any arguments are passed to the cache server.
set -euo pipefail
cd "$(dirname "$0")/.."

state=${RUN_LOCAL_STATE:-state}
certs=$state/certs
until_sent=${RUN_LOCAL_UNTIL_SENT:-0}
timeout=${RUN_LOCAL_TIMEOUT:-180}
mkdir -p "$state" "$state/emr"

fail() {
  echo "run-local: $*" >&2
  exit 1
}

command -v curl >/dev/null || echo "note: curl is not installed (optional): the metrics addresses below need an HTTP client to read by hand"

# Every port this run serves must be free: a daemon left over from another run would answer
# in place of the new one.
ports=(50051 9464 8443 8080 50052 9466 9465)
for port in "${ports[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "run-local: 127.0.0.1:$port is already in use (another run-local?); stop it first" >&2
    exit 69
  fi
done

if [[ -n ${RUN_LOCAL_BIN_DIR:-} ]]; then
  bindir=$RUN_LOCAL_BIN_DIR
  for b in cache-server survey-bridge outreach-worker emr-connector; do
    [[ -x $bindir/$b ]] || fail "$bindir/$b is missing: build it first (cargo build -p $b)"
  done
else
  cargo build --release -p cache-server -p survey-bridge -p outreach-worker -p emr-connector
  bindir=${CARGO_TARGET_DIR:-target}/release
fi
bin=$bindir/cache-server
bridge=$bindir/survey-bridge
worker=$bindir/outreach-worker
connector=$bindir/emr-connector

if [[ ! -f $certs/survey-bridge-secret.key ]]; then
  "$bin" certs --out "$certs"
fi
if [[ ! -f $certs/suppression.key ]]; then
  (umask 077; od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$certs/suppression.key")
fi
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
  --set "email_outbox=$state/mail" \
  --set "sms.outbox=$state/sms-outbox.jsonl" \
  --set "quiet_hours.enabled=false" \
  --set "sms.per_second=50" --set "email.per_second=50" \
  --set "worker.poll_seconds=1" "${worker_extra[@]}")

pids=() names=()
# SIGTERM to every daemon (the worker first, so that its sends under way finish while the
# cache and the bridge still answer), then up to 30 seconds for each to exit. Returns 1 when
# one had to be killed or exited with an error.
stop_all() {
  local clean=0 i pid status
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
  done
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[i]}
    for _ in $(seq 1 300); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "run-local: ${names[i]} did not stop within 30 s; killed" >&2
      kill -KILL "$pid" 2>/dev/null || true
      clean=1
    fi
    status=0
    wait "$pid" 2>/dev/null || status=$?
    if ((status != 0)); then
      echo "run-local: ${names[i]} exited with status $status; see $state/${names[i]}.log" >&2
      clean=1
    fi
  done
  pids=()
  return "$clean"
}
stop() {
  trap - INT TERM EXIT
  echo
  echo "stopping: worker, bridge, cache"
  stop_all || true
}
trap stop INT TERM EXIT

start() {
  local name=$1
  shift
  "$@" 2>>"$state/$name.log" &
  pids+=($!)
  names+=("$name")
}

# Whether every daemon started so far still runs; names the first that does not.
all_running() {
  local i
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[i]}" 2>/dev/null; then
      echo "run-local: ${names[i]} stopped; see $state/${names[i]}.log" >&2
      return 1
    fi
  done
}

wait_port() {
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    all_running || exit 69
    sleep 0.1
  done
  echo "run-local: nothing listens on 127.0.0.1:$1; see the logs in $state/" >&2
  exit 69
}

# The value of the metric $2 at 127.0.0.1:$1/metrics (no labels), or nothing: plain HTTP over
# bash's /dev/tcp, so that no HTTP client is needed.
metric() {
  local port=$1 name=$2
  timeout 5 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 0
    printf "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n" "$1" >&3
    cat <&3' _ "$port" 2>/dev/null | tr -d '\r' | awk -v name="$name" '$1 == name { print $2 }' || true
}

start cache-server "$bin" "${cache_args[@]}"
start survey-bridge "$bridge" "${bridge_args[@]}"
wait_port 50051
wait_port 8443
start outreach-worker "$worker" "${worker_args[@]}"
wait_port 9465

# The demonstration's report reader: a provider of site-1001. Re-runs reset the password.
if "$bridge" "${bridge_args[@]}" account list | grep -q '^demo.provider'; then
  account=$("$bridge" "${bridge_args[@]}" account reset demo.provider --totp)
else
  account=$("$bridge" "${bridge_args[@]}" account add demo.provider --role provider \
    --site site-1001 --provider prov-a1)
fi
password=$(sed -n 's/.*password: \([^ ]*\).*/\1/p' <<<"$account" | head -n 1)

# Invitations in the outboxes: SMS lines, email files; counted before the push too, since
# the outboxes of an earlier run stay.
count_sms() { if [[ -f $state/sms-outbox.jsonl ]]; then wc -l <"$state/sms-outbox.jsonl"; else echo 0; fi; }
count_mail() { find "$state/mail/new" -type f 2>/dev/null | wc -l; }
sms_before=$(count_sms) mail_before=$(count_mail)

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
left=
deadline=$((SECONDS + timeout))
while ((SECONDS < deadline)); do
  all_running || fail "a daemon stopped while the sample was being sent"
  left=$(metric 9464 cache_entries)
  [[ $left == 0 ]] && break
  sleep 1
done
sms_count=$(count_sms)
mail_count=$(count_mail)
links=$(grep -ho 'https://localhost:8443/s/[0-9a-f-]\{36\}' "$state/sms-outbox.jsonl" 2>/dev/null | tail -n 3 || true)

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

MSG

if [[ $until_sent == 1 ]]; then
  sent_sms=$((sms_count - sms_before)) sent_mail=$((mail_count - mail_before))
  echo "this run: $sent_sms SMS and $sent_mail email sent; ${left:-an unknown number of} contact(s) left in the cache"
  trap - INT TERM EXIT
  echo "stopping: worker, bridge, cache"
  if [[ $left != 0 ]]; then
    stop_all || true
    fail "timed out after ${timeout}s: the cache still holds ${left:-an unknown number of} contact(s); see $state/*.log"
  fi
  if ((sent_sms == 0 || sent_mail == 0)); then
    stop_all || true
    fail "the cache is empty but an outbox got nothing ($sent_sms SMS, $sent_mail email); see $state/outreach-worker.log"
  fi
  stop_all || fail "not every daemon stopped cleanly"
  echo "run-local: all stopped cleanly"
  exit 0
fi
echo "Ctrl-C stops everything."
wait "${pids[@]}"
