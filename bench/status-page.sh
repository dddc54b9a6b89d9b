#!/usr/bin/env bash
# What an open status page costs the data plane: wrk on the C wasi:http
# hello with the page closed, then with what an open page asks of the
# server (GET /status once a second and, with --state, GET /v1/.../rollout
# every 5 s; curl stands in for the browser so that the browser's own CPU
# does not muddy a 2-core machine), alternating, several rounds.
#
# Needs: a release build (cargo build --release -p wedge-cli), Debian wrk.
# Usage: bench/status-page.sh [SECONDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-3}
wedge=${WEDGE_BIN:-$PWD/target/release/wedge}
work=$(mktemp -d)
export WEDGE_CACHE_DIR=$work/cache WEDGE_ADMIN_TOKEN=status-page-bench-token
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

cat > "$work/wedge.toml" <<TOML
[[function]]
name = "hello"
source = "$PWD/examples/c-http/demo.component.wasm"
routes = ["/hello"]
version = "v1"
TOML
"$wedge" serve -f "$work/wedge.toml" --listen 127.0.0.1:18200 --admin-listen 127.0.0.1:18201 \
  --state "$work/state" > "$work/log" 2>&1 &
for _ in $(seq 1 200); do curl -sf -o /dev/null http://127.0.0.1:18200/hello && break; sleep 0.05; done

page() { # what an open page asks for, until killed
  local n=0
  while true; do
    curl -sf -o /dev/null -H "Authorization: Bearer $WEDGE_ADMIN_TOKEN" http://127.0.0.1:18201/status
    if [ $((n % 5)) = 0 ]; then
      curl -s -o /dev/null -H "Authorization: Bearer $WEDGE_ADMIN_TOKEN" http://127.0.0.1:18201/v1/functions/hello/rollout
    fi
    n=$((n + 1))
    sleep 1
  done
}

run() { wrk -t2 -c64 -d"${secs}s" --latency http://127.0.0.1:18200/hello | awk '/Requests\/sec/ {r=$2} $1=="99%" {p=$2} END {printf "%10s req/s  p99 %s\n", r, p}'; }

echo "# $(date -u +%FT%TZ), $(nproc) cores, wrk -t2 -c64 -d${secs}s on the C wasi:http hello"
for round in $(seq 1 "$rounds"); do
  printf 'round %s  page closed: ' "$round"; run
  page & poller=$!
  printf 'round %s  page open:   ' "$round"; run
  kill $poller; wait $poller 2>/dev/null || true
done
