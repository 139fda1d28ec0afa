#!/usr/bin/env bash
# Runs the tier locally on embedded defaults: a development CA and certificates in
# ./state/certs, the cache on 127.0.0.1:50051 (gRPC over TLS) and its metrics on
# 127.0.0.1:9464. Ctrl-C stops it cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."

state=state
mkdir -p "$state"
cargo build --release -p cache-server
bin=target/release/cache-server

if [[ ! -f $state/certs/audit.key ]]; then
  "$bin" certs --out "$state/certs"
fi

extra=()
if [[ $(id -u) -ne 0 ]]; then
  echo "note: not root, so memory cannot be locked past RLIMIT_MEMLOCK; starting with --allow-unlocked (development only)"
  extra+=(--allow-unlocked)
fi

cat <<MSG

cache-server (development set-up)
  gRPC over TLS   127.0.0.1:50051   (trust $state/certs/ca.pem, server name localhost)
  callers         mutual TLS: $state/certs/{emr-site-1001,outreach,bridge,admin}.pem/.key
  audit log       $state/audit.jsonl  (GUIDs as HMACs: target/release/cache-server audit-hash --key-file $state/certs/audit.key GUID)
  health          grpc.health.v1.Health on the same port; server reflection too
  metrics         curl http://127.0.0.1:9464/metrics
  config          deploy/cache-server.example.toml, overridden by the flags below
Stop with Ctrl-C: requests in flight finish, then the store is erased.

MSG
exec "$bin" --config deploy/cache-server.example.toml \
  --set "tls.cert=$state/certs/cache-server.pem" \
  --set "tls.key=$state/certs/cache-server.key" \
  --set "tls.client_ca=$state/certs/ca.pem" \
  --set "audit.path=$state/audit.jsonl" \
  --set "audit.key_file=$state/certs/audit.key" \
  "${extra[@]}" "$@"
