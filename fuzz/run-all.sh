#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each, JOBS at a time, on its committed
# corpus, and prints each run's last status line. Needs cargo-fuzz
# (`cargo install cargo-fuzz`); libFuzzer's -Z flags are allowed on stable
# Rust through RUSTC_BOOTSTRAP=1.
# Usage: fuzz/run-all.sh [SECONDS] [JOBS] [--smoke]
# --smoke leaves the committed corpus as it is: new inputs go to a scratch
# directory (the test command runs it this way).
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-600}
jobs=${2:-2}
scratch=""
if [ "${3:-}" = "--smoke" ]; then
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
fi
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O
targets=$(cargo fuzz list)
mkdir -p logs
run() {
  local t=$1 dirs=("corpus/$t")
  if [ -n "$scratch" ]; then mkdir -p "$scratch/$t"; dirs=("$scratch/$t" "corpus/$t"); fi
  # -rss_limit_mb and -timeout bound each input; artifacts land in artifacts/$t.
  if cargo fuzz run -O "$t" "${dirs[@]}" -- -max_total_time="$secs" \
      -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 > "logs/$t.log" 2>&1; then
    echo "$t: ok: $(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "logs/$t.log" | tail -1)"
    grep -E 'stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' "logs/$t.log" | sed "s/^/  $t /"
  else
    echo "$t: FAILED (see fuzz/logs/$t.log and fuzz/artifacts/$t)"
    return 1
  fi
}
export -f run
export secs scratch
printf '%s\n' $targets | xargs -P "$jobs" -I{} bash -c 'run {}'
