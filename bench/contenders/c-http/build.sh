#!/usr/bin/env bash
# Builds the C wasi:http/proxy 0.2 bench contender (bench.c ->
# bench.component.wasm). Needs: cargo install wit-bindgen-cli wasm-tools;
# clang-16 and wasi-libc; the WIT files and the proxy adapter of the pinned
# Wasmtime 48 crates in cargo's registry. The generated bindings live in a
# temporary build dir.
set -euo pipefail
cd "$(dirname "$0")"
reg=$(ls -d ~/.cargo/registry/src/*/ | head -n1)
wit=${WIT:-$(ls -d "$reg"wasmtime-wasi-http-48*/wit | sort -V | tail -n1)}
adapter=${ADAPTER:-$(ls "$reg"wasi-preview1-component-adapter-provider-48*/artefacts/wasi_snapshot_preview1.proxy.wasm | sort -V | tail -n1)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
wit-bindgen c --world wasi:http/proxy@0.2.12 --out-dir "$tmp" "$wit" >/dev/null
clang-16 --target=wasm32-wasi --sysroot=/usr -O2 -g0 -mexec-model=reactor -Wall -Wextra \
  -I "$tmp" -o "$tmp/bench.core.wasm" bench.c "$tmp/proxy.c" "$tmp/proxy_component_type.o" \
  -Wl,--strip-debug
wasm-tools component new "$tmp/bench.core.wasm" --adapt "$adapter" -o bench.component.wasm
echo "built bench/contenders/c-http/bench.component.wasm ($(stat -c %s bench.component.wasm) bytes)"
