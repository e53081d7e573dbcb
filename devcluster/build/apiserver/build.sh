#!/usr/bin/env bash
# Build the test API server (embedded etcd + kube-apiserver) once per machine.
# Prints the binary's path on stdout; a no-op when that binary already exists.
#
#   devcluster/build/apiserver/build.sh  -> ${TFMODEL_CACHE:-$HOME/.cache/tfmodel}/kube-apiserver-v1.33.13-<hash>
set -euo pipefail

K8S_VERSION="v1.33.13"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${TFMODEL_CACHE:-$HOME/.cache/tfmodel}"
GO="${GO:-$(command -v go || echo /usr/local/bin/go)}"

if ! [[ -x "$GO" ]] && ! command -v "$GO" >/dev/null 2>&1; then
  echo "apiserver/build.sh: Go toolchain not found (set GO=/path/to/go or put go on PATH)" >&2
  exit 2
fi

HASH="$(cat "$HERE/go.mod" "$HERE/go.sum" "$HERE/main.go" | sha256sum | cut -c1-12)"
OUT="$CACHE/kube-apiserver-$K8S_VERSION-$HASH"
if [[ -x "$OUT" ]]; then
  echo "$OUT"
  exit 0
fi

mkdir -p "$CACHE"
MINOR="${K8S_VERSION#v1.}"
MINOR="${MINOR%%.*}"
LDFLAGS="-s -w"
LDFLAGS+=" -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
LDFLAGS+=" -X k8s.io/component-base/version.gitMajor=1"
LDFLAGS+=" -X k8s.io/component-base/version.gitMinor=$MINOR"
LDFLAGS+=" -X k8s.io/component-base/version.gitTreeState=clean"
LDFLAGS+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
LDFLAGS+=" -X k8s.io/client-go/pkg/version.gitMajor=1"
LDFLAGS+=" -X k8s.io/client-go/pkg/version.gitMinor=$MINOR"

echo "apiserver/build.sh: building $OUT (cold builds take a while on 2 cores)" >&2
start=$SECONDS
# Committed go.sum is authoritative: -mod=readonly fails rather than rewrite it.
(
  cd "$HERE"
  CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" \
    "$GO" build -trimpath -ldflags "$LDFLAGS" -o "$OUT.tmp.$$" .
)
mv "$OUT.tmp.$$" "$OUT"
echo "apiserver/build.sh: built in $((SECONDS - start)) s" >&2
echo "$OUT"
