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

By hand:  sudo .venv/bin/tfmodel-cluster up      (prints how to use kubectl)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# The cluster builds its binaries and images from a checkout of this repository (the
# Dockerfiles, the chart, the Go modules): devcluster/ sits at the repository's root.
REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BUILD_DIR = REPO_ROOT / "devcluster" / "build"
APISERVER_BUILD = BUILD_DIR / "apiserver" / "build.sh"
NODE_BUILD = BUILD_DIR / "nodebin" / "build.sh"
IMAGES_BUILD = BUILD_DIR / "images.sh"
TOOLS_SCRIPT = REPO_ROOT / "scripts" / "install-k8s-tools.sh"

DATA_DIR_PARENT = "/var/tmp"  # a cluster's data dir: DATA_DIR_PARENT/DATA_DIR_PREFIX<random>
DATA_DIR_PREFIX = "tfmodel-cluster-"
POD_CIDR = "10.244.0.0/24"
BRIDGE = "tfm0"
NODE_IP = "10.244.0.1"
SERVICE_CIDR = "10.96.0.0/16"
API_PORT = 6443
NODE_NAME = "localhost"  # kubectl logs/exec resolve the node name: it must resolve locally
SYS_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
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


class ClusterError(RuntimeError):
    """The cluster could not be built or started."""


# Where log() lines go besides <cache>/logs/cluster.log: stderr unless a caller (the demo,
# which keeps its terminal for its own step lines) sets a hook.
LOG_HOOK: Callable[[str], None] | None = None


def cache_dir() -> Path:
    return Path(os.environ.get("TFMODEL_CACHE", Path.home() / ".cache" / "tfmodel"))


def log(msg: str) -> None:
    """To stderr and to <cache>/logs/cluster.log (pytest captures stderr; timings stay)."""
    line = f"[cluster {time.strftime('%Y-%m-%d %H:%M:%S')}] {msg}"
    if LOG_HOOK is not None:
        LOG_HOOK(line)
    else:
        print(line, file=sys.stderr, flush=True)
    with contextlib.suppress(OSError):
        (cache_dir() / "logs").mkdir(parents=True, exist_ok=True)
        with (cache_dir() / "logs" / "cluster.log").open("a") as out:
            out.write(line + "\n")


def _run(cmd: list[str], timeout: float = 120, check: bool = True, **kw) -> str:
    env = {**os.environ, "PATH": f"{os.environ.get('PATH', '')}:{SYS_PATH}"}
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False, **kw
    )
    if check and done.returncode != 0:
        raise ClusterError(
            f"{' '.join(cmd)} failed (exit {done.returncode}):\n{done.stderr[-4000:]}"
        )
    return done.stdout


def build_log() -> Path:
    """The build scripts' stderr (their progress lines), appended across runs."""
    return cache_dir() / "logs" / "build.log"


def _script(path: Path, *args: str, timeout: float = 3600) -> list[str]:
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
        raise ClusterError("the test cluster needs root (network namespaces, mounts, cgroups)")
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


@dataclass(frozen=True)
class Built:
    """What a cluster runs, from the per-machine caches."""

    apiserver: Path  # the kube-apiserver + etcd binary
    node_bin: Path  # the directory with kubelet, kube-proxy, controller-manager, scheduler
    images: dict[str, tuple[str, Path]]  # pause / server / operator -> (reference, OCI archive)


def build_all() -> Built:
    """Binaries and images, each from its per-machine cache (built on first use)."""
    apiserver = Path(_script(APISERVER_BUILD)[-1])
    node_bin = Path(_script(NODE_BUILD)[-1])
    _script(TOOLS_SCRIPT, str(cache_dir() / "bin"))
    images: dict[str, tuple[str, Path]] = {}
    for line in _script(IMAGES_BUILD, "pause", "server", "operator"):
        name, ref, archive = line.split()
        images[name] = (ref, Path(archive))
    return Built(apiserver=apiserver, node_bin=node_bin, images=images)


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
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    _pod_netns: set[str] = field(default_factory=set)

    # --- running things -----------------------------------------------------------------------
    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"

    def in_netns(self, cmd: list[str]) -> list[str]:
        """`cmd` run inside the node's network namespace (same mount namespace as the host)."""
        return ["nsenter", f"--net={self.netns_path}", "--", *cmd]

    def tool_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.kubectl_bin.parent}:{env.get('PATH', '')}:{SYS_PATH}"
        helm_home = self.data_dir / "helm"
        env["HELM_CACHE_HOME"] = str(helm_home / "cache")
        env["HELM_CONFIG_HOME"] = str(helm_home / "config")
        env["HELM_DATA_HOME"] = str(helm_home / "data")
        return env

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        return self._tool([str(self.kubectl_bin), *args], input, check, timeout)

    def helm(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return self._tool([str(self.helm_bin), *args], None, check, timeout)

    def get(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def _tool(
        self, cmd: list[str], input: str | None, check: bool, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            cmd,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.tool_env(),
            check=False,
        )
        if check and done.returncode != 0:
            raise subprocess.CalledProcessError(
                done.returncode, cmd, output=done.stdout, stderr=done.stderr
            )
        return done

    def _daemon(
        self, name: str, cmd: list[str], netns: bool = True, pass_fds: tuple[int, ...] = ()
    ) -> subprocess.Popen:
        log_path = self.data_dir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PATH": f"{SYS_PATH}:{os.environ.get('PATH', '')}"}
        env.pop("KUBECONFIG", None)
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                self.in_netns(cmd) if netns else cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.data_dir,
                start_new_session=True,
                pass_fds=pass_fds,
            )
        self.procs[name] = proc
        return proc

    def log_tail(self, name: str, chars: int = 3000) -> str:
        try:
            return (self.data_dir / "logs" / f"{name}.log").read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise ClusterError(
                    f"{name} exited with {proc.returncode}; log:\n{self.log_tail(name)}"
                )

    def wait(self, what: str, probe, timeout: float = 180, interval: float = 0.5):
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                value = probe()
            except Exception as exc:  # noqa: BLE001 - probes fail until ready
                value, last = None, exc
            if value:
                return value
            time.sleep(interval)
        raise ClusterError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")

    # --- bring-up -----------------------------------------------------------------------------
    def start(self, built: Built) -> None:
        t0 = time.monotonic()
        self._network()
        self._containerd()
        self._import_images(built.images)
        self._control_plane(built.apiserver)
        self._node()
        self.wait("node Ready and untainted", self._node_ready, timeout=180)
        self.wait("the default ServiceAccount", self._default_sa, timeout=60)
        log(f"cluster up in {time.monotonic() - t0:.0f} s (data {self.data_dir})")

    def _network(self) -> None:
        _run(["ip", "netns", "add", self.netns])
        ns = ["ip", "-n", self.netns]
        _run([*ns, "link", "set", "lo", "up"])
        _run([*ns, "link", "add", BRIDGE, "type", "bridge"])
        _run([*ns, "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE])
        _run([*ns, "link", "set", BRIDGE, "up"])
        # Connections from the node namespace to ClusterIPs need a route before kube-proxy's
        # DNAT rewrites them; pods route through the bridge address (their CNI gateway).
        _run([*ns, "route", "add", SERVICE_CIDR, "dev", BRIDGE, "src", NODE_IP])
        _run(self.in_netns(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]))
        cni = self.data_dir / "cni" / "net.d"
        cni.mkdir(parents=True)
        conflist = {
            "cniVersion": "0.4.0",
            "name": "tfmodel",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": False,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(self.data_dir / "cni" / "ipam"),
                        "ranges": [
                            [{"subnet": POD_CIDR, "rangeStart": "10.244.0.10", "gateway": NODE_IP}]
                        ],
                        "routes": [{"dst": "0.0.0.0/0", "gw": NODE_IP}],
                    },
                }
            ],
        }
        (cni / "10-tfmodel.conflist").write_text(json.dumps(conflist, indent=2))

    def _containerd(self) -> None:
        root = cache_dir() / "containerd" / "root"  # images stay imported between runs
        root.mkdir(parents=True, exist_ok=True)
        # One containerd per root: a second cluster on this machine (another session, CI)
        # gets a root of its own in its data dir and imports the images again.
        self._root_lock = (cache_dir() / "containerd" / "root.lock").open("w")
        try:
            fcntl.flock(self._root_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._root_lock.close()
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
        fds = () if self._root_lock.closed else (self._root_lock.fileno(),)
        self._daemon("containerd", ["containerd", "--config", str(config)], pass_fds=fds)
        self.wait(
            "containerd",
            lambda: _run(self.ctr("version"), check=False, timeout=10) and True,
            timeout=60,
        )

    def ctr(self, *args: str) -> list[str]:
        return ["ctr", "--address", str(self.containerd_sock), "--namespace", "k8s.io", *args]

    def _import_images(self, images: dict[str, tuple[str, Path]]) -> None:
        present = set(_run(self.ctr("images", "ls", "-q")).split())
        for name, (ref, archive) in images.items():
            if ref in present:
                continue
            start = time.monotonic()
            _run(self.ctr("images", "import", "--no-unpack", str(archive)), timeout=900)
            if ref not in set(_run(self.ctr("images", "ls", "-q")).split()):
                raise ClusterError(f"{archive} imported, but no image {ref} in containerd")
            log(f"imported {name} image {ref} in {time.monotonic() - start:.0f} s")
            # Older builds of the same image only take space (containerd GCs their content).
            repo = ref.rsplit(":", 1)[0]
            stale = [r for r in present if r.rsplit(":", 1)[0] == repo and r != ref]
            if stale:
                _run(self.ctr("images", "rm", *stale), check=False)

    def _control_plane(self, apiserver: Path) -> None:
        api_dir = self.data_dir / "api"
        self._daemon(
            "kube-apiserver",
            [
                str(apiserver),
                f"--data-dir={api_dir}",
                f"--secure-port={API_PORT}",
                "--service-account-admission",
                "--",
                # Reachable from pods (the `kubernetes` Service's endpoint is the bridge
                # address); the namespace is the cluster's own, so all addresses are ours.
                "--bind-address=0.0.0.0",
                f"--advertise-address={NODE_IP}",
                "--endpoint-reconciler-type=lease",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
            ],
        )
        node_kubeconfig = api_dir / "admin.kubeconfig"
        self.wait("API server credentials", node_kubeconfig.exists, timeout=60)
        self._forward_api()
        pki = api_dir / "pki"
        token = (pki / "tokens.csv").read_text().split(",", 1)[0]
        config = json.loads(node_kubeconfig.read_text())
        config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{self._api_host_port}"
        self.kubeconfig.write_text(json.dumps(config, indent=2))
        self.kubeconfig.chmod(0o600)
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))

        def ready() -> bool:
            request = urllib.request.Request(
                f"https://127.0.0.1:{self._api_host_port}/readyz",
                headers={"Authorization": f"Bearer {token}"},
            )
            with urllib.request.urlopen(request, timeout=5, context=context) as answer:
                return answer.status == 200

        self.wait("kube-apiserver /readyz", ready, timeout=180)
        kubeconfig = str(self.node_kubeconfig)
        self._daemon(
            "kube-controller-manager",
            [
                str(self.node_bin / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                "--use-service-account-credentials=false",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--horizontal-pod-autoscaler-sync-period=5s",
            ],
        )
        self._daemon(
            "kube-scheduler",
            [
                str(self.node_bin / "kube-scheduler"),
                f"--kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
            ],
        )

    def _forward_api(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", self.api_host_port))
        except OSError as exc:
            listener.close()
            raise ClusterError(f"cannot listen on 127.0.0.1:{self.api_host_port}: {exc}") from exc
        listener.listen(128)
        self._api_host_port = listener.getsockname()[1]
        fd = listener.fileno()
        log_path = self.data_dir / "logs" / "forward.log"
        with log_path.open("ab") as out:
            self.procs["forward"] = subprocess.Popen(
                self.in_netns(
                    [
                        sys.executable,
                        str(HERE / "forward.py"),
                        f"--fd={fd}",
                        f"--to=127.0.0.1:{API_PORT}",
                    ]
                ),
                pass_fds=(fd,),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        listener.close()
        (self.data_dir / "api-port").write_text(str(self._api_host_port))

    @property
    def cgroup_root(self) -> str:
        """The kubelet's cgroupRoot: pods live under /<netns>/kubepods in each hierarchy, so
        two clusters on one machine (or another kubelet) never see each other's pods."""
        return f"/{self.netns}"

    def _make_cgroup_root(self) -> None:
        base = Path("/sys/fs/cgroup")
        for hierarchy in sorted(base.iterdir()):
            if not hierarchy.is_dir() or hierarchy.is_symlink():
                continue
            path = hierarchy / self.netns
            path.mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):  # empty in a new cpuset cgroup
                if (hierarchy / name).exists():
                    (path / name).write_text((hierarchy / name).read_text())

    def _node(self) -> None:
        kubelet_dir = self.data_dir / "kubelet"
        kubelet_dir.mkdir()
        self._make_cgroup_root()
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
        self._daemon(
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
        self._daemon("kube-proxy", [str(self.node_bin / "kube-proxy"), f"--config={proxy_config}"])

    def _node_ready(self) -> bool:
        node = self.get("node", NODE_NAME)
        ready = any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in node.get("status", {}).get("conditions", [])
        )
        taints = node.get("spec", {}).get("taints") or []
        return ready and not taints

    def _default_sa(self) -> bool:
        self.get("serviceaccount", "default", "-n", "default")
        self.get("configmap", "kube-root-ca.crt", "-n", "default")
        return True

    # --- helpers for tests --------------------------------------------------------------------
    def netns_python(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run `python args...` inside the node namespace (where ClusterIPs route)."""
        return subprocess.run(
            self.in_netns([sys.executable, *args]),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO_ROOT,
            check=False,
        )

    def netns_popen(self, *args: str, stdout) -> subprocess.Popen:
        return subprocess.Popen(
            self.in_netns([sys.executable, *args]),
            stdout=stdout,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            start_new_session=True,
        )

    # --- teardown -----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop everything this cluster started; safe to call on a half-started cluster."""
        t0 = time.monotonic()
        self._stop_proc("kubelet")
        if self.procs.get("containerd") and self.procs["containerd"].poll() is None:
            self.remove_pods()
        for name in ("kube-proxy", "kube-scheduler", "kube-controller-manager", "containerd"):
            self._stop_proc(name)
        self._kill_shims()
        for name in ("kube-apiserver", "forward"):
            self._stop_proc(name)
        for name in list(self.procs):
            self._stop_proc(name)
        self._unmount_under(self.data_dir)
        root = getattr(self, "_containerd_root", None)
        if root is not None and not str(root).startswith(str(self.data_dir)):
            self._unmount_under(root)  # only the root this cluster held the lock on
        lock = getattr(self, "_root_lock", None)
        if lock is not None and not lock.closed:
            lock.close()
        self._remove_cgroups()
        for entry in self._pod_netns & set(os.listdir("/run/netns")):
            _run(["ip", "netns", "del", entry], check=False)
        _run(["ip", "netns", "del", self.netns], check=False)
        with contextlib.suppress(OSError):
            Path("/run/containerd/s").rmdir()  # the shims' socket folder, if empty
        if os.environ.get("TFMODEL_KEEP_CLUSTER_DIR"):
            log(f"kept {self.data_dir} (TFMODEL_KEEP_CLUSTER_DIR)")
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        log(f"cluster stopped in {time.monotonic() - t0:.0f} s")

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
            for pod_id in _run([*crictl, "pods", "-q"], check=False).split():
                info = json.loads(_run([*crictl, "inspectp", pod_id], check=False))
                for ns in info["info"]["runtimeSpec"]["linux"]["namespaces"]:
                    if ns.get("type") == "network" and ns.get("path"):
                        self._pod_netns.add(Path(ns["path"]).name)
        with contextlib.suppress(Exception):
            _run([*crictl, "rmp", "--force", "--all"], timeout=180, check=False)

    def _stop_proc(self, name: str, grace: float = 15) -> None:
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGTERM, grace), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait_s)
                return
            except subprocess.TimeoutExpired:
                continue

    def _kill_shims(self) -> None:
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
    def _unmount_under(root: Path) -> None:
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
                _run(["umount", "-l", point], check=False)

    def _remove_cgroups(self) -> None:
        """This cluster's cgroup subtree, depth first (rmdir works once a cgroup is empty)."""
        base = Path("/sys/fs/cgroup")
        for hierarchy in base.iterdir():
            root = hierarchy / self.netns
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


def wait_url(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(urllib.error.URLError, OSError):
            with urllib.request.urlopen(url, timeout=2):
                return
        time.sleep(0.5)
    raise ClusterError(f"{url} did not answer in {timeout} s")
