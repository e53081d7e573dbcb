"""What the cluster tests' TFModels share: the manifest's frame, the wait for Ready (and a
Stable rollout), the rollout's status, model directories the server's user can read, and a
looping client script run in the node's network namespace."""

from __future__ import annotations

import copy
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

from tfmodel_devcluster.cluster import Cluster
from tfmodel_devcluster.demo.steps import wait_until

RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "2Gi"}}


def manifest(
    cluster: Cluster,
    name: str,
    namespace: str,
    replicas: int,
    models: list[dict[str, Any]],
    **spec: Any,
) -> dict[str, Any]:
    """A TFModel of the test image (never pulled), polled every 2 s, with `spec` added."""
    return {
        "apiVersion": "serving.tfmodel.io/v1alpha1",
        "kind": "TFModel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "image": cluster.images["server"],
            "imagePullPolicy": "Never",
            "replicas": replicas,
            "pollIntervalSeconds": 2,
            "models": models,
            "resources": copy.deepcopy(RESOURCES),  # a test may change its copy
            **spec,
        },
    }


def status(cluster: Cluster, name: str, namespace: str) -> dict[str, Any]:
    return dict(cluster.get("tfm", name, "-n", namespace).get("status") or {})


def is_ready(cluster: Cluster, name: str, namespace: str) -> bool:
    conditions = status(cluster, name, namespace).get("conditions") or []
    return {c["type"]: c["status"] for c in conditions}.get("Ready") == "True"


def rollout(cluster: Cluster, name: str, namespace: str) -> dict[str, Any]:
    """The first model's rollout status ({} before the operator wrote one)."""
    return dict(next(iter(status(cluster, name, namespace).get("rollouts") or []), {}))


def wait_ready(cluster: Cluster, name: str, namespace: str, stable_rollout: bool = False) -> None:
    """Until the TFModel is Ready (and, with `stable_rollout`, its rollout Stable)."""

    def ready() -> bool:
        if not is_ready(cluster, name, namespace):
            return False
        return not stable_rollout or rollout(cluster, name, namespace).get("phase") == "Stable"

    what = f"TFModel {name} Ready" + (", its rollout Stable" if stable_rollout else "")
    wait_until(what, ready, 420, 2)


def world_readable(root: Path) -> None:
    """The server runs as a non-root user and a hostPath keeps the host's modes."""
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o644)


class LoopingClient:
    """`script` (python -c) in the node's network namespace, with argv HOST STOP EXTRA...,
    until finish(). The script loops until the file STOP exists, touches STOP.ready after
    its first answer and prints one JSON line of results at the end."""

    def __init__(self, cluster: Cluster, script: str, name: str, host: str, *extra: str) -> None:
        token = secrets.token_hex(4)
        self.stop = cluster.data_dir / f"{name}-stop-{token}"
        self.out = (cluster.data_dir / f"{name}-client-{token}.json").open("w+")
        argv = [sys.executable, "-c", script, host, str(self.stop), *extra]
        self.proc = subprocess.Popen(
            cluster.in_netns(argv),
            stdout=self.out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        ready = Path(f"{self.stop}.ready")
        wait_until("the client's first answer", lambda: ready.exists() or self._died(), 120, 0.5)
        assert ready.exists(), self._text()

    def _died(self) -> bool:
        return self.proc.poll() is not None

    def _text(self) -> str:
        self.out.seek(0)
        return self.out.read()

    def finish(self) -> dict[str, Any]:
        self.stop.touch()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        text = self._text()
        self.out.close()
        return dict(json.loads(text.strip().splitlines()[-1]))
