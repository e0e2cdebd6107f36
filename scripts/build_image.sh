#!/usr/bin/env bash
# Build the Kubeflow/Dataflow image from the Dockerfile and the wheel in dist/ (`make image` runs this
# after `make wheel`); it never pushes.
#
# usage: UV_VERSION=X [BASE_IMAGE=B] [BEAM_BOOT_IMAGE=I] [CA_BUNDLE=PEM] scripts/build_image.sh IMAGE
#
#   BASE_IMAGE       default: the Dockerfile's (python:3.10-slim-bookworm); scripts/base_image.sh makes one
#   BEAM_BOOT_IMAGE  default empty: no Beam boot (see the Dockerfile)
#   CA_BUNDLE        the certificates the builder trusts for PyPI, passed as the build secret ca_bundle:
#                    default this machine's (/etc/ssl/certs/ca-certificates.crt), so a build behind a
#                    TLS-intercepting proxy works wherever the machine's own pip does; empty: none
#
# The build needs BuildKit. A docker client from Docker 23 on builds with it only through its buildx
# plugin; Debian's docker.io (20.10) has it built in. The first docker on PATH that builds with BuildKit
# is used, so a newer client without buildx ahead of Debian's on PATH is passed over.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE="${1:-}"
fail() {
  echo "error: $*" >&2
  exit 1
}
[ -n "$IMAGE" ] || fail "name the image: scripts/build_image.sh IMAGE (make image IMAGE=registry/shelf-audit:TAG)"
[ -n "${UV_VERSION:-}" ] || fail "set UV_VERSION (make image passes the Makefile's pin)"
command -v docker >/dev/null 2>&1 || fail "docker is not installed (Debian: apt-get install docker.io)"
docker info >/dev/null 2>&1 || fail "the Docker daemon does not answer (docker info): start dockerd" \
  "(make test-services starts it as root)"
wheels=(dist/*.whl)
[ -f "${wheels[0]}" ] && [ ${#wheels[@]} = 1 ] || fail "dist/ must hold exactly one wheel (make wheel): ${wheels[*]}"

client=""
for candidate in $(type -ap docker); do
  if DOCKER_BUILDKIT=1 "$candidate" build --help >/dev/null 2>&1; then
    client="$candidate"
    break
  fi
done
[ -n "$client" ] || fail "no docker client on PATH builds with BuildKit ($(type -ap docker | tr '\n' ' '));" \
  "install the buildx plugin (docker-buildx-plugin) or Debian's docker.io"

args=(--tag "$IMAGE" --build-arg "UV_VERSION=$UV_VERSION" --build-arg "BEAM_BOOT_IMAGE=${BEAM_BOOT_IMAGE:-}")
[ -z "${BASE_IMAGE:-}" ] || args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
CA_BUNDLE="${CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}"
if [ -n "$CA_BUNDLE" ] && [ -f "$CA_BUNDLE" ]; then
  args+=(--secret "id=ca_bundle,src=$CA_BUNDLE")
fi
echo ">> building $IMAGE (base ${BASE_IMAGE:-python:3.10-slim-bookworm}, Beam boot ${BEAM_BOOT_IMAGE:-none}) with $client"
started=$SECONDS
DOCKER_BUILDKIT=1 "$client" build --progress="${PROGRESS:-auto}" "${args[@]}" .
echo ">> $IMAGE built in $((SECONDS - started))s:" \
  "$(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.2f GB", $1 / 1e9}')"
