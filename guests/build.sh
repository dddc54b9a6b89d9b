#!/usr/bin/env bash
# Builds the C guests with Debian's clang-16 and wasi-libc. The built .wasm
# files are committed, so tests and examples need none of this.
# Needs: apt-get install clang-16 lld-16 wasi-libc libclang-rt-16-dev-wasm32
set -euo pipefail
cd "$(dirname "$0")"
for src in c/*.c c/wagi/*.c; do
  out="${src%.c}.wasm"
  clang-16 --target=wasm32-wasi --sysroot=/usr -O2 -g0 -o "$out" "$src" \
    -Wl,--strip-debug
  echo "built $out ($(stat -c %s "$out") bytes)"
done

# The C hello as a WASI 0.2 `wasi:cli` command component, through the
# preview1 command adapter of the Wasmtime release we pin (crate
# wasi-preview1-component-adapter-provider 48.x) and wasm-tools.
# Needs: cargo install wasm-tools; the adapter crate in cargo's registry
# (any `cargo fetch` of a project depending on it), or ADAPTER=path.
adapter=${ADAPTER:-$(ls ~/.cargo/registry/src/*/wasi-preview1-component-adapter-provider-48*/artefacts/wasi_snapshot_preview1.command.wasm 2>/dev/null | sort -V | tail -n1)}
if [ -z "$adapter" ]; then
  echo "no preview1 command adapter found: set ADAPTER=path/to/wasi_snapshot_preview1.command.wasm" >&2
  exit 1
fi
mkdir -p components
wasm-tools component new c/hello.wasm --adapt "$adapter" -o components/hello.component.wasm
echo "built components/hello.component.wasm ($(stat -c %s components/hello.component.wasm) bytes)"

# The examples (Go WAGI function, C wasi:http component) have their own.
../examples/go-hello/build.sh
../examples/c-http/build.sh
