#!/usr/bin/env bash
# Runs the tier locally on embedded defaults: a development CA, certificates and keys in
# ./state/certs, the cache on 127.0.0.1:50051 (gRPC over mutual TLS, metrics on
# 127.0.0.1:9464), the survey bridge on https://localhost:8443 (ledger on 127.0.0.1:50052,
# SQLite in ./state), and the outreach worker sending email to a local mail sink (Debian's
# python3-aiosmtpd on 127.0.0.1:2525, writing the Maildir ./state/mail). Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."

state=state
mkdir -p "$state"
cargo build --release -p cache-server -p survey-bridge -p outreach-worker
bin=target/release/cache-server
bridge=target/release/survey-bridge
worker=target/release/outreach-worker

if [[ ! -f $state/certs/survey-bridge-secret.key ]]; then
  "$bin" certs --out "$state/certs"
fi
if [[ ! -f $state/certs/suppression.key ]]; then
  (umask 077; od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$state/certs/suppression.key")
fi
mkdir -p "$state/mail/cur" "$state/mail/new" "$state/mail/tmp"

extra=()
if [[ $(id -u) -ne 0 ]]; then
  echo "note: not root, so memory cannot be locked past RLIMIT_MEMLOCK; starting with --allow-unlocked (development only)"
  extra+=(--allow-unlocked)
fi

bridge_args=(--config deploy/survey-bridge.example.toml \
  --set "database_url=sqlite://$state/survey-bridge.db?mode=rwc" \
  --set "key_file=$state/certs/survey-bridge-secret.key" \
  --set "tls.cert=$state/certs/survey-bridge.pem" \
  --set "tls.key=$state/certs/survey-bridge.key" \
  --set "tls.client_ca=$state/certs/ca.pem" \
  --set "audit.path=$state/survey-bridge-audit.jsonl" \
  --set "audit.key_file=$state/certs/audit.key" \
  --set "cache.ca=$state/certs/ca.pem" \
  --set "cache.cert=$state/certs/bridge.pem" \
  --set "cache.key=$state/certs/bridge.key" \
  --set "http_listen=127.0.0.1:8080")

worker_args=(--config deploy/outreach-worker.example.toml \
  --set "database_url=sqlite://$state/outreach-worker.db?mode=rwc" \
  --set "key_file=$state/certs/suppression.key" \
  --set "metrics_listen=127.0.0.1:9465" \
  --set "cache.ca=$state/certs/ca.pem" --set "cache.cert=$state/certs/outreach.pem" \
  --set "cache.key=$state/certs/outreach.key" \
  --set "bridge.ca=$state/certs/ca.pem" --set "bridge.cert=$state/certs/outreach.pem" \
  --set "bridge.key=$state/certs/outreach.key" \
  --set "email.host=127.0.0.1" --set "email.port=2525" --set "email.tls=none" \
  --set "worker.poll_seconds=2")

cat <<MSG

cache-server (development set-up)
  gRPC over TLS   127.0.0.1:50051   (trust $state/certs/ca.pem, server name localhost)
  callers         mutual TLS: $state/certs/{emr-site-1001,outreach,bridge,admin}.pem/.key
  audit log       $state/audit.jsonl  (GUIDs as HMACs: target/release/cache-server audit-hash --key-file $state/certs/audit.key GUID)
  health          grpc.health.v1.Health on the same port; server reflection too
  metrics         curl http://127.0.0.1:9464/metrics
  config          deploy/cache-server.example.toml, overridden by the flags below

survey-bridge (development set-up)
  patient pages   https://localhost:8443/s/<GUID>   (trust $state/certs/ca.pem; http://localhost:8080 redirects there)
  ledger          gRPC over mutual TLS on 127.0.0.1:50052 (outreach certificate)
  database        $state/survey-bridge.db (SQLite); declines reach the cache's OptOut via its outbox
  audit log       $state/survey-bridge-audit.jsonl
  config          deploy/survey-bridge.example.toml, overridden by the flags below
  reports         https://localhost:8443/login; make an account first:
                  $bridge ${bridge_args[*]} account add dr.lee --role provider --site site-1001 --provider prov-a1

outreach-worker (development set-up)
  sends           email only, to the local mail sink on 127.0.0.1:2525 (no SMS provider here)
  mail sink       $state/mail/new/ (one file per message: the invitation with its /s/<GUID> link)
  suppression     $state/outreach-worker.db (HMACs only)
  metrics         curl http://127.0.0.1:9465/metrics
  config          deploy/outreach-worker.example.toml, overridden by the flags below
  quiet hours     09:00-20:00 in the patient's time zone: outside them invitations wait

Stop with Ctrl-C: requests in flight finish, then the cache's store is erased.

MSG
"$bridge" "${bridge_args[@]}" &
pids=($!)
trap 'kill -TERM "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null' EXIT

if /usr/bin/python3 -c "import aiosmtpd" 2>/dev/null; then
  /usr/bin/python3 -m aiosmtpd -n -l 127.0.0.1:2525 -c aiosmtpd.handlers.Mailbox "$state/mail" &
  pids+=($!)
  "$worker" "${worker_args[@]}" &
  pids+=($!)
else
  echo "note: the outreach worker needs a mail sink here: apt-get install python3-aiosmtpd; not started"
fi

"$bin" --config deploy/cache-server.example.toml \
  --set "tls.cert=$state/certs/cache-server.pem" \
  --set "tls.key=$state/certs/cache-server.key" \
  --set "tls.client_ca=$state/certs/ca.pem" \
  --set "audit.path=$state/audit.jsonl" \
  --set "audit.key_file=$state/certs/audit.key" \
  "${extra[@]}" "$@"
