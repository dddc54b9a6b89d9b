#!/usr/bin/env bash
# Runs schemathesis (PyPI; an independent OpenAPI fuzzer) against the control
# API of a real `wedge serve --state`, using the OpenAPI document the server
# serves (crates/cli/src/api/openapi.json). Every check runs except
# positive_data_acceptance: some rules of valid input cannot be written in
# JSON Schema (traffic weights add up to 100, rollout steps rise to 100, a
# module must be WebAssembly), so schema-valid bodies may be refused with 400
# or 422, as documented.
# Usage: scripts/api-check.sh [EXAMPLES_PER_OPERATION]
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${1:-30}
target=${CARGO_TARGET_DIR:-target}
venv="$target/schemathesis-venv"
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==4.32.5"
fi
# The wedge binary `cargo test --workspace` builds (nothing to do after the
# test command's test step); `cargo build -p wedge-cli` alone would unify
# dependencies' features differently and rebuild half of them.
cargo test -q --locked --workspace --no-run
work=$(mktemp -d)
token=schemathesis-admin-token-0123456789
cp guests/wat/wagi/hello.wat "$work/"
printf '[[function]]\nname = "api"\nsource = "hello.wat"\nroutes = ["/api"]\nversion = "v1"\n' \
  > "$work/wedge.toml"
WEDGE_ADMIN_TOKEN=$token WEDGE_CACHE_DIR="$work/cache" "$target/debug/wedge" serve \
  -f "$work/wedge.toml" --state "$work/state" --listen 127.0.0.1:0 \
  --admin-listen 127.0.0.1:0 > "$work/stdout" 2> "$work/stderr" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
admin=""
for _ in $(seq 1 600); do
  admin=$(sed -n 's|^admin on http://||p' "$work/stdout")
  grep -q '^listening on' "$work/stdout" && break
  kill -0 $pid 2>/dev/null || { cat "$work/stderr" >&2; exit 1; }
  sleep 0.1
done
[ -n "$admin" ] || { echo "wedge serve did not start" >&2; cat "$work/stderr" >&2; exit 1; }
"$venv/bin/schemathesis" run crates/cli/src/api/openapi.json \
  --url "http://$admin" -H "Authorization: Bearer $token" \
  --checks all --exclude-checks positive_data_acceptance \
  --max-examples "$examples" --generation-deterministic \
  --report-dir "$work/report"
# The server lived through it.
curl -sf -H "Authorization: Bearer $token" "http://$admin/v1/functions" > /dev/null
