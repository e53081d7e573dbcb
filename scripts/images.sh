#!/usr/bin/env bash
# `make images` / `make push`: the server and operator images, with whichever of docker, podman
# or buildah is installed (CONTAINER_TOOL=... picks one).
#
#   scripts/images.sh build      builds [REGISTRY/]tfmodel-server:TAG and [REGISTRY/]tfmodel-operator:TAG
#   scripts/images.sh push       pushes them (REGISTRY required)
#
# TAG defaults to `git describe --always --dirty`; PYTHON_IMAGE overrides the Dockerfiles' base
# image (e.g. a mirror of python:3.11-slim-bookworm). Prints one image reference a line.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

action="${1:-}"
if [[ "$action" != build && "$action" != push ]]; then
  echo "usage: scripts/images.sh build|push" >&2
  exit 2
fi
if [[ "$action" == push && -z "${REGISTRY:-}" ]]; then
  echo "make push: set REGISTRY to the registry (and path) to push to, e.g. make push REGISTRY=registry.example.com/ml" >&2
  exit 2
fi
TAG="${TAG:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}"
TOOL="${CONTAINER_TOOL:-}"
if [[ -z "$TOOL" ]]; then
  # docker only with a daemon that answers (a client alone cannot build); podman and buildah
  # need none.
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    TOOL=docker
  elif command -v podman >/dev/null 2>&1; then
    TOOL=podman
  elif command -v buildah >/dev/null 2>&1; then
    TOOL=buildah
  fi
fi
if [[ -z "$TOOL" ]]; then
  echo "make images: needs docker (with its daemon running), podman or buildah; install one," \
    "or set CONTAINER_TOOL" >&2
  exit 2
fi
prefix="${REGISTRY:+${REGISTRY%/}/}"
build_args=()
if [[ -n "${PYTHON_IMAGE:-}" ]]; then build_args=(--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE"); fi

for name in server operator; do
  ref="${prefix}tfmodel-$name:$TAG"
  if [[ "$action" == build ]]; then
    echo "images: $TOOL building $ref from Dockerfile.$name" >&2
    if [[ "$TOOL" == buildah ]]; then
      buildah bud --layers "${build_args[@]}" -f "Dockerfile.$name" -t "$ref" . >&2
    else
      "$TOOL" build "${build_args[@]}" -f "Dockerfile.$name" -t "$ref" . >&2
    fi
  else
    echo "images: $TOOL pushing $ref" >&2
    "$TOOL" push "$ref" >&2
  fi
  echo "$ref"
done
