#!/usr/bin/env bash
# Build SeaweedFS's `weed` (the S3-compatible object store the tests run) from source, once per
# machine. Prints the binary's path on stdout; a no-op when that binary already exists.
#
#   tests/objectstore/build.sh   -> ${TFMODEL_CACHE:-$HOME/.cache/tfmodel}/weed-<version>
#
# SeaweedFS tags are not semver ("3.80"), so the Go module proxy serves it by pseudo-version; its
# go.mod has a replace directive, so `go install ...@version` refuses it: we build ./weed inside the
# downloaded module instead, with its own go.sum (-mod=readonly: the proxy's checksums are authoritative).
set -euo pipefail

SEAWEEDFS_VERSION="v0.0.0-20261109003541-7506e5f91cd6"
CACHE="${TFMODEL_CACHE:-$HOME/.cache/tfmodel}"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"

if ! [[ -x "$GO" ]] && ! command -v "$GO" >/dev/null 2>&1; then
  echo "objectstore/build.sh: Go toolchain not found (set GO=/path/to/go or put go on PATH)" >&2
  exit 2
fi

OUT="$CACHE/weed-$SEAWEEDFS_VERSION"
if [[ -x "$OUT" ]]; then
  echo "$OUT"
  exit 0
fi

mkdir -p "$CACHE"
echo "objectstore/build.sh: building $OUT (a cold build takes 10+ minutes on 2 cores)" >&2
start=$SECONDS
SRC="$("$GO" mod download -json "github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [[ -z "$SRC" || ! -d "$SRC/weed" ]]; then
  echo "objectstore/build.sh: go mod download gave no source dir for seaweedfs@$SEAWEEDFS_VERSION" >&2
  exit 1
fi
(
  cd "$SRC"
  CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false -trimpath" \
    "$GO" build -ldflags "-s -w" -o "$OUT.tmp.$$" ./weed
)
mv "$OUT.tmp.$$" "$OUT"
echo "objectstore/build.sh: built in $((SECONDS - start)) s" >&2
echo "$OUT"
