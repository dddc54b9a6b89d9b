#!/usr/bin/env bash
# Where a fresh-instance request's time goes, per request: page faults,
# context switches and CPU (perf stat), system calls by count and time
# (strace -c), and a cpu-clock profile split by kernel/user symbol
# (perf record). For the C wasi:http hello and the Go WAGI hello under
# wrk -c64 on 127.0.0.1. Hardware counters are not needed (cpu-clock is a
# software event), so it runs in a VM too.
#
# Usage: bench/profile-serve.sh [WEDGE_BINARY] [SECONDS]
# Needs Debian `wrk`, `linux-perf`, `strace`, `curl`.
set -eu  # no pipefail: `| head` cuts reports short on purpose
cd "$(dirname "$0")/.."
bin=${1:-target/release/wedge} secs=${2:-8}
export WEDGE_CACHE_DIR=${WEDGE_CACHE_DIR:-$(mktemp -d)}
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
port=18192
out=$(mktemp -d)

requests() { awk '/requests in/ {print $1}' "$1"; }

for w in "examples/c-http/demo.component.wasm /hello c-component" "examples/go-hello/hello.wasm /hello go-wagi"; do
  set -- $w
  module=$1 path=$2 name=$3
  "$bin" serve "$module" --listen 127.0.0.1:$port --admin-listen 127.0.0.1:0 --log-level warn \
    > "$out/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 200); do curl -sf -o /dev/null "http://127.0.0.1:$port$path" && break; sleep 0.05; done
  wrk -t2 -c64 -d3s "http://127.0.0.1:$port$path" > /dev/null # warm up

  # 1. Counters over one run.
  wrk -t2 -c64 -d"${secs}s" "http://127.0.0.1:$port$path" > "$out/wrk1" &
  load=$!
  perf stat -x, -e task-clock,page-faults,context-switches,cpu-migrations -p "$pid" \
    -o "$out/stat" -- sleep "$secs"
  wait "$load"
  n=$(requests "$out/wrk1")

  # 2. A cpu-clock profile over another.
  wrk -t2 -c64 -d"${secs}s" "http://127.0.0.1:$port$path" > "$out/wrk2" &
  load=$!
  perf record -q -e cpu-clock -F 4999 -p "$pid" -o "$out/perf.data" -- sleep "$secs" 2>/dev/null
  wait "$load"
  # 3. System calls (strace slows the server; counts per request stay true).
  wrk -t2 -c64 -d"${secs}s" "http://127.0.0.1:$port$path" > "$out/wrk3" &
  load=$!
  timeout -s INT "$secs" strace -c -f -q -p "$pid" -o "$out/strace" 2>/dev/null || true
  wait "$load"
  n3=$(requests "$out/wrk3")
  kill "$pid"; wait "$pid" 2>/dev/null || true

  echo "## $name ($module)"
  echo
  echo "Over $n requests ($(awk '/Requests\/sec/ {print $2}' "$out/wrk1") req/s):"
  awk -F, -v n="$n" '
    $3 == "task-clock" { printf "- CPU: %.1f us per request\n", $1 * 1000 / n }
    $3 == "page-faults" { printf "- page faults: %.1f per request\n", $1 / n }
    $3 == "context-switches" { printf "- context switches: %.2f per request\n", $1 / n }
    $3 == "cpu-migrations" { printf "- CPU migrations: %.3f per request\n", $1 / n }
  ' "$out/stat"
  echo
  echo "Profile (cpu-clock samples): kernel vs user, and the top symbols:"
  echo
  echo '```'
  perf report -i "$out/perf.data" --no-children --sort dso 2>/dev/null | grep -v '^#' | grep -v '^$' | head -6
  echo
  perf report -i "$out/perf.data" --no-children --sort sym 2>/dev/null | grep -v '^#' | grep -v '^$' \
    | head -30 | cut -c1-110
  echo '```'
  echo
  echo "System calls per request (strace -c over $n3 requests; time is strace's, inflated):"
  echo
  echo '```'
  awk -v n="$n3" 'NR > 2 && $NF != "total" && $4 ~ /^[0-9]+$/ {
      printf "%-16s %8.2f calls/request\n", $NF, $4 / n }
    NR > 2 && $NF != "total" && $4 !~ /^[0-9]+$/ && $3 ~ /^[0-9]+$/ {
      printf "%-16s %8.2f calls/request\n", $NF, $3 / n }' "$out/strace" | sort -k2 -nr | head -15
  echo '```'
  echo
done
rm -rf "$out"
