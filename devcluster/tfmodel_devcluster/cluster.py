"""A real single-node Kubernetes cluster: the embedded cluster of `make demo`, the `cluster`
tests and `tfmodel-cluster up`.

Components (all from the machine's caches, see devcluster/build/):
  - build/apiserver's kube-apiserver + embedded etcd, with ServiceAccount admission on;
  - kube-controller-manager, kube-scheduler, kubelet and kube-proxy (iptables mode) built
    from the same k8s.io/kubernetes version (build/nodebin);
  - containerd (Debian package) + runc, the CNI reference plugins (bridge + host-local);
  - images built from Dockerfile.server / Dockerfile.operator with buildah (build/images.sh),
    imported into containerd's k8s.io namespace (no registry: pods use the local tags).

Everything runs inside one network namespace the cluster creates (the "node" namespace):
the bridge with the pod network, every pod, the ClusterIP rules kube-proxy writes and the
control plane. Nothing is added to the host's interfaces or iptables; the host reaches the
API server through a forwarder listening on 127.0.0.1 (forward.py). Teardown removes every
process, mount, cgroup and the namespace itself.

One module a concern; Cluster ties them together and is what callers use:
  artifacts.py     the binaries and images (build scripts, per-machine caches)
  network.py       the node's network namespace, the CNI config, the API forwarder
  processes.py     the long-running processes: start, wait for, stop
  controlplane.py  kube-apiserver + etcd, controller-manager, scheduler
  node.py          containerd, kubelet, kube-proxy, cgroups, and their teardown
  access.py        kubectl and helm from the host
  objectstore.py   SeaweedFS's S3 gateway for s3:// models (started on demand)

By hand:  sudo .venv/bin/tfmodel-cluster up      (prints how to use kubectl)
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tfmodel_devcluster.access import KubeAccess
from tfmodel_devcluster.artifacts import (
    APT_PACKAGES,
    REPO_ROOT,
    Built,
    build_all,
    build_log,
    check_prerequisites,
)
from tfmodel_devcluster.controlplane import start_control_plane
from tfmodel_devcluster.host import ClusterError, cache_dir, log
from tfmodel_devcluster.network import NodeNetwork
from tfmodel_devcluster.node import NODE_NAME, Node
from tfmodel_devcluster.objectstore import ObjectStore, start_object_store
from tfmodel_devcluster.processes import Processes

__all__ = [
    "APT_PACKAGES",
    "DATA_DIR_PARENT",
    "DATA_DIR_PREFIX",
    "NODE_NAME",
    "REPO_ROOT",
    "Built",
    "Cluster",
    "ClusterError",
    "build_all",
    "build_log",
    "cache_dir",
    "log",
    "start",
]

DATA_DIR_PARENT = "/var/tmp"  # a cluster's data dir: DATA_DIR_PARENT/DATA_DIR_PREFIX<random>
DATA_DIR_PREFIX = "tfmodel-cluster-"


@dataclass
class Cluster:
    data_dir: Path
    netns: str
    kubeconfig: Path  # for the host: https://127.0.0.1:<forwarded port>
    node_kubeconfig: Path  # for components inside the node namespace
    kubectl_bin: Path
    helm_bin: Path
    node_bin: Path
    images: dict[str, str]  # pause / server / operator -> local image reference
    containerd_sock: Path
    api_host_port: int = 0  # the forwarder's port on the host's 127.0.0.1 (0: any free one)
    network: NodeNetwork = field(init=False)
    processes: Processes = field(init=False)
    access: KubeAccess = field(init=False)
    node: Node = field(init=False)
    _object_store: ObjectStore | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.network = NodeNetwork(self.netns, self.data_dir)
        self.processes = Processes(self.data_dir)
        self.access = KubeAccess(
            self.kubeconfig, self.kubectl_bin, self.helm_bin, self.data_dir / "helm"
        )
        self.node = Node(
            self.network,
            self.processes,
            self.access,
            self.node_bin,
            self.images,
            self.containerd_sock,
            self.node_kubeconfig,
        )

    # --- what callers use -----------------------------------------------------------------
    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        return self.access.kubectl(*args, input=input, check=check, timeout=timeout)

    def helm(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return self.access.helm(*args, check=check, timeout=timeout)

    def get(self, *args: str) -> dict[str, Any]:
        return self.access.get(*args)

    def tool_env(self) -> dict[str, str]:
        return self.access.env()

    def in_netns(self, cmd: list[str]) -> list[str]:
        """`cmd` run inside the node's network namespace (where ClusterIPs and pod IPs route)."""
        return self.network.wrap(cmd)

    def netns_python(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run `python args...` inside the node namespace."""
        return subprocess.run(
            self.in_netns([sys.executable, *args]),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO_ROOT,
            check=False,
        )

    def netns_popen(self, *args: str, stdout: IO[Any]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.in_netns([sys.executable, *args]),
            stdout=stdout,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            start_new_session=True,
        )

    def object_store(self) -> ObjectStore:
        """The cluster's S3-compatible store (SeaweedFS), started on first use."""
        if self._object_store is None:
            self._object_store = start_object_store(self.network, self.processes, self.data_dir)
        return self._object_store

    def log_tail(self, name: str, chars: int = 3000) -> str:
        return self.processes.log_tail(name, chars)

    # --- bring-up -----------------------------------------------------------------------------
    def start(self, built: Built) -> None:
        t0 = time.monotonic()
        self.network.create()
        self.node.start_containerd()
        self.node.import_images(built.images)
        self.api_host_port = start_control_plane(
            self.network,
            self.processes,
            built.apiserver,
            self.node_bin,
            self.kubeconfig,
            self.api_host_port,
        )
        self.node.start_agents()
        self.processes.wait("node Ready and untainted", self.node.ready, timeout=180)
        self.processes.wait(
            "the default ServiceAccount", self.node.default_service_account, timeout=60
        )
        log(f"cluster up in {time.monotonic() - t0:.0f} s (data {self.data_dir})")

    # --- teardown -----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop everything this cluster started; safe to call on a half-started cluster."""
        t0 = time.monotonic()
        self.processes.stop("kubelet")  # first: it would restart what is stopped next
        if self.processes.running("containerd"):
            self.node.remove_pods()
        for name in ("kube-proxy", "kube-scheduler", "kube-controller-manager", "containerd"):
            self.processes.stop(name)
        self.node.kill_shims()
        for name in ("kube-apiserver", "forward"):
            self.processes.stop(name)
        self.processes.stop_all()
        self.node.release()
        self.network.delete()
        if os.environ.get("TFMODEL_KEEP_CLUSTER_DIR"):
            log(f"kept {self.data_dir} (TFMODEL_KEEP_CLUSTER_DIR)")
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        log(f"cluster stopped in {time.monotonic() - t0:.0f} s")

    def remove_pods(self) -> None:
        self.node.remove_pods()


def start(
    data_dir: Path | None = None,
    api_host_port: int = 0,
    built: Built | None = None,
) -> Cluster:
    """Build what is missing, bring the cluster up and return it (stop() it when done)."""
    check_prerequisites()
    if built is None:
        t0 = time.monotonic()
        built = build_all()
        log(f"binaries and images ready in {time.monotonic() - t0:.0f} s")
    data_dir = Path(data_dir or tempfile.mkdtemp(prefix=DATA_DIR_PREFIX, dir=DATA_DIR_PARENT))
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o755)  # hostPath model directories below it are read by uid 1000
    (data_dir / "logs").mkdir(exist_ok=True)
    bin_dir = cache_dir() / "bin"
    images = {name: ref for name, (ref, _archive) in built.images.items()}
    cluster = Cluster(
        data_dir=data_dir,
        netns=f"tfmodel-{secrets.token_hex(3)}",
        kubeconfig=data_dir / "kubeconfig",
        node_kubeconfig=data_dir / "api" / "admin.kubeconfig",
        kubectl_bin=bin_dir / "kubectl",
        helm_bin=bin_dir / "helm",
        node_bin=built.node_bin,
        images=images,
        containerd_sock=data_dir / "containerd" / "containerd.sock",
        api_host_port=api_host_port,
    )
    (data_dir / "netns").write_text(cluster.netns)
    try:
        cluster.start(built)
    except BaseException:
        cluster.stop()
        raise
    return cluster
