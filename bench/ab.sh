#!/usr/bin/env bash
# A/B throughput of two wedge binaries on the same hello workloads (the C
# wasi:http component and the Go WAGI module), rounds alternating A and B
# so that drift in the machine hits both. wrk shares the cores.
#
# Usage: bench/ab.sh A_BINARY B_BINARY [SECONDS_PER_RUN] [ROUNDS] [CONNECTIONS]
# Needs Debian `wrk` and `curl`.
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 secs=${3:-10} rounds=${4:-3} conns=${5:-64}
export WEDGE_CACHE_DIR=${WEDGE_CACHE_DIR:-$(mktemp -d)}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
port=18191

run() { # label binary module path
  local label=$1 bin=$2 module=$3 path=$4 out
  "$bin" serve "$module" --listen 127.0.0.1:$port --admin-listen 127.0.0.1:0 \
    --log-level warn > /tmp/ab-server.log 2>&1 &
  local pid=$!
  for _ in $(seq 1 200); do
    curl -sf -o /dev/null "http://127.0.0.1:$port$path" && break
    sleep 0.05
  done
  out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency "http://127.0.0.1:$port$path")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  printf '%-8s %-16s %10s req/s  p50 %8s  p99 %8s\n' "$label" "$module" \
    "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
    "$(awk '$1=="50%" {print $2}' <<<"$out")" \
    "$(awk '$1=="99%" {print $2}' <<<"$out")"
}

echo "# $(date -u +%FT%TZ), $(nproc) cores, wrk -t2 -c$conns -d${secs}s, $rounds rounds, A=$a B=$b"
for round in $(seq 1 "$rounds"); do
  for w in "examples/c-http/demo.component.wasm /hello" "examples/go-hello/hello.wasm /hello"; do
    set -- $w
    run A "$a" "$1" "$2"
    run B "$b" "$1" "$2"
  done
done
