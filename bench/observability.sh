#!/usr/bin/env bash
# Cost of observability on `wedge serve`: the same hello component with
# everything off (metrics only, which cannot be turned off), with access
# lines, with traces exported at 100% sampling to a local OTLP sink, and
# with both. Rounds alternate modes; wrk shares the 2 cores with the server
# and the sink, so compare medians, not single runs.
#
# Needs: a release build (cargo build --release -p wedge-cli), Debian `wrk`,
# python3 (the OTLP sink). Usage: bench/observability.sh [SECONDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-8}
rounds=${2:-3}
export WEDGE_CACHE_DIR=${WEDGE_CACHE_DIR:-$(mktemp -d)}
unset RUST_BACKTRACE RUST_LIB_BACKTRACE OTEL_EXPORTER_OTLP_ENDPOINT OTEL_EXPORTER_OTLP_TRACES_ENDPOINT

sink=$(mktemp)
cat > "$sink" <<'PY'
import http.server, socketserver
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get('content-length', 0)))
        self.send_response(200); self.send_header('content-length', '0'); self.end_headers()
    def log_message(self, *a): pass
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(('127.0.0.1', 14318), H).serve_forever()
PY
python3 "$sink" & sink_pid=$!
trap 'kill $sink_pid 2>/dev/null || true' EXIT

echo "# $(date -u +%FT%TZ), $(nproc) cores, wrk -t2 -c64 -d${secs}s, $rounds rounds"
for round in $(seq 1 "$rounds"); do
  for mode in off logs traces both; do
    level=warn; otlp=""
    case $mode in
      logs) level=info ;;
      traces) otlp=http://127.0.0.1:14318 ;;
      both) level=info; otlp=http://127.0.0.1:14318 ;;
    esac
    OTEL_EXPORTER_OTLP_ENDPOINT=$otlp target/release/wedge serve examples/c-http/demo.component.wasm \
      --log-level "$level" --listen 127.0.0.1:18191 --admin-listen 127.0.0.1:0 \
      > /tmp/bench-obs.log 2>&1 &
    pid=$!
    for _ in $(seq 1 200); do curl -sf -o /dev/null http://127.0.0.1:18191/hello && break; sleep 0.05; done
    rps=$(wrk -t2 -c64 -d"${secs}s" http://127.0.0.1:18191/hello | awk '/Requests\/sec/ {print $2}')
    printf 'round %s %-7s %10s req/s\n' "$round" "$mode" "$rps"
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done
