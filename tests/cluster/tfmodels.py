"""What the cluster tests' TFModels share: the manifest's frame, the wait for Ready (and a
Stable rollout), the rollout's status, model directories the server's user can read, and a
looping client script run in the node's network namespace."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

from tfmodel_devcluster.cluster import Cluster
from tfmodel_devcluster.demo import steps
from tfmodel_devcluster.demo.steps import wait_until

# The demo's TFModel frame and model-tree modes, shared with the tests.
manifest = steps.tfmodel_manifest
world_readable = steps.world_readable


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
