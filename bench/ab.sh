#!/usr/bin/env bash
# A/B throughput of two wedge binaries on the same hello workloads (the C
# wasi:http component and the Go WAGI module), rounds alternating A and B
# so that drift in the machine hits both. wrk shares the cores.
#
# Besides req/s and latency it prints the server's CPU per request (user +
# system time from /proc over the run, divided by the requests served): on
# two shared cores that is steadier than throughput.
#
# Usage: bench/ab.sh A_BINARY B_BINARY [SECONDS_PER_RUN] [ROUNDS] [CONNECTIONS]
# AB_LOG_LEVEL (default warn) is the servers' --log-level; `info` adds the
# access line to every request. AB_EXTRA_A and AB_EXTRA_B are TOML lines
# added to the function's table for A and B (same binary twice with
# AB_EXTRA_B='[[function.rate_limit]]...' measures what a setting costs);
# each module is then served from a one-function manifest. Needs Debian
# `wrk` and `curl`.
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 secs=${3:-10} rounds=${4:-3} conns=${5:-64}
export WEDGE_CACHE_DIR=${WEDGE_CACHE_DIR:-$(mktemp -d)}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
port=18191
level=${AB_LOG_LEVEL:-warn}
tick=$(getconf CLK_TCK)

cpu_ticks() { # utime + stime of a process, in clock ticks
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

run() { # label binary module path
  local label=$1 bin=$2 module=$3 path=$4 out target=$3 extra
  if [ "$label" = A ]; then extra=${AB_EXTRA_A:-}; else extra=${AB_EXTRA_B:-}; fi
  if [ -n "${AB_EXTRA_A:-}${AB_EXTRA_B:-}" ]; then
    target=$(mktemp -d)
    printf '[[function]]\nname = "hello"\nsource = "%s"\nroutes = ["/..."]\n%b\n' \
      "$PWD/$module" "$extra" > "$target/wedge.toml"
    target="-f $target"
  fi
  # shellcheck disable=SC2086
  "$bin" serve $target --listen 127.0.0.1:$port --admin-listen 127.0.0.1:0 \
    --log-level "$level" > /tmp/ab-server.log 2>&1 &
  local pid=$!
  for _ in $(seq 1 200); do
    curl -sf -o /dev/null "http://127.0.0.1:$port$path" && break
    sleep 0.05
  done
  local before after
  before=$(cpu_ticks "$pid")
  out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency "http://127.0.0.1:$port$path")
  after=$(cpu_ticks "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  printf '%-8s %-16s %10s req/s  p50 %8s  p99 %8s  cpu %6s us/req\n' "$label" "$module" \
    "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
    "$(awk '$1=="50%" {print $2}' <<<"$out")" \
    "$(awk '$1=="99%" {print $2}' <<<"$out")" \
    "$(awk -v t="$((after - before))" -v hz="$tick" '/requests in/ {printf "%.1f", t / hz * 1e6 / $1}' <<<"$out")"
}

results=$(mktemp)
echo "# $(date -u +%FT%TZ), $(nproc) cores, wrk -t2 -c$conns -d${secs}s, $rounds rounds, --log-level $level, A=$a B=$b"
for round in $(seq 1 "$rounds"); do
  for w in "examples/c-http/demo.component.wasm /hello" "examples/go-hello/hello.wasm /hello"; do
    set -- $w
    run A "$a" "$1" "$2" | tee -a "$results"
    run B "$b" "$1" "$2" | tee -a "$results"
  done
done

# Each B run against the A run just before it (the machine's slow and fast
# spells last longer than one pair), then the median of those ratios.
echo "# B/A per adjacent pair, median over rounds (below 1.00: B needs less):"
awk '
  { label = $1; w = $2; rps = $3; cpu = $(NF - 1) }
  label == "A" { arps[w] = rps; acpu[w] = cpu; next }
  { n[w]++; r[w, n[w]] = rps / arps[w]; c[w, n[w]] = cpu / acpu[w] }
  function median(arr, w, k,   i, j, t, v) {
    for (i = 1; i <= k; i++) v[i] = arr[w, i]
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    return k % 2 ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2
  }
  END { for (w in n) printf "#   %-38s req/s x%.3f   cpu/req x%.3f   (%d pairs)\n", w, median(r, w, n[w]), median(c, w, n[w]), n[w] }
' "$results"
rm -f "$results"
