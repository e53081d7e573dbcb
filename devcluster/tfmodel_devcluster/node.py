"""The node in its network namespace: containerd with the images imported, the kubelet and
kube-proxy, the cgroup subtree its pods live in; and the teardown of what they leave behind
(pod sandboxes, shims, mounts, cgroups)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import time
from pathlib import Path
from typing import IO

from tfmodel_devcluster.access import KubeAccess
from tfmodel_devcluster.host import ClusterError, cache_dir, log, run
from tfmodel_devcluster.network import NODE_IP, POD_CIDR, NodeNetwork
from tfmodel_devcluster.processes import Processes

NODE_NAME = "localhost"  # kubectl logs/exec resolve the node name: it must resolve locally


class Node:
    def __init__(
        self,
        network: NodeNetwork,
        processes: Processes,
        access: KubeAccess,
        node_bin: Path,
        images: dict[str, str],
        containerd_sock: Path,
        node_kubeconfig: Path,
    ) -> None:
        self.network = network
        self.processes = processes
        self.access = access
        self.data_dir = network.data_dir
        self.node_bin = node_bin
        self.images = images
        self.containerd_sock = containerd_sock
        self.node_kubeconfig = node_kubeconfig
        self._root_lock: IO[str] | None = None
        self._containerd_root: Path | None = None

    def _start(self, name: str, cmd: list[str], pass_fds: tuple[int, ...] = ()) -> None:
        self.processes.start(name, self.network.wrap(cmd), pass_fds=pass_fds)

    def start_containerd(self) -> None:
        root = cache_dir() / "containerd" / "root"  # images stay imported between runs
        root.mkdir(parents=True, exist_ok=True)
        # One containerd per root: a second cluster on this machine (another session, CI)
        # gets a root of its own in its data dir and imports the images again.
        lock = self._root_lock = (cache_dir() / "containerd" / "root.lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            root = self.data_dir / "containerd" / "root"
            root.mkdir(parents=True)
            log(f"the cached containerd root is in use: using {root}")
        self._containerd_root = root
        state = self.data_dir / "containerd" / "state"
        state.mkdir(parents=True)
        config = self.data_dir / "containerd" / "config.toml"
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config.write_text(
            f"""version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{self.containerd_sock}"
[ttrpc]
  address = "{self.containerd_sock}.ttrpc"
[debug]
  address = "{self.data_dir}/containerd/debug.sock"
[metrics]
  address = ""
[{cri}]
  sandbox_image = "{self.images["pause"]}"
  # REQUIRED here: without CAP_SYS_RESOURCE every sandbox fails at oom_score_adj -998.
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{state}/runc"
  [{cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{self.data_dir}/cni/net.d"
"""
        )
        # containerd inherits the root's lock: a cluster left running after its starter exits
        # (`make demo KEEP=1`) still holds it, so no other cluster shares the root meanwhile.
        fds = () if lock.closed else (lock.fileno(),)
        self._start("containerd", ["containerd", "--config", str(config)], pass_fds=fds)
        self.processes.wait(
            "containerd",
            lambda: run(self.ctr("version"), check=False, timeout=10) and True,
            timeout=60,
        )

    def ctr(self, *args: str) -> list[str]:
        return ["ctr", "--address", str(self.containerd_sock), "--namespace", "k8s.io", *args]

    def import_images(self, images: dict[str, tuple[str, Path]]) -> None:
        present = set(run(self.ctr("images", "ls", "-q")).split())
        for name, (ref, archive) in images.items():
            if ref in present:
                continue
            start = time.monotonic()
            run(self.ctr("images", "import", "--no-unpack", str(archive)), timeout=900)
            if ref not in set(run(self.ctr("images", "ls", "-q")).split()):
                raise ClusterError(f"{archive} imported, but no image {ref} in containerd")
            log(f"imported {name} image {ref} in {time.monotonic() - start:.0f} s")
            # Older builds of the same image only take space (containerd GCs their content).
            repo = ref.rsplit(":", 1)[0]
            stale = [r for r in present if r.rsplit(":", 1)[0] == repo and r != ref]
            if stale:
                run(self.ctr("images", "rm", *stale), check=False)

    @property
    def cgroup_root(self) -> str:
        """The kubelet's cgroupRoot: pods live under /<netns>/kubepods in each hierarchy, so
        two clusters on one machine (or another kubelet) never see each other's pods."""
        return f"/{self.network.netns}"

    def make_cgroup_root(self) -> None:
        base = Path("/sys/fs/cgroup")
        for hierarchy in sorted(base.iterdir()):
            if not hierarchy.is_dir() or hierarchy.is_symlink():
                continue
            path = hierarchy / self.network.netns
            path.mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):  # empty in a new cpuset cgroup
                if (hierarchy / name).exists():
                    (path / name).write_text((hierarchy / name).read_text())

    def start_agents(self) -> None:
        """The kubelet (on containerd) and kube-proxy."""
        kubelet_dir = self.data_dir / "kubelet"
        kubelet_dir.mkdir()
        self.make_cgroup_root()
        config = self.data_dir / "kubelet.yaml"
        config.write_text(
            json.dumps(
                {
                    "apiVersion": "kubelet.config.k8s.io/v1beta1",
                    "kind": "KubeletConfiguration",
                    "cgroupDriver": "cgroupfs",
                    "cgroupRoot": self.cgroup_root,
                    "failCgroupV1": False,
                    "failSwapOn": False,
                    "containerRuntimeEndpoint": f"unix://{self.containerd_sock}",
                    "address": "127.0.0.1",
                    "readOnlyPort": 0,
                    "healthzBindAddress": "127.0.0.1",
                    "makeIPTablesUtilChains": False,
                    "podCIDR": POD_CIDR,
                    "authentication": {
                        "anonymous": {"enabled": True},
                        "webhook": {"enabled": False},
                    },
                    "authorization": {"mode": "AlwaysAllow"},
                    "evictionHard": {
                        "memory.available": "100Mi",
                        "nodefs.available": "1%",
                        "imagefs.available": "1%",
                        "nodefs.inodesFree": "1%",
                    },
                    "imageGCHighThresholdPercent": 100,
                    "imageGCLowThresholdPercent": 99,
                    # Pods (and so ConfigMap volumes) re-sync every 10 s instead of 1 min.
                    "syncFrequency": "10s",
                    "podLogsDir": str(self.data_dir / "pod-logs"),
                    "resolvConf": "/etc/resolv.conf",
                    "maxPods": 30,
                    "serializeImagePulls": False,
                }
            )
        )
        self._start(
            "kubelet",
            [
                str(self.node_bin / "kubelet"),
                f"--config={config}",
                f"--kubeconfig={self.node_kubeconfig}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                f"--root-dir={kubelet_dir}",
            ],
        )
        proxy_config = self.data_dir / "kube-proxy.yaml"
        proxy_config.write_text(
            json.dumps(
                {
                    "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                    "kind": "KubeProxyConfiguration",
                    "mode": "iptables",
                    "clientConnection": {"kubeconfig": str(self.node_kubeconfig)},
                    "hostnameOverride": NODE_NAME,
                    "clusterCIDR": POD_CIDR,
                    "healthzBindAddress": "127.0.0.1:10256",
                    "metricsBindAddress": "127.0.0.1:10249",
                    # SNAT every Service connection to the bridge address, so pod -> Service
                    # -> pod works on one bridge without br_netfilter.
                    "iptables": {"masqueradeAll": True, "syncPeriod": "5s", "minSyncPeriod": "0s"},
                    # Never touch the (machine-wide) nf_conntrack_max.
                    "conntrack": {"maxPerCore": 0, "min": 0},
                }
            )
        )
        self._start("kube-proxy", [str(self.node_bin / "kube-proxy"), f"--config={proxy_config}"])

    def ready(self) -> bool:
        """The node is Ready and untainted."""
        node = self.access.get("node", NODE_NAME)
        ready = any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in node.get("status", {}).get("conditions", [])
        )
        taints = node.get("spec", {}).get("taints") or []
        return ready and not taints

    def default_service_account(self) -> bool:
        self.access.get("serviceaccount", "default", "-n", "default")
        self.access.get("configmap", "kube-root-ca.crt", "-n", "default")
        return True

    def remove_pods(self) -> None:
        """Stop and remove every pod sandbox through the (running) containerd: CNI DEL, the
        containers killed; their network namespaces are noted for stop() in case it fails."""
        crictl = [
            str(self.node_bin / "crictl"),
            f"--runtime-endpoint=unix://{self.containerd_sock}",
            f"--image-endpoint=unix://{self.containerd_sock}",
            "--timeout=60s",
        ]
        with contextlib.suppress(Exception):
            for pod_id in run([*crictl, "pods", "-q"], check=False).split():
                info = json.loads(run([*crictl, "inspectp", pod_id], check=False))
                for ns in info["info"]["runtimeSpec"]["linux"]["namespaces"]:
                    if ns.get("type") == "network" and ns.get("path"):
                        self.network.pod_netns.add(Path(ns["path"]).name)
        with contextlib.suppress(Exception):
            run([*crictl, "rmp", "--force", "--all"], timeout=180, check=False)

    def kill_shims(self) -> None:
        """containerd-shim-runc-v2 processes of *this* containerd (matched by its socket)."""
        needle = str(self.containerd_sock).encode()
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"containerd-shim" in cmdline and needle in cmdline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)

    @staticmethod
    def unmount_under(root: Path) -> None:
        root_s = str(root.resolve()) if root.exists() else str(root)
        for _ in range(3):
            mounts = []
            for line in Path("/proc/self/mountinfo").read_text().splitlines():
                point = line.split()[4].replace("\\040", " ")
                if point == root_s or point.startswith(root_s + "/"):
                    mounts.append(point)
            if not mounts:
                return
            for point in sorted(mounts, key=len, reverse=True):
                run(["umount", "-l", point], check=False)

    def remove_cgroups(self) -> None:
        """This cluster's cgroup subtree, depth first (rmdir works once a cgroup is empty)."""
        base = Path("/sys/fs/cgroup")
        for hierarchy in base.iterdir():
            root = hierarchy / self.network.netns
            if not root.is_dir():
                continue
            dirs = sorted(
                (p for p in root.rglob("*") if p.is_dir()),
                key=lambda p: len(p.parts),
                reverse=True,
            )
            for d in [*dirs, root]:
                for _ in range(20):
                    try:
                        d.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.1)  # tasks still exiting

    def release(self) -> None:
        """Once every process is gone: the mounts under the data dir and under the containerd
        root this cluster held, that root's lock, the cgroup subtree, the shims' socket dir."""
        self.unmount_under(self.data_dir)
        root = self._containerd_root
        if root is not None and not str(root).startswith(str(self.data_dir)):
            self.unmount_under(root)  # only the root this cluster held the lock on
        if self._root_lock is not None and not self._root_lock.closed:
            self._root_lock.close()
        self.remove_cgroups()
        with contextlib.suppress(OSError):
            Path("/run/containerd/s").rmdir()  # the shims' socket folder, if empty
