#!/usr/bin/env bash
# Throughput and latency of `wedge serve` against `wasmtime serve` 48 on the
# same hello wasi:http component, and of the Go WAGI hello, on 127.0.0.1.
# wrk shares the machine's cores with the server; rounds alternate servers.
#
# Needs: a release build (cargo build --release -p wedge-cli), Debian `wrk`,
# and for the comparison `cargo install wasmtime-cli@48.0.8 --locked`.
# Usage: bench/serve.sh [SECONDS_PER_RUN] [ROUNDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-3}
conns=${3:-64}
threads=2
wedge=target/release/wedge
component=examples/c-http/demo.component.wasm
go=examples/go-hello/hello.wasm
export WEDGE_CACHE_DIR=${WEDGE_CACHE_DIR:-$(mktemp -d)}
# Backtraces on every error cost both servers; production has them off.
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

start() { # name port cmd...
  local name=$1 port=$2; shift 2
  "$@" > "/tmp/bench-$name.log" 2>&1 &
  echo $! > "/tmp/bench-$name.pid"
  for _ in $(seq 1 200); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/hello" && return 0
    sleep 0.05
  done
  echo "$name did not start; see /tmp/bench-$name.log" >&2
  exit 1
}
stop() { kill "$(cat "/tmp/bench-$1.pid")" 2>/dev/null || true; wait "$(cat "/tmp/bench-$1.pid")" 2>/dev/null || true; }

run() { # name url -> "req/s p50 p99"
  local out rps p50 p99
  out=$(wrk -t"$threads" -c"$conns" -d"${secs}s" --latency "$2")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  printf '%-22s %10s req/s   p50 %8s   p99 %8s\n' "$1" "$rps" "$p50" "$p99"
}

echo "# $(date -u +%FT%TZ), $(nproc) cores, wrk -t$threads -c$conns -d${secs}s, $rounds rounds"
for round in $(seq 1 "$rounds"); do
  echo "## round $round"
  start wedge 18181 "$wedge" serve "$component" --listen 127.0.0.1:18181
  run "wedge wasi:http" "http://127.0.0.1:18181/hello"
  stop wedge
  if command -v wasmtime >/dev/null; then
    start wasmtime 18182 wasmtime serve --addr 127.0.0.1:18182 "$component"
    run "wasmtime serve" "http://127.0.0.1:18182/hello"
    stop wasmtime
  fi
  start wedge-go 18183 "$wedge" serve "$go" --listen 127.0.0.1:18183
  run "wedge go wagi" "http://127.0.0.1:18183/hello"
  stop wedge-go
done
