#!/usr/bin/env bash
# Build the cluster's Go binaries once per machine, into ${TFMODEL_CACHE:-$HOME/.cache/tfmodel}.
# Prints the result's path on stdout; a no-op when it is already there.
#
#   devcluster/build/go-build.sh apiserver  -> <cache>/kube-apiserver-v1.33.13-<hash>
#       one binary: an embedded etcd + kube-apiserver (devcluster/build/apiserver; the
#       embedded cluster's API server and the operator tests' one)
#   devcluster/build/go-build.sh node       -> <cache>/k8s-node-v1.33.13-<hash>/
#       kubelet, kube-controller-manager, kube-scheduler, kube-proxy from k8s.io/kubernetes at
#       the same version (devcluster/build/nodebin), plus crictl (teardown, debugging)
#   devcluster/build/go-build.sh seaweedfs  -> <cache>/weed-<version>
#       SeaweedFS's `weed`, the S3-compatible store of the object-storage tests (Apache-2.0)
#
# Each cache key is what the binaries are built from (the Go module files, the versions), not
# this script's text. Both builds share one set of flags, so the Go build cache is shared.
set -euo pipefail

K8S_VERSION="v1.33.13"
CRICTL_VERSION="v1.34.0"
# SeaweedFS tags are not semver ("3.80"): the Go module proxy serves it by pseudo-version.
SEAWEEDFS_VERSION="v0.0.0-20261109003541-7506e5f91cd6"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${TFMODEL_CACHE:-$HOME/.cache/tfmodel}"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
what="${1:-}"

if [[ "$what" != apiserver && "$what" != node && "$what" != seaweedfs ]]; then
  echo "usage: go-build.sh apiserver|node|seaweedfs" >&2
  exit 2
fi
if ! [[ -x "$GO" ]] && ! command -v "$GO" >/dev/null 2>&1; then
  echo "go-build.sh: Go toolchain not found (set GO=/path/to/go or put go on PATH)" >&2
  exit 2
fi

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
# The committed go.sum is authoritative: -mod=readonly fails rather than rewrite it.
export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"

if [[ "$what" == apiserver ]]; then
  SRC="$HERE/apiserver"
  HASH="$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" | sha256sum | cut -c1-12)"
  OUT="$CACHE/kube-apiserver-$K8S_VERSION-$HASH"
  if [[ -x "$OUT" ]]; then
    echo "$OUT"
    exit 0
  fi
  mkdir -p "$CACHE"
  echo "go-build.sh: building $OUT (cold: about 12 min on 2 idle cores)" >&2
  start=$SECONDS
  (cd "$SRC" && "$GO" build -trimpath -ldflags "$LDFLAGS" -o "$OUT.tmp.$$" .)
  mv "$OUT.tmp.$$" "$OUT"
elif [[ "$what" == seaweedfs ]]; then
  OUT="$CACHE/weed-$SEAWEEDFS_VERSION"
  if [[ -x "$OUT" ]]; then
    echo "$OUT"
    exit 0
  fi
  mkdir -p "$CACHE"
  echo "go-build.sh: building $OUT (cold: about 30 min on 2 busy cores)" >&2
  start=$SECONDS
  # Its go.mod has a replace directive, so `go install ...@version` refuses it: build ./weed
  # inside the downloaded module, with the module's own go.sum (checked by the proxy's sumdb).
  SRC="$("$GO" mod download -json "github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  if [[ -z "$SRC" || ! -d "$SRC/weed" ]]; then
    echo "go-build.sh: go mod download gave no source dir for seaweedfs@$SEAWEEDFS_VERSION" >&2
    exit 1
  fi
  (cd "$SRC" && "$GO" build -trimpath -ldflags "-s -w" -o "$OUT.tmp.$$" ./weed)
  mv "$OUT.tmp.$$" "$OUT"
else
  SRC="$HERE/nodebin"
  HASH="$( (echo "$K8S_VERSION $CRICTL_VERSION"; cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/tools.go") | sha256sum | cut -c1-12)"
  OUT="$CACHE/k8s-node-$K8S_VERSION-$HASH"
  BINS=(kubelet kube-controller-manager kube-scheduler kube-proxy crictl)
  complete=1
  for b in "${BINS[@]}"; do [[ -x "$OUT/$b" ]] || complete=0; done
  if [[ $complete -eq 1 ]]; then
    echo "$OUT"
    exit 0
  fi
  mkdir -p "$OUT"
  echo "go-build.sh: building $OUT (cold: about 10 min on 2 idle cores)" >&2
  start=$SECONDS
  TMP="$OUT/.tmp.$$"
  mkdir -p "$TMP"
  (
    cd "$SRC"
    "$GO" build -trimpath -ldflags "$LDFLAGS" -o "$TMP/" \
      k8s.io/kubernetes/cmd/kubelet \
      k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler \
      k8s.io/kubernetes/cmd/kube-proxy
  )
  if ! [[ -x "$OUT/crictl" ]]; then
    GOBIN="$TMP" GOFLAGS="-buildvcs=false" \
      "$GO" install -trimpath -ldflags "-s -w" "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
  fi
  for b in "${BINS[@]}"; do
    if [[ -e "$TMP/$b" ]]; then mv "$TMP/$b" "$OUT/$b"; fi
  done
  rmdir "$TMP"
fi
echo "go-build.sh: built in $((SECONDS - start)) s" >&2
echo "$OUT"
