"""What a cluster runs, built once per machine: the Kubernetes binaries (Go), kubectl and helm,
the server/operator/pause images. Each build script is idempotent and keyed by its inputs;
this module runs them and checks the machine has what they need."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tfmodel_devcluster.host import SYS_PATH, ClusterError, cache_dir, log

# The cluster builds its binaries and images from a checkout of this repository (the
# Dockerfiles, the chart, the Go modules): devcluster/ sits at the repository's root.
REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = REPO_ROOT / "devcluster" / "build"
GO_BUILD = BUILD_DIR / "go-build.sh"  # `go-build.sh apiserver|node`
IMAGES_BUILD = BUILD_DIR / "images.sh"
TOOLS_SCRIPT = REPO_ROOT / "scripts" / "install-k8s-tools.sh"

APT_PACKAGES = [
    "containerd",
    "runc",
    "containernetworking-plugins",
    "buildah",
    "debootstrap",
    "iptables",
]
REQUIRED = {
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "buildah": "buildah",
    "debootstrap": "debootstrap",
    "iptables": "iptables",
    "nsenter": "util-linux",
    "ip": "iproute2",
}


@dataclass(frozen=True)
class Built:
    """What a cluster runs, from the per-machine caches."""

    apiserver: Path  # the kube-apiserver + etcd binary
    node_bin: Path  # the directory with kubelet, kube-proxy, controller-manager, scheduler
    images: dict[str, tuple[str, Path]]  # pause / server / operator -> (reference, OCI archive)


def build_log() -> Path:
    """The build scripts' stderr (their progress lines), appended across runs."""
    return cache_dir() / "logs" / "build.log"


def run_script(path: Path, *args: str, timeout: float = 3600) -> list[str]:
    """Run one of the idempotent build scripts; its stdout lines are the result."""
    env = {**os.environ, "PATH": f"{os.environ.get('PATH', '')}:{SYS_PATH}:/usr/local/go/bin"}
    start = time.monotonic()
    build_log().parent.mkdir(parents=True, exist_ok=True)
    # stderr to a file, not a pipe: a long cold build's progress can be followed (the demo
    # shows its last line) and nothing buffers in memory.
    with build_log().open("a+") as err:
        offset = err.tell()
        done = subprocess.run(
            ["bash", str(path), *args],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
        err.seek(offset)
        stderr = err.read()
    if done.returncode != 0:
        raise ClusterError(f"{path} failed (exit {done.returncode}):\n{stderr[-6000:]}")
    took = time.monotonic() - start
    if took > 5:
        log(f"{path.relative_to(REPO_ROOT)} {' '.join(args)}: {took:.0f} s")
    return done.stdout.strip().splitlines()


def check_prerequisites() -> None:
    if os.geteuid() != 0:
        raise ClusterError("the cluster needs root (network namespaces, mounts, cgroups)")
    path = f"{os.environ.get('PATH', '')}:{SYS_PATH}"
    missing = sorted({pkg for tool, pkg in REQUIRED.items() if not shutil.which(tool, path=path)})
    if not Path("/usr/lib/cni/bridge").exists():
        missing.append("containernetworking-plugins")
    if missing:
        raise ClusterError(
            "missing packages: apt-get install -y "
            + " ".join(sorted(set(missing)))
            + " (scripts/install-cluster-deps.sh does it)"
        )


def build_all() -> Built:
    """Binaries and images, each from its per-machine cache (built on first use)."""
    apiserver = Path(run_script(GO_BUILD, "apiserver")[-1])
    node_bin = Path(run_script(GO_BUILD, "node")[-1])
    run_script(TOOLS_SCRIPT, str(cache_dir() / "bin"))
    images: dict[str, tuple[str, Path]] = {}
    for line in run_script(IMAGES_BUILD, "pause", "server", "operator"):
        name, ref, archive = line.split()
        images[name] = (ref, Path(archive))
    return Built(apiserver=apiserver, node_bin=node_bin, images=images)
