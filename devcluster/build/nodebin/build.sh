#!/usr/bin/env bash
# Build the test cluster's Kubernetes binaries once per machine: kubelet,
# kube-controller-manager, kube-scheduler and kube-proxy from k8s.io/kubernetes
# (the same version as devcluster/build/apiserver), plus crictl (teardown, debugging).
# Prints the directory holding them on stdout; a no-op when it already exists.
#
#   devcluster/build/nodebin/build.sh  -> ${TFMODEL_CACHE:-$HOME/.cache/tfmodel}/k8s-node-v1.33.13-<hash>/
#
# The cache key is what the binaries are built from (the Go module files and the versions),
# not this script's text: moving or editing the script does not rebuild Kubernetes.
set -euo pipefail

K8S_VERSION="v1.33.13"
CRICTL_VERSION="v1.34.0"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${TFMODEL_CACHE:-$HOME/.cache/tfmodel}"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"

if ! [[ -x "$GO" ]] && ! command -v "$GO" >/dev/null 2>&1; then
  echo "nodebin/build.sh: Go toolchain not found (set GO=/path/to/go or put go on PATH)" >&2
  exit 2
fi

HASH="$( (echo "$K8S_VERSION $CRICTL_VERSION"; cat "$HERE/go.mod" "$HERE/go.sum" "$HERE/tools.go") | sha256sum | cut -c1-12)"
OUT="$CACHE/k8s-node-$K8S_VERSION-$HASH"
BINS=(kubelet kube-controller-manager kube-scheduler kube-proxy crictl)
complete=1
for b in "${BINS[@]}"; do [[ -x "$OUT/$b" ]] || complete=0; done
if [[ $complete -eq 1 ]]; then
  echo "$OUT"
  exit 0
fi

mkdir -p "$OUT"
MINOR="${K8S_VERSION#v1.}"
MINOR="${MINOR%%.*}"
# Same flags as devcluster/build/apiserver/build.sh, so the Go build cache is shared.
LDFLAGS="-s -w"
LDFLAGS+=" -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
LDFLAGS+=" -X k8s.io/component-base/version.gitMajor=1"
LDFLAGS+=" -X k8s.io/component-base/version.gitMinor=$MINOR"
LDFLAGS+=" -X k8s.io/component-base/version.gitTreeState=clean"
LDFLAGS+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
LDFLAGS+=" -X k8s.io/client-go/pkg/version.gitMajor=1"
LDFLAGS+=" -X k8s.io/client-go/pkg/version.gitMinor=$MINOR"

echo "nodebin/build.sh: building $OUT (cold: about 10 min on 2 cores)" >&2
start=$SECONDS
TMP="$OUT/.tmp.$$"
mkdir -p "$TMP"
(
  cd "$HERE"
  CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" \
    "$GO" build -trimpath -ldflags "$LDFLAGS" -o "$TMP/" \
    k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kube-proxy
)
if ! [[ -x "$OUT/crictl" ]]; then
  CGO_ENABLED=0 GOBIN="$TMP" GOFLAGS="-buildvcs=false" \
    "$GO" install -trimpath -ldflags "-s -w" "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
fi
for b in "${BINS[@]}"; do
  if [[ -e "$TMP/$b" ]]; then mv "$TMP/$b" "$OUT/$b"; fi
done
rmdir "$TMP"
echo "nodebin/build.sh: built in $((SECONDS - start)) s" >&2
echo "$OUT"
