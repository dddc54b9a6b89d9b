#!/usr/bin/env bash
# What one request costs each server, in one run (issue 16): the C hello
# wasi:http component under wedge and under `wasmtime serve`, and native
# hyper, each loaded by wrk -t2 -c64 on 127.0.0.1 (the same 2 cores).
#
# Per request: user and kernel CPU µs of the server process (utime and
# stime from /proc/PID/stat around the measured run), context switches of
# all its threads (/proc/PID/task/*/status), peak RSS (VmHWM, start-up and
# warm-up included), and req/s; then instructions
# per request counted by callgrind (user space only, deterministic): the
# server is run under valgrind and sent N1 then N1+N2 keep-alive requests
# (ab -k), and the difference divided by N2 leaves start-up out.
#
# Usage: bench/serve-cost.sh [SECONDS] [WEDGE_BINARY] [extra wedge serve args...]
#   WEDGE_ONLY=1 skips wasmtime and native (for A/B runs of wedge options).
#   NO_CALLGRIND=1 skips the instruction counts.
# Needs Debian `wrk`, `apache2-utils` (ab), `valgrind`, `curl`; `wasmtime`
# 48 on PATH (cargo install --locked wasmtime-cli@48.0.8) unless WEDGE_ONLY.
set -eu
cd "$(dirname "$0")/.."
secs=${1:-8}
bin=${2:-target/release/wedge}
shift $(( $# > 2 ? 2 : $# ))
component=bench/contenders/c-http/bench.component.wasm
native=bench/contenders/native/target/release/native-bench
export WEDGE_CACHE_DIR=${WEDGE_CACHE_DIR:-$(mktemp -d)}
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
port=18193
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$out"' EXIT
hz=$(getconf CLK_TCK)

if [ -z "${WEDGE_ONLY:-}" ] && [ ! -x "$native" ]; then
  cargo build -q --release --manifest-path bench/contenders/native/Cargo.toml
fi

# start NAME: runs the server NAME on $port (optionally under a prefix
# command such as valgrind) and waits until it answers.
start() {
  local name=$1; shift
  case $name in
    wedge) exec "$@" "$bin" serve "$component" --listen 127.0.0.1:$port \
             --admin-listen 127.0.0.1:0 --log-level warn "${extra[@]}" ;;
    # Under valgrind: a small pool (valgrind cannot reserve the default
    # pool's hundreds of GiB of address space); per request it is the same.
    wedge-small) exec "$@" "$bin" serve -f "$out/small.toml" --listen 127.0.0.1:$port \
             --admin-listen 127.0.0.1:0 --log-level warn "${extra[@]}" ;;
    wasmtime) exec "$@" wasmtime serve --addr 127.0.0.1:$port "$component" ;;
    native) PORT=$port exec "$@" "$native" ;;
  esac > "$out/$name.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/hello" && return 0
    sleep 0.05
  done
  echo "$name did not answer; its log:" >&2; cat "$out/$name.log" >&2; exit 1
}

# ticks PID: user and system clock ticks of the process, all threads.
ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
# switches PID: voluntary + involuntary context switches of all threads.
switches() {
  cat /proc/"$1"/task/*/status 2>/dev/null \
    | awk '/ctxt_switches/ {n += $2} END {print n}'
}

extra=("$@")
cat > "$out/small.toml" <<EOF
[server]
instances = 8
max_instance_memory = "16MiB"
[[function]]
name = "c"
source = "$PWD/$component"
routes = ["/..."]
max_concurrency = 4
max_memory = "16MiB"
EOF
servers="wedge wasmtime native"
[ -n "${WEDGE_ONLY:-}" ] && servers=wedge
echo "| server | req/s | user µs/req | kernel µs/req | context switches/req | peak RSS (MiB) | instructions/req |"
echo "|---|---|---|---|---|---|---|"
for name in $servers; do
  start "$name"
  wrk -t2 -c64 -d2s "http://127.0.0.1:$port/hello" > /dev/null # warm up
  read -r u0 s0 < <(ticks "$pid"); c0=$(switches "$pid")
  wrk -t2 -c64 -d"${secs}s" "http://127.0.0.1:$port/hello" > "$out/wrk"
  read -r u1 s1 < <(ticks "$pid"); c1=$(switches "$pid")
  hwm=$(awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  n=$(awk '/requests in/ {print $1}' "$out/wrk")
  rate=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$out/wrk")
  ir=-
  if [ -z "${NO_CALLGRIND:-}" ]; then
    under=$name
    [ "$name" = wedge ] && under=wedge-small
    start "$under" valgrind --tool=callgrind --callgrind-out-file="$out/cg.%p" \
      --dump-instr=no --collect-jumps=no
    cg=$pid
    ab -k -q -n 200 -c 1 "http://127.0.0.1:$port/hello" > /dev/null
    callgrind_control -d "$cg" > /dev/null 2>&1
    ab -k -q -n 1200 -c 1 "http://127.0.0.1:$port/hello" > /dev/null
    callgrind_control -d "$cg" > /dev/null 2>&1
    kill "$cg"; wait "$cg" 2>/dev/null || true
    # Each dump holds the instructions since the previous one: the second
    # is the 1,200 requests alone.
    ir=$(awk '/^summary:|^totals:/ {print $2; exit}' "$out/cg.$cg.2")
    ir=$(awk -v t="$ir" 'BEGIN {printf "%.1fk", t / 1200 / 1000}')
    rm -f "$out"/cg.*
  fi
  awk -v n="$n" -v hz="$hz" -v u="$((u1 - u0))" -v s="$((s1 - s0))" -v c="$((c1 - c0))" \
    -v name="$name" -v rate="$rate" -v ir="$ir" -v hwm="$hwm" 'BEGIN {
      printf "| %s | %d | %.1f | %.1f | %.2f | %s | %s |\n",
        name, rate, u * 1e6 / hz / n, s * 1e6 / hz / n, c / n, hwm, ir }'
done
