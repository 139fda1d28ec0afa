#!/usr/bin/env bash
# The performance comparison of issue 8, in one run on this machine (see BENCHMARKS.md).
#
#   bench/compare.sh            Redis (TLS, no persistence) against the cache server, same
#                               value size and concurrency; prints each figure and ratio.
#   bench/compare.sh memory     RSS per contact at 1M and 10M contacts and GetContact p99
#                               without and during a sweep of 10M (about 4 GiB of RAM).
#   bench/compare.sh all        Both.
#
# Needs Debian's redis-server and redis-tools (redis-server, redis-benchmark) and iproute2
# (ss); builds cache-server and cache-loadgen in release mode. Run as root (or with
# CAP_IPC_LOCK) so that the cache's memory is locked as in production; otherwise the cache
# runs with memory.allow_unlocked and says so. Only 127.0.0.1 is used.
#
# Knobs (environment): REQUESTS (unary requests per run, default 200000), STREAM_CONTACTS
# (default 1000000), CLIENTS (requests in flight, default 50), CONNECTIONS (TLS connections
# of the load generator per role, default 4), STREAMS (PutContacts streams, default 8),
# LOADGEN_THREADS (runtime threads of the load generator for unary runs, default 1: a
# current-thread runtime, one event loop like redis-benchmark's),
# VALUE_SIZE (bytes, default 300), PIPELINE (redis-benchmark -P for the streaming
# comparison, default 16), REPEAT (rounds, each measuring Redis and the cache back to back;
# default 5),
# CONTACTS (memory run, default 10000000), BASE_PORT (default 47300).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-throughput}
REQUESTS=${REQUESTS:-200000}
STREAM_CONTACTS=${STREAM_CONTACTS:-1000000}
CLIENTS=${CLIENTS:-50}
CONNECTIONS=${CONNECTIONS:-4}
LOADGEN_THREADS=${LOADGEN_THREADS:-1}
STREAMS=${STREAMS:-8}
VALUE_SIZE=${VALUE_SIZE:-300}
PIPELINE=${PIPELINE:-16}
REPEAT=${REPEAT:-5}
CONTACTS=${CONTACTS:-10000000}
BASE_PORT=${BASE_PORT:-47300}
redis_plain_port=$BASE_PORT redis_tls_port=$((BASE_PORT + 1))
cache_port=$((BASE_PORT + 2)) metrics_port=$((BASE_PORT + 3))

for tool in redis-server redis-benchmark ss; do
  command -v "$tool" >/dev/null || { echo "compare.sh: $tool is missing (apt-get install redis-server redis-tools iproute2)" >&2; exit 2; }
done
for port in $redis_plain_port $redis_tls_port $cache_port $metrics_port; do
  if ss -ltnH "sport = :$port" | grep -q .; then echo "compare.sh: port $port is in use; set BASE_PORT" >&2; exit 2; fi
done

cargo build --release --locked -q -p cache-server -p cache-loadgen
server=target/release/cache-server loadgen=target/release/cache-loadgen lab_server=target/release/cache-lab-server

work=$(mktemp -d /tmp/cache-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$server" certs --out "$work/certs" --hosts localhost,127.0.0.1 --sites site-1001 2>/dev/null
certs=$work/certs
unlocked=()
if [[ $(id -u) != 0 ]]; then
  unlocked=(--allow-unlocked)
  echo "note: not root; the cache runs with memory.allow_unlocked (figures otherwise comparable)"
fi

wait_port() {
  for _ in $(seq 1 200); do
    ss -ltnH "sport = :$1" | grep -q . && return 0
    sleep 0.05
  done
  echo "compare.sh: nothing listens on port $1" >&2
  return 1
}

machine() {
  echo "machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)"
  echo "kernel: $(uname -r); $(redis-server --version | cut -d' ' -f1-3); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# Best (highest) of REPEAT values printed by a command as a number.
best() { sort -g | tail -n 1; }
# Median of values, one per line (the lower middle one for an even count).
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }

# redis-benchmark, one test, rps as a number.
redis_rps() { # port tls? test pipeline clients
  local port=$1 tls=$2 test=$3 pipeline=$4 clients=$5 args=()
  [[ $tls == tls ]] && args=(--tls --cacert "$certs/ca.pem" --cert "$certs/emr-site-1001.pem" --key "$certs/emr-site-1001.key")
  redis-benchmark -h 127.0.0.1 -p "$port" "${args[@]}" -t "$test" -n "$REQUESTS" -c "$clients" \
    -d "$VALUE_SIZE" -P "$pipeline" -r 1000000 --csv 2>/dev/null |
    awk -F'","' 'NR > 1 { print $2 + 0 }'
}

throughput() {
  # Redis: TLS (client certificates required, as for the cache) and plain, no persistence.
  redis-server --bind 127.0.0.1 --port "$redis_plain_port" --tls-port "$redis_tls_port" \
    --tls-cert-file "$certs/cache-server.pem" --tls-key-file "$certs/cache-server.key" \
    --tls-ca-cert-file "$certs/ca.pem" --tls-auth-clients yes \
    --save '' --appendonly no --dir "$work" --logfile "$work/redis.log" --daemonize no &
  local redis_pid=$!
  pids+=("$redis_pid")
  # The cache server: the release binary, mutual TLS, audit on (a file), memory locked. It is
  # started afresh for each round, so that every round's gets and streams meet a store of the
  # same size (a million or so contacts, like Redis's keyspace of -r 1000000) rather than the
  # millions that earlier rounds left behind.
  local cache_pid common
  start_cache() {
    "$server" serve --listen "127.0.0.1:$cache_port" "${unlocked[@]}" \
      --set "tls.cert=$certs/cache-server.pem" --set "tls.key=$certs/cache-server.key" \
      --set "tls.client_ca=$certs/ca.pem" --set "audit.key_file=$certs/audit.key" \
      --set "audit.path=$work/audit.jsonl" --set log.filter=warn \
      --set store.max_entries=20000000 --set store.max_bytes=8589934592 2>>"$work/cache.log" &
    cache_pid=$!
    pids+=("$cache_pid")
    wait_port "$cache_port"
    common=(--addr "127.0.0.1:$cache_port" --certs "$certs" --server-pid "$cache_pid" --connections "$CONNECTIONS")
  }
  stop_cache() {
    kill "$cache_pid"; wait "$cache_pid" 2>/dev/null || true
    # The audit trail grows by about 300 bytes a request: start each round afresh.
    : >"$work/audit.jsonl"
  }
  wait_port "$redis_tls_port"

  # Each round measures Redis and the cache back to back, so that each ratio compares two
  # figures taken seconds apart: these shared machines drift by a third within minutes.
  cache_rps() { # scenario client requests concurrency [auto: one runtime thread per CPU]
    local line threads=(--threads "$LOADGEN_THREADS")
    [[ ${5:-} == auto ]] && threads=()
    line=$("$loadgen" "${threads[@]}" run "${common[@]}" --scenario "$1" \
      --requests "$3" --concurrency "$4" --value-size "$VALUE_SIZE" --client "$2")
    echo "$line" >&2
    field per_second <<<"$line"
  }
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
  declare -A r c q
  for run in $(seq 1 "$REPEAT"); do
    start_cache
    local set_plain set_tls get_tls set_tls_p put get put_tonic stream
    set_plain=$(redis_rps "$redis_plain_port" plain set 1 "$CLIENTS")
    set_tls=$(redis_rps "$redis_tls_port" tls set 1 "$CLIENTS")
    put=$(cache_rps put h2 "$REQUESTS" "$CLIENTS")
    get_tls=$(redis_rps "$redis_tls_port" tls get 1 "$CLIENTS")
    get=$(cache_rps get h2 "$REQUESTS" "$CLIENTS")
    set_tls_p=$(redis_rps "$redis_tls_port" tls set "$PIPELINE" "$CLIENTS")
    stream=$(cache_rps stream tonic "$STREAM_CONTACTS" "$STREAMS" auto)
    # For reference: the same puts from tonic's own client (heavier: it shares the cores).
    put_tonic=$(cache_rps put tonic "$REQUESTS" "$CLIENTS" auto)
    echo "ROUND $run redis: set_plain=$set_plain set_tls=$set_tls get_tls=$get_tls set_tls_p$PIPELINE=$set_tls_p;" \
      "cache: put=$put get=$get stream=$stream put_tonic=$put_tonic;" \
      "ratios: put=$(ratio "$put" "$set_tls") get=$(ratio "$get" "$set_tls") get/get=$(ratio "$get" "$get_tls")" \
      "stream=$(ratio "$stream" "$set_tls_p")"
    r[set_plain]+="$set_plain " r[set_tls]+="$set_tls " r[get_tls]+="$get_tls " r[set_tls_p]+="$set_tls_p "
    c[put]+="$put " c[get]+="$get " c[put_tonic]+="$put_tonic " c[stream]+="$stream "
    q[put]+="$(ratio "$put" "$set_tls") " q[get]+="$(ratio "$get" "$set_tls") "
    q[get_get]+="$(ratio "$get" "$get_tls") " q[put_tonic]+="$(ratio "$put_tonic" "$set_tls") "
    q[stream]+="$(ratio "$stream" "$set_tls_p") "
    echo "cache (round $run): memory locked: $(awk '/VmLck/ {print $2, $3}' /proc/$cache_pid/status)" >&2
    stop_cache
  done
  echo "cache: $(grep -c . "$work/cache.log" || true) log lines"
  kill "$redis_pid"; wait "$redis_pid" 2>/dev/null || true
  for k in "${!r[@]}"; do r[$k]=$(tr ' ' '\n' <<<"${r[$k]}" | grep . | best); done
  for k in "${!c[@]}"; do c[$k]=$(tr ' ' '\n' <<<"${c[$k]}" | grep . | best); done
  for k in "${!q[@]}"; do q[$k]=$(tr ' ' '\n' <<<"${q[$k]}" | grep . | median); done

  echo
  echo "== $REPEAT rounds, ${VALUE_SIZE}-byte values, $CLIENTS in flight; best of each figure =="
  printf '%-58s %10.0f /s\n' "redis SET -P 1 plain" "${r[set_plain]}"
  printf '%-58s %10.0f /s\n' "redis SET -P 1 TLS" "${r[set_tls]}"
  printf '%-58s %10.0f /s\n' "redis GET -P 1 TLS" "${r[get_tls]}"
  printf '%-58s %10.0f /s\n' "redis SET -P $PIPELINE TLS" "${r[set_tls_p]}"
  printf '%-58s %10.0f /s\n' "cache PutContact unary, mTLS, audit ($CONNECTIONS conns)" "${c[put]}"
  printf '%-58s %10.0f /s\n' "cache GetContact unary, mTLS, audit ($CONNECTIONS conns)" "${c[get]}"
  printf '%-58s %10.0f /s\n' "cache PutContact unary, tonic client (reference)" "${c[put_tonic]}"
  printf '%-58s %10.0f /s\n' "cache PutContacts streaming, mTLS, audit ($STREAMS streams)" "${c[stream]}"
  echo "== ratios: median over the rounds of each round's ratio (best against best in brackets) =="
  echo "RATIO put/redis_set_tls=${q[put]} ($(ratio "${c[put]}" "${r[set_tls]}")) (target >= 0.6)"
  echo "RATIO get/redis_set_tls=${q[get]} ($(ratio "${c[get]}" "${r[set_tls]}")) (target >= 0.6)"
  echo "RATIO get/redis_get_tls=${q[get_get]} ($(ratio "${c[get]}" "${r[get_tls]}"))"
  echo "RATIO put_tonic_client/redis_set_tls=${q[put_tonic]} ($(ratio "${c[put_tonic]}" "${r[set_tls]}"))"
  echo "RATIO stream/redis_set_tls_p$PIPELINE=${q[stream]} ($(ratio "${c[stream]}" "${r[set_tls_p]}")) (target >= 0.5)"
}

memory() {
  local avail
  avail=$(awk '/MemAvailable/ {print int($2 / 1048576)}' /proc/meminfo)
  if ((CONTACTS >= 5000000 && avail < 6)); then
    echo "compare.sh: the memory run needs about 6 GiB free; $avail GiB available" >&2
    return 1
  fi
  # The lab server: the cache's own run() with a clock SIGUSR1 moves a day on; a sweep every
  # minute at :00, retention 2 days (the first day's contacts expire after two moves). The
  # audit trail goes to /dev/null here: 10M lines would be 3 GB of disk.
  "$lab_server" --set "listen=127.0.0.1:$cache_port" --set "metrics_listen=127.0.0.1:$metrics_port" \
    --set "tls.cert=$certs/cache-server.pem" --set "tls.key=$certs/cache-server.key" \
    --set "tls.client_ca=$certs/ca.pem" --set "audit.key_file=$certs/audit.key" \
    --set audit.path=/dev/null --set log.filter=warn --set store.retention_days=2 \
    --set "store.sweep_schedule=0 * * * * *" --set "store.max_entries=$CONTACTS" \
    --set store.max_bytes=8589934592 \
    $([[ ${#unlocked[@]} -gt 0 ]] && echo --set memory.allow_unlocked=true) 2>"$work/lab.log" &
  local lab_pid=$!
  pids+=("$lab_pid")
  wait_port "$cache_port"
  local checkpoints=1000000,$CONTACTS
  ((CONTACTS <= 1000000)) && checkpoints=$CONTACTS
  "$loadgen" memory --addr "127.0.0.1:$cache_port" --certs "$certs" --server-pid "$lab_pid" \
    --metrics "127.0.0.1:$metrics_port" --checkpoints "$checkpoints" --connections "$CONNECTIONS" \
    --concurrency "$CLIENTS"
  kill "$lab_pid"; wait "$lab_pid" 2>/dev/null || true
}

machine
started=$SECONDS
case $mode in
  throughput) throughput ;;
  memory) memory ;;
  all) throughput; memory ;;
  *) echo "usage: bench/compare.sh [throughput|memory|all]" >&2; exit 64 ;;
esac
echo "compare.sh: $mode took $((SECONDS - started)) s"
