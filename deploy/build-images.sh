#!/usr/bin/env bash
# Builds the wedge and wedge-operator images from static (musl) binaries
# built here, with whichever engine is installed (docker, podman or buildah).
# Usage: deploy/build-images.sh [TAG] [BASE]
#   TAG   image tag (default 0.1.0); images are ghcr.io/wedge-dev/{wedge,wedge-operator}:TAG
#   BASE  base image (default distroless static, nonroot: CA certificates
#         and a non-root user); `scratch` needs no registry to build, but has
#         no CA certificates for pulling modules from HTTPS registries
# Needs the Rust target x86_64-unknown-linux-musl and musl-gcc (Debian:
# musl-tools). deploy/Containerfile builds the same images from source
# inside a rust container instead.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-0.1.0}
base=${2:-gcr.io/distroless/static-debian12:nonroot}
target=x86_64-unknown-linux-musl
# ENGINE=docker|podman|buildah chooses; else the first that works (a docker
# client without a daemon does not).
engine=${ENGINE:-}
if [ -z "$engine" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then engine=docker
  elif command -v podman >/dev/null; then engine=podman
  elif command -v buildah >/dev/null; then engine=buildah
  fi
fi
[ -n "$engine" ] || { echo "no usable container engine (docker with a daemon, podman or buildah)" >&2; exit 1; }
cargo build --release --locked --target "$target" -p wedge-cli -p wedge-operator
out="${CARGO_TARGET_DIR:-target}/$target/release"
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$out/wedge" "$out/wedge-operator" "$context/"
# Symbols are for profiling on a build machine; the images do without them
# (wedge: 62 MB -> 49 MB).
if command -v strip >/dev/null; then strip --strip-all "$context/wedge" "$context/wedge-operator"; fi
for image in wedge wedge-operator; do
  if [ "$engine" = buildah ]; then
    buildah bud --layers=false -f deploy/Containerfile.prebuilt --build-arg "BASE=$base" \
      --target "$image" -t "ghcr.io/wedge-dev/$image:$tag" "$context"
  else
    "$engine" build -f deploy/Containerfile.prebuilt --build-arg "BASE=$base" \
      --target "$image" -t "ghcr.io/wedge-dev/$image:$tag" "$context"
  fi
done
echo "built ghcr.io/wedge-dev/wedge:$tag and ghcr.io/wedge-dev/wedge-operator:$tag with $engine on $base"
