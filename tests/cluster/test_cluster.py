"""TFModels served by real pods: helm install, kubectl apply, Service traffic, label flips,
new versions, rollouts, scaling, garbage collection — on the real test cluster.

The tests run in file order and share one operator release and one TFModel ("fleet");
each step starts from the state the previous one left.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.cluster import Cluster
from tests.server.savedmodels import export_linear

pytestmark = pytest.mark.cluster

CHART = Path(__file__).resolve().parents[2] / "helm" / "tfmodel-operator"
OPERATOR_NS = "tfmodel-system"
RELEASE = "tfmodel-operator"
NAME = "fleet"
CLIENT = "tests/cluster/client.py"
X = [1.0, 2.0]
# y = a*x + b for each exported version (tests/server/savedmodels.export_linear)
LIN = {1: (0.5, 2.0), 2: (1.0, 0.0)}
RANKER = {1: (2.0, 0.0), 2: (3.0, 0.0)}


def expect(ab: tuple[float, float]) -> list[float]:
    a, b = ab
    return [a * x + b for x in X]


def wait_for(what: str, probe, timeout: float = 180, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (subprocess.CalledProcessError, KeyError, IndexError, ValueError) as exc:
            value, last = None, exc
        if value:
            return value
        time.sleep(interval)
    detail = getattr(last, "stderr", None) or last
    raise AssertionError(f"timed out after {timeout} s waiting for {what}: {detail}")


# --- shared state ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def release(cluster: Cluster) -> Iterator[dict]:
    repo, tag = cluster.images["operator"].rsplit(":", 1)
    cluster.helm(
        "install", RELEASE, str(CHART),
        "--namespace", OPERATOR_NS, "--create-namespace",
        "--set", f"image.repository={repo}", "--set", f"image.tag={tag}",
        "--set", "image.pullPolicy=Never", "--set", "statusIntervalSeconds=2",
        "--wait", "--timeout", "4m",
    )  # fmt: skip
    yield {"repo": repo, "tag": tag}
    cluster.helm("uninstall", RELEASE, "--namespace", OPERATOR_NS, "--wait", check=False)


@pytest.fixture(scope="module")
def models_root(cluster: Cluster) -> Path:
    root = cluster.data_dir / "models"
    for version, (a, b) in LIN.items():
        export_linear(root / "lin", version, a=a, b=b)
    export_linear(root / "ranker", 1, a=RANKER[1][0], b=RANKER[1][1])
    _world_readable(root)
    return root


def _world_readable(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o644)


def tfmodel_manifest(cluster: Cluster, namespace: str, models_root: Path) -> dict:
    return {
        "apiVersion": "serving.tfmodel.io/v1alpha1",
        "kind": "TFModel",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "image": cluster.images["server"],
            "imagePullPolicy": "Never",
            "replicas": 1,
            "pollIntervalSeconds": 2,
            "models": [
                {
                    "name": "lin",
                    "basePath": "/models/lin",
                    "versionPolicy": {"specific": {"versions": [1, 2]}},
                    "versionLabels": {"stable": 1, "canary": 2},
                },
                {"name": "ranker", "basePath": "/models/ranker", "versionPolicy": {"latest": {}}},
            ],
            "storage": {"hostPath": {"path": str(models_root), "type": "Directory"}},
            "resources": {
                "requests": {"cpu": "100m", "memory": "256Mi"},
                "limits": {"memory": "2Gi"},
            },
        },
    }


@pytest.fixture(scope="module")
def fleet(cluster: Cluster, release: dict, models_root: Path) -> Iterator[dict]:
    namespace = f"tfm-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", namespace)
    manifest = tfmodel_manifest(cluster, namespace, models_root)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    state = {"namespace": namespace, "manifest": manifest}
    yield state
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def pods(cluster: Cluster, namespace: str) -> list[dict]:
    selector = f"app.kubernetes.io/instance={NAME},app.kubernetes.io/name=tfmodel-server"
    return cluster.get("pods", "-n", namespace, "-l", selector)["items"]


def ready_pods(cluster: Cluster, namespace: str) -> list[dict]:
    out = []
    for pod in pods(cluster, namespace):
        if pod["metadata"].get("deletionTimestamp"):
            continue
        conditions = pod.get("status", {}).get("conditions") or []
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            out.append(pod)
    return out


def service_ip(cluster: Cluster, namespace: str) -> str:
    return cluster.get("service", NAME, "-n", namespace)["spec"]["clusterIP"]


def predict_once(cluster: Cluster, host: str, model: str, label: str = "-") -> dict:
    done = cluster.netns_python(CLIENT, "once", host, "8500", "8501", model, label)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def approx(values: list[float]) -> list[float]:
    return [round(v, 4) for v in values]


class Loop:
    """A client looping on the Service (inside the node namespace) while a change happens."""

    def __init__(self, cluster: Cluster, host: str, model: str, label: str, max_s: float = 600):
        self.stop_file = cluster.data_dir / f"stop-{secrets.token_hex(4)}"
        self.out = cluster.data_dir / f"loop-{secrets.token_hex(4)}.json"
        self.handle = self.out.open("w")
        self.proc = cluster.netns_popen(
            CLIENT, "loop", host, "8500", "8501", model, label, str(self.stop_file), str(max_s),
            stdout=self.handle,
        )  # fmt: skip

    def finish(self) -> dict:
        self.stop_file.touch()
        self.proc.wait(timeout=60)
        self.handle.close()
        text = self.out.read_text()
        assert self.proc.returncode == 0, text[-3000:]
        return json.loads(text.strip().splitlines()[-1])


# --- 1. helm install ------------------------------------------------------------------------
def test_helm_install_runs_operator_under_chart_rbac(cluster: Cluster, release: dict):
    (pod,) = cluster.get(
        "pods", "-n", OPERATOR_NS, "-l", "app.kubernetes.io/name=tfmodel-operator"
    )["items"]
    assert pod["status"]["phase"] == "Running"
    assert pod["spec"]["serviceAccountName"] == RELEASE
    container = pod["spec"]["containers"][0]
    assert container["image"] == f"{release['repo']}:{release['tag']}"
    # ServiceAccount admission mounted the chart ServiceAccount's token.
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    assert "/var/run/secrets/kubernetes.io/serviceaccount" in mounts
    statuses = pod["status"]["containerStatuses"]
    assert statuses[0]["ready"] and statuses[0]["restartCount"] == 0
    sa = f"system:serviceaccount:{OPERATOR_NS}:{RELEASE}"
    can = cluster.kubectl(
        "auth", "can-i", "--as", sa, "patch", "tfmodels.serving.tfmodel.io/status"
    )
    assert can.stdout.strip() == "yes"
    cannot = cluster.kubectl("auth", "can-i", "--as", sa, "create", "pods/exec", check=False)
    assert cannot.stdout.strip() == "no"


# --- 2. kubectl apply -> Ready pods ---------------------------------------------------------
def test_apply_tfmodel_pods_become_ready(cluster: Cluster, fleet: dict):
    ns = fleet["namespace"]
    wait_for("a Ready server pod", lambda: len(ready_pods(cluster, ns)) == 1, timeout=300)
    (pod,) = ready_pods(cluster, ns)
    probe = pod["spec"]["containers"][0]["readinessProbe"]["httpGet"]
    assert probe["path"] == "/readyz"
    assert pod["spec"]["containers"][0]["image"] == cluster.images["server"]

    def status_ready() -> bool:
        status = cluster.get("tfm", NAME, "-n", ns).get("status") or {}
        conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
        return conditions.get("Ready") == "True"

    wait_for("TFModel Ready", status_ready, timeout=120)
    table = cluster.kubectl("get", "tfm", "-n", ns).stdout
    assert NAME in table and "lin" in table and "1/1" in table, table
    fleet["pod_uids"] = {p["metadata"]["uid"]: p for p in ready_pods(cluster, ns)}


# --- 3. gRPC + REST through the ClusterIP Service -------------------------------------------
def test_predict_through_service(cluster: Cluster, fleet: dict):
    ip = service_ip(cluster, fleet["namespace"])
    stable = predict_once(cluster, ip, "lin", "stable")
    assert stable["grpc"]["version"] == 1
    assert approx(stable["grpc"]["y"]) == expect(LIN[1])
    assert approx(stable["rest"]["y"]) == expect(LIN[1])
    canary = predict_once(cluster, ip, "lin", "canary")
    assert canary["grpc"]["version"] == 2
    assert approx(canary["grpc"]["y"]) == approx(canary["rest"]["y"]) == expect(LIN[2])
    ranker = predict_once(cluster, ip, "ranker")
    assert ranker["grpc"]["version"] == 1
    assert approx(ranker["rest"]["y"]) == expect(RANKER[1])
