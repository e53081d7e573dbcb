#!/usr/bin/env bash
# Build the test cluster's images with buildah, cached per machine:
#   base      debootstrap of Debian bookworm + python3.11 (+ the host's extra CA certs),
#             imported as localhost/tfmodel-base:<hash>
#   server    Dockerfile.server   with PYTHON_IMAGE=localhost/tfmodel-base:<hash>
#   operator  Dockerfile.operator with PYTHON_IMAGE=localhost/tfmodel-base:<hash>
#   pause     a static Go binary that sleeps: the pod sandbox image (no registry to pull from)
# Each image is tagged by the hash of what it contains and saved as an OCI archive in
# ${TFMODEL_CACHE:-~/.cache/tfmodel}/images/; unchanged inputs rebuild nothing.
# Prints one line per image: NAME REF ARCHIVE
#
#   devcluster/build/images.sh [pause] [server] [operator]      (default: all three)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${TFMODEL_CACHE:-$HOME/.cache/tfmodel}"
IMAGES="$CACHE/images"
# buildah's storage lives in the cache; its run root (locks, mount state) is per cache.
RUNROOT="/run/tfmodel-buildah-$(echo "$CACHE" | sha256sum | cut -c1-8)"
STORAGE=(--root "$CACHE/containers/storage" --runroot "$RUNROOT" --storage-driver overlay)
SUITE="bookworm"
mkdir -p "$IMAGES"

log() { echo "images.sh: $*" >&2; }
bh() { buildah "${STORAGE[@]}" "$@"; }

for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || {
    log "$tool not found (apt-get install -y buildah debootstrap)"
    exit 2
  }
done

# One build at a time per cache: the cleanup below removes every working container in the
# shared storage, so a second concurrent build (another test run, a session) would lose its own.
mkdir -p "$CACHE/containers"
exec 9>"$CACHE/containers/build.lock"
flock 9

# Working containers left behind by an interrupted build hold overlay mounts.
cleanup_containers() { bh rm --all >/dev/null 2>&1 || true; }
trap cleanup_containers EXIT

# --- base image -------------------------------------------------------------------------------
CA_DIR=/usr/local/share/ca-certificates
PACKAGES="python3,python3-venv,python3-pip,python-is-python3,ca-certificates"
BASE_HASH="$( {
  echo "$SUITE $PACKAGES v1"
  find "$CA_DIR" -type f -name '*.crt' 2>/dev/null | sort | xargs -r cat
} | sha256sum | cut -c1-12)"
BASE_REF="localhost/tfmodel-base:$BASE_HASH"

if ! bh inspect --type image "$BASE_REF" >/dev/null 2>&1; then
  ROOTFS_TAR="$IMAGES/base-$BASE_HASH.tar"
  if ! [[ -s "$ROOTFS_TAR" ]]; then
    log "debootstrap $SUITE (about 2 min)"
    start=$SECONDS
    work="$(mktemp -d /var/tmp/tfmodel-rootfs.XXXXXX)"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$work/rootfs" >"$work/log" 2>&1 || {
      tail -30 "$work/log" >&2
      exit 1
    }
    # pip inside the image builds must trust the same extra CAs as the host.
    if compgen -G "$CA_DIR/*.crt" >/dev/null; then
      mkdir -p "$work/rootfs$CA_DIR"
      cp "$CA_DIR"/*.crt "$work/rootfs$CA_DIR/"
      chroot "$work/rootfs" update-ca-certificates >/dev/null
    fi
    rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
    tar -C "$work/rootfs" --numeric-owner -cf "$ROOTFS_TAR.tmp" .
    mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
    rm -rf "$work"
    log "base rootfs in $((SECONDS - start)) s"
  fi
  ctr_id="$(bh from --name "tfmodel-base-$BASE_HASH" scratch)"
  mnt="$(bh mount "$ctr_id")"
  tar -C "$mnt" --numeric-owner -xf "$ROOTFS_TAR"
  bh umount "$ctr_id" >/dev/null
  bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd /bin/bash --os linux --arch amd64 "$ctr_id"
  bh commit --quiet "$ctr_id" "$BASE_REF" >/dev/null
  bh rm "$ctr_id" >/dev/null
  log "imported $BASE_REF"
fi

# --- pod sandbox ("pause") image --------------------------------------------------------------
build_pause() {
  local here hash ref archive
  here="$ROOT/devcluster/build/pause"
  hash="$(cat "$here/main.go" "$here/go.mod" | sha256sum | cut -c1-12)"
  ref="localhost/tfmodel-pause:$hash"
  archive="$IMAGES/pause-$hash.oci.tar"
  if ! [[ -s "$archive" ]]; then
    local go work ctr_id mnt
    go="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
    work="$(mktemp -d)"
    (cd "$here" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false "$go" build -trimpath -ldflags "-s -w" -o "$work/pause" .)
    ctr_id="$(bh from scratch)"
    bh copy "$ctr_id" "$work/pause" /pause >/dev/null
    bh config --entrypoint '["/pause"]' --os linux --arch amd64 "$ctr_id"
    bh commit --quiet "$ctr_id" "$ref" >/dev/null
    bh rm "$ctr_id" >/dev/null
    rm -rf "$work"
    bh push --quiet "$ref" "oci-archive:$archive.tmp:$ref" >&2
    mv "$archive.tmp" "$archive"
  fi
  echo "pause $ref $archive"
}

# --- application images -----------------------------------------------------------------------
# What each Dockerfile COPYs from the build context (not README.md, which the Dockerfiles
# stub, nor devcluster/, which no image holds): a change elsewhere rebuilds no image.
context_hash() {
  local dockerfile="$1"
  (
    cd "$ROOT"
    echo "$BASE_HASH"
    find "$dockerfile" .dockerignore pyproject.toml constraints.txt server operator -type f \
      -not -path '*/__pycache__/*' -not -name '*.pyc' -not -path '*.egg-info*' -print0 |
      sort -z | xargs -0 sha256sum
  ) | sha256sum | cut -c1-12
}

build_one() {
  local name="$1" dockerfile="Dockerfile.$1"
  local hash ref archive
  hash="$(context_hash "$dockerfile")"
  ref="localhost/tfmodel-$name:$hash"
  archive="$IMAGES/$name-$hash.oci.tar"
  if ! [[ -s "$archive" ]]; then
    if ! bh inspect --type image "$ref" >/dev/null 2>&1; then
      log "building $ref (cold: server about 6 min, operator about 1 min)"
      local start=$SECONDS
      (cd "$ROOT" && bh bud --quiet --pull=never --network host --layers \
        --build-arg "PYTHON_IMAGE=$BASE_REF" -f "$dockerfile" -t "$ref" .) >&2
      log "built $ref in $((SECONDS - start)) s"
    fi
    bh push --quiet "$ref" "oci-archive:$archive.tmp:$ref" >&2
    mv "$archive.tmp" "$archive"
    # Older archives and tags of this image are stale (each holds a GB-sized final layer).
    # Untagged intermediate images stay: they are the layer cache (the dependency layer).
    find "$IMAGES" -maxdepth 1 -name "$name-*.oci.tar" -not -name "$name-$hash.oci.tar" -delete
    bh images --format '{{.Name}}:{{.Tag}}' 2>/dev/null |
      grep "^localhost/tfmodel-$name:" | grep -v ":$hash\$" | xargs -r buildah "${STORAGE[@]}" rmi >/dev/null 2>&1 || true
  fi
  echo "$name $ref $archive"
}

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(pause server operator)
for t in "${targets[@]}"; do
  if [[ "$t" == pause ]]; then build_pause; else build_one "$t"; fi
done
