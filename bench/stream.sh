#!/usr/bin/env bash
# Streaming bodies at scale, with curl as the client: a 1 GiB upload through
# the demo component's streaming echo (/pipe: each piece goes back as it
# arrives), and 1 GiB responses from a component (/bytes) and a WAGI module
# (guests/c/wagi/bytes.wasm), taken at full speed and by a slow reader
# (curl --limit-rate). For each run: throughput, and how far the server's
# peak RSS rose above its RSS before the run (VmHWM is reset through
# /proc/PID/clear_refs before each run, so each peak is the run's own).
#
# Needs: a release build (cargo build --release -p wedge-cli) and curl.
# Usage: bench/stream.sh [BYTES] [SLOW_RATE]
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1073741824}
slow=${2:-100M}
wedge=${WEDGE_BIN:-$PWD/target/release/wedge}
port=18190
work=$(mktemp -d)
export WEDGE_CACHE_DIR=$work/cache
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

cat > "$work/wedge.toml" <<EOF
[defaults]
timeout = "300s"
max_request_body = "4GiB"
max_response_body = "4GiB"

[[function]]
name = "demo"
source = "$PWD/examples/c-http/demo.component.wasm"
routes = ["/c/..."]

[[function]]
name = "bytes"
source = "$PWD/guests/c/wagi/bytes.wasm"
routes = ["/wagi/bytes"]
EOF
"$wedge" serve -f "$work/wedge.toml" --listen "127.0.0.1:$port" > "$work/wedge.log" 2>&1 &
pid=$!
for _ in $(seq 1 200); do
  curl -sf -o /dev/null "http://127.0.0.1:$port/c/hello" && break
  sleep 0.05
done
curl -sf -o /dev/null "http://127.0.0.1:$port/wagi/bytes?10"

kib() { awk -v f="$1:" '$1==f {print $2}' "/proc/$pid/status"; }

run() { # label curl-args...
  local label=$1; shift
  local before out secs bytes peak
  echo 5 > "/proc/$pid/clear_refs"
  before=$(kib VmRSS)
  out=$(curl -sS -o /dev/null -w '%{time_total} %{size_download} %{size_upload}' "$@")
  read -r secs down up <<<"$out"
  bytes=$(( down > up ? down : up ))
  peak=$(kib VmHWM)
  awk -v l="$label" -v s="$secs" -v b="$bytes" -v r="$before" -v p="$peak" 'BEGIN {
    printf "| %s | %.0f MiB | %.2f s | %.0f MiB/s | %.1f MiB | %+.1f MiB |\n",
      l, b / 1048576, s, b / 1048576 / s, r / 1024, (p - r) / 1024 }'
}

echo "# $(date -u +%FT%TZ), $(nproc) cores, $size bytes per run, slow reader at $slow/s"
echo
echo "| run | bytes | time | rate | RSS before | peak RSS over it |"
echo "|---|---|---|---|---|---|"
run "upload through the component's streaming echo (chunked)" \
  -T - -H 'Content-Type: application/octet-stream' "http://127.0.0.1:$port/c/pipe" \
  < <(head -c "$size" /dev/zero)
run "component response, full speed" "http://127.0.0.1:$port/c/bytes?$size"
run "component response, slow reader" --limit-rate "$slow" "http://127.0.0.1:$port/c/bytes?$size"
run "WAGI response, full speed" "http://127.0.0.1:$port/wagi/bytes?$size"
run "WAGI response, slow reader" --limit-rate "$slow" "http://127.0.0.1:$port/wagi/bytes?$size"
