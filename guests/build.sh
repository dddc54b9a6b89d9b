#!/usr/bin/env bash
# Builds the C guests with Debian's clang-16 and wasi-libc. The built .wasm
# files are committed, so tests and examples need none of this.
# Needs: apt-get install clang-16 lld-16 wasi-libc libclang-rt-16-dev-wasm32
set -euo pipefail
cd "$(dirname "$0")"
for src in c/*.c; do
  out="${src%.c}.wasm"
  clang-16 --target=wasm32-wasi --sysroot=/usr -O2 -g0 -o "$out" "$src" \
    -Wl,--strip-debug
  echo "built $out ($(stat -c %s "$out") bytes)"
done
