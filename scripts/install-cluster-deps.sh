#!/usr/bin/env bash
# Debian packages the embedded cluster needs (devcluster/: make demo, the `cluster` tests):
# containerd + runc, the CNI reference plugins, buildah + debootstrap for the images,
# iptables for kube-proxy.
# Idempotent: a no-op when all are installed. Needs root (CI and the dev VMs are root).
set -euo pipefail

PACKAGES=(containerd runc containernetworking-plugins buildah debootstrap iptables)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "install-cluster-deps: missing ${missing[*]} and not root: apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "install-cluster-deps: apt-get install ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q "${missing[@]}" >/dev/null
