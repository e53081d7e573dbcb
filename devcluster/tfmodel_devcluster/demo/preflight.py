"""What `make demo` needs from the machine, checked before anything starts.

Each failed check raises DemoEnvError with what is wrong and what to do; the demo prints it
and exits 2 (no stack trace).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from pathlib import Path

from tfmodel_devcluster.cluster import cache_dir

GIB = 1024**3
# Cold: Go build cache (~3 GB), binaries, buildah storage and archives (~5 GB), containerd's
# root (~3 GB). Warm: the cluster's data dir, logs and the models only.
COLD_DISK_GIB = 15
WARM_DISK_GIB = 3
CGROUP_ROOT = Path("/sys/fs/cgroup")


class DemoEnvError(RuntimeError):
    """The machine cannot run the demo; the message says what to do."""


def check_root() -> None:
    if os.geteuid() != 0:
        raise DemoEnvError(
            "make demo starts a real single-node Kubernetes cluster (network namespaces, "
            "mounts, cgroups) and needs root.\n"
            "  Run it as root: sudo make demo\n"
            "  Or, without a cluster: make demo-server (the server-only walk-through)"
        )


def check_cgroups(root: Path = CGROUP_ROOT) -> str:
    """The kubelet needs a writable cgroup file system (v1 hierarchies or v2 unified)."""
    what_to_do = (
        "  Run on a VM or host with cgroups mounted at /sys/fs/cgroup (a container needs "
        "--privileged and --cgroupns=host), or use make demo-server (no cluster)."
    )
    if (root / "cgroup.controllers").exists():
        version, probe_dir = "v2", root
    elif (root / "memory").is_dir() and (root / "cpu").is_dir():
        version, probe_dir = "v1", root / "memory"
    else:
        raise DemoEnvError(f"no cgroup file system found at {root}.\n{what_to_do}")
    probe = probe_dir / f"tfmodel-demo-probe-{os.getpid()}"
    try:
        probe.mkdir()
    except OSError as exc:
        raise DemoEnvError(
            f"cgroups ({version}) at {root} are not writable ({exc.strerror}).\n{what_to_do}"
        ) from exc
    with contextlib.suppress(OSError):
        probe.rmdir()
    return version


def check_port(port: int) -> None:
    """The API server's forwarder listens on 127.0.0.1:`port` (a fixed port, so the
    KUBECONFIG printed by KEEP=1 stays the same from run to run)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise DemoEnvError(
                f"port {port} on 127.0.0.1 is in use ({exc.strerror}): a demo cluster kept "
                "with KEEP=1 may still be up.\n"
                "  Stop it with: make demo-down\n"
                f"  Or pick another port: make demo DEMO_API_PORT=<free port>  "
                f"(see who holds it: ss -ltnp 'sport = :{port}')"
            ) from exc


def is_cold() -> bool:
    """True when the Kubernetes binaries or the images are not built on this machine yet."""
    cache = cache_dir()
    binaries = list(cache.glob("k8s-node-*/kubelet")) and list(cache.glob("kube-apiserver-*"))
    images = {p.name.split("-", 1)[0] for p in (cache / "images").glob("*.oci.tar")}
    return not binaries or not {"pause", "server", "operator"} <= images


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(cold: bool) -> float:
    """Free GiB where the caches and the cluster's data dir go; raises when too little."""
    need = COLD_DISK_GIB if cold else WARM_DISK_GIB
    free = float("inf")
    for path in (cache_dir(), Path("/var/tmp")):
        where = _existing_parent(path)
        free_here = shutil.disk_usage(where).free / GIB
        free = min(free, free_here)
        if free_here < need:
            first = "the first run (it builds Kubernetes and two images)" if cold else "a run"
            raise DemoEnvError(
                f"only {free_here:.1f} GiB free on the file system holding {path}; "
                f"{first} needs about {need} GiB.\n"
                "  Free some space, or put the caches elsewhere: "
                "make demo TFMODEL_CACHE=/path/with/space"
            )
    return free


def check_tools() -> None:
    if not shutil.which("go") and not Path("/usr/local/go/bin/go").exists():
        raise DemoEnvError(
            "Go is not installed: the first run builds the Kubernetes binaries from Go modules.\n"
            "  Install Go 1.24+ (https://go.dev/dl/) into /usr/local/go or onto PATH."
        )
