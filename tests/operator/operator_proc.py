"""Run the real `tfmodel-operator` against the test API server, under the chart's RBAC.

The chart is installed once per API server (helm upgrade --install is idempotent); each test
module starts its own operator process with a kubeconfig for the chart's ServiceAccount.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.operator.kube import KubeCluster
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "tfmodel-operator"
# The chart names no default image (no public registry hosts it): every install sets one. The
# operator tests run the operator as a local process, so the Deployment's image is never pulled.
IMAGE_VALUES = ("--set", "image.repository=localhost/tfmodel-operator")
CRD_NAME = "tfmodels.serving.tfmodel.io"
OPERATOR_NAMESPACE = "tfmodel-system"
RELEASE = "tfmodel-operator"
STATUS_INTERVAL = 1.5

_installed: dict[str, Path] = {}


def install_chart(kube: KubeCluster) -> Path:
    """Install the chart cluster-wide (once per API server); returns its SA's kubeconfig."""
    if kube.server not in _installed:
        kube.helm(
            "upgrade", "--install", RELEASE, str(CHART), *IMAGE_VALUES,
            "--namespace", OPERATOR_NAMESPACE, "--create-namespace",
        )  # fmt: skip
        kube.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
        _installed[kube.server] = kube.sa_kubeconfig(OPERATOR_NAMESPACE, RELEASE)
    return _installed[kube.server]


class OperatorProcess:
    """`tfmodel-operator` as a subprocess, liveness on a free loopback port, log in a file."""

    def __init__(self, kubeconfig: Path, *args: str, status_interval: float = STATUS_INTERVAL):
        self.kubeconfig = kubeconfig
        self.liveness_port = free_port()
        script = Path(sys.executable).parent / "tfmodel-operator"
        command = (
            [str(script)] if script.exists() else [sys.executable, "-m", "tfmodel_operator.main"]
        )
        self.command = [
            *command,
            f"--liveness=http://127.0.0.1:{self.liveness_port}/healthz",
            f"--status-interval={status_interval}",
            *args,
        ]
        self.log_path = Path(tempfile.mkstemp(prefix="tfmodel-operator-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> OperatorProcess:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        url = f"http://127.0.0.1:{self.liveness_port}/healthz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"operator exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"operator liveness not up after {timeout}s:\n{self.log()[-5000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def wait_for(
    predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition", log=None
) -> Any:
    """Poll until predicate() is truthy (returning it), else fail naming `what`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.25)
    extra = f"\noperator log tail:\n{log()[-4000:]}" if log else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r}){extra}")


@dataclass
class Objects:
    """kubectl get as dicts (admin credentials), None when absent."""

    kube: KubeCluster
    namespace: str

    def get(self, kind: str, name: str, managed_fields: bool = False) -> dict[str, Any] | None:
        args = ["get", kind, name, "-n", self.namespace, "-o", "json"]
        if managed_fields:
            args.append("--show-managed-fields")
        done = self.kube.kubectl(*args, check=False)
        if done.returncode != 0:
            if "NotFound" in done.stderr:
                return None
            raise AssertionError(done.stderr)
        return json.loads(done.stdout)

    def apply(self, manifest: dict[str, Any] | str) -> None:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        self.kube.kubectl("apply", "-n", self.namespace, "-f", "-", input=text)

    def patch(
        self, kind: str, name: str, patch: Any, patch_type: str = "merge", subresource: str = ""
    ) -> None:
        args = [
            "patch",
            kind,
            name,
            "-n",
            self.namespace,
            f"--type={patch_type}",
            "-p",
            json.dumps(patch),
        ]
        if subresource:
            args.append(f"--subresource={subresource}")
        self.kube.kubectl(*args)

    def condition(self, name: str, ctype: str) -> dict[str, Any] | None:
        obj = self.get("tfmodel", name) or {}
        return next(
            (c for c in obj.get("status", {}).get("conditions", []) if c["type"] == ctype), None
        )
