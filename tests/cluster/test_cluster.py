"""TFModels served by real pods: helm install, kubectl apply, Service traffic, label flips,
new versions, rollouts, scaling, garbage collection — on the real test cluster.

The tests run in file order and share one operator release and one TFModel ("fleet");
each step starts from the state the previous one left.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tfmodel_devcluster.cluster import Cluster
from tfmodel_devcluster.demo import steps
from tfmodel_devcluster.demo.steps import OPERATOR_NS, RELEASE, wait_until

from tests.cluster import tfmodels
from tests.server.savedmodels import export_linear

pytestmark = pytest.mark.cluster

NAME = "fleet"
X = [1.0, 2.0]
CALL = {"input": "x", "values": X, "output": "y"}  # service_client.py's INPUT for these models
# y = a*x + b for each exported version (tests/server/savedmodels.export_linear)
LIN = {1: (0.5, 2.0), 2: (1.0, 0.0)}
RANKER = {1: (2.0, 0.0), 2: (3.0, 0.0)}


def expect(ab: tuple[float, float]) -> list[float]:
    a, b = ab
    return [a * x + b for x in X]


def wait_for(what: str, probe, timeout: float = 180, interval: float = 1.0):
    return wait_until(what, probe, timeout, interval)  # the demo's poller, the tests' default


# --- shared state ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def release(cluster: Cluster, operator: None) -> dict:
    """The operator's release (conftest: the demo's helm install, so both walk the same path)."""
    repo, tag = cluster.images["operator"].rsplit(":", 1)
    return {"repo": repo, "tag": tag}


@pytest.fixture(scope="module")
def models_root(cluster: Cluster) -> Path:
    root = cluster.data_dir / "models"
    for version, (a, b) in LIN.items():
        export_linear(root / "lin", version, a=a, b=b)
    export_linear(root / "ranker", 1, a=RANKER[1][0], b=RANKER[1][1])
    tfmodels.world_readable(root)
    return root


def tfmodel_manifest(cluster: Cluster, namespace: str, models_root: Path) -> dict:
    models = [
        {
            "name": "lin",
            "basePath": "/models/lin",
            "versionPolicy": {"specific": {"versions": [1, 2]}},
            "versionLabels": {"stable": 1, "canary": 2},
        },
        {"name": "ranker", "basePath": "/models/ranker", "versionPolicy": {"latest": {}}},
    ]
    storage = {"hostPath": {"path": str(models_root), "type": "Directory"}}
    return tfmodels.manifest(cluster, NAME, namespace, 1, models, storage=storage)


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
    return steps.predict_once(cluster, host, model, label, CALL)


def approx(values: list[float]) -> list[float]:
    return [round(v, 4) for v in values]


def loop_on(cluster: Cluster, host: str, model: str, label: str, max_s: float = 600) -> steps.Loop:
    """The demo's looping client (gRPC and REST alternately) on `model` while a change happens."""
    log_file = cluster.data_dir / "logs" / "service-client.log"
    return steps.Loop(cluster, log_file, max_s, host=host, model=model, label=label, call=CALL)


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


# --- 9. non-root, read-only root file system, TensorFlow works -------------------------------
def test_server_runs_non_root_read_only(cluster: Cluster, fleet: dict):
    ns = fleet["namespace"]
    (pod,) = ready_pods(cluster, ns)
    name = pod["metadata"]["name"]
    sc = pod["spec"]["containers"][0]["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["runAsNonRoot"] is True
    probe = (
        "import os, tensorflow as tf\n"
        "try:\n"
        "    open('/opt/tfmodel/probe', 'w')\n"
        "    ro = 'writable'\n"
        "except OSError as e:\n"
        "    ro = type(e).__name__ + ':' + str(e.errno)\n"
        "print(os.getuid(), os.getgid(), ro, float(tf.reduce_sum(tf.constant([1.0, 2.0]))))\n"
    )
    done = cluster.kubectl("exec", "-n", ns, name, "-c", "server", "--", "python", "-c", probe)
    uid, gid, ro, total = done.stdout.split()[-4:]
    assert (uid, gid) == ("1000", "1000")
    assert ro == "OSError:30", ro  # EROFS
    assert float(total) == 3.0
    mounts = cluster.kubectl("exec", "-n", ns, name, "--", "cat", "/proc/mounts").stdout
    root = next(line for line in mounts.splitlines() if line.split()[1] == "/")
    assert " ro," in f" {root.split()[3]},", root


# --- 4. label flip: ConfigMap volume refresh, no restart, zero failed requests ---------------
def test_label_flip_zero_failures_no_restart(cluster: Cluster, fleet: dict):
    ns = fleet["namespace"]
    before = {p["metadata"]["uid"]: p["status"]["containerStatuses"][0]["restartCount"]
              for p in ready_pods(cluster, ns)}  # fmt: skip
    ip = service_ip(cluster, ns)
    loop = loop_on(cluster, ip, "lin", "stable")
    try:
        time.sleep(3)
        cluster.kubectl(
            "patch", "tfm", NAME, "-n", ns, "--type=json",
            "-p", json.dumps([
                {"op": "replace", "path": "/spec/models/0/versionLabels/stable", "value": 2}
            ]),
        )  # fmt: skip

        def flipped() -> bool:
            answer = predict_once(cluster, ip, "lin", "stable")
            return answer["grpc"]["version"] == 2 and approx(answer["rest"]["y"]) == expect(LIN[2])

        # kubelet sync (10 s here) + ConfigMap cache, then the server's config poll (2 s).
        wait_for("label stable -> 2 served", flipped, timeout=150, interval=2)
        time.sleep(3)
    finally:
        result = loop.finish()
    assert result["failed"] == 0, result["errors"]
    assert result["ok"] > 20
    last = result["seen"][-1]
    assert approx(last[3]) == expect(LIN[2]), result["seen"]
    assert any(approx(s[3]) == expect(LIN[1]) for s in result["seen"]), result["seen"]
    after = {p["metadata"]["uid"]: p["status"]["containerStatuses"][0]["restartCount"]
             for p in ready_pods(cluster, ns)}  # fmt: skip
    assert after == before


# --- 5. a new version directory is picked up by every pod ------------------------------------
def test_new_version_dir_served_by_every_pod(cluster: Cluster, fleet: dict, models_root: Path):
    ns = fleet["namespace"]
    ip = service_ip(cluster, ns)
    loop = loop_on(cluster, ip, "ranker", "-")
    try:
        time.sleep(2)
        staging = models_root / ".staging-ranker-2"
        export_linear(staging, 2, a=RANKER[2][0], b=RANKER[2][1])
        tfmodels.world_readable(staging)
        os.rename(staging / "2", models_root / "ranker" / "2")  # appears atomically

        def every_pod_serves_v2() -> bool:
            ips = [p["status"]["podIP"] for p in ready_pods(cluster, ns)]
            return bool(ips) and all(
                predict_once(cluster, pod_ip, "ranker")["grpc"]["version"] == 2 for pod_ip in ips
            )

        wait_for("every pod serving ranker v2", every_pod_serves_v2, timeout=120, interval=2)
        time.sleep(2)
    finally:
        result = loop.finish()
    assert result["failed"] == 0, result["errors"]
    assert approx(result["seen"][-1][3]) == expect(RANKER[2]), result["seen"]


# --- 8. kubectl scale -----------------------------------------------------------------------
def test_kubectl_scale_two_running_pods(cluster: Cluster, fleet: dict):
    ns = fleet["namespace"]
    cluster.kubectl("scale", "tfm", NAME, "-n", ns, "--replicas=2")
    wait_for("two Ready server pods", lambda: len(ready_pods(cluster, ns)) == 2, timeout=300)
    deployment = cluster.get("deployment", NAME, "-n", ns)
    assert deployment["spec"]["replicas"] == 2
    assert all(p["status"]["phase"] == "Running" for p in ready_pods(cluster, ns))


# --- 6. a rollout with a client looping: zero failed requests --------------------------------
def test_rollout_zero_failed_requests(cluster: Cluster, fleet: dict):
    ns = fleet["namespace"]
    old = {p["metadata"]["uid"] for p in pods(cluster, ns)}
    ip = service_ip(cluster, ns)
    loop = loop_on(cluster, ip, "lin", "stable")
    try:
        time.sleep(3)
        cluster.kubectl(
            "patch", "tfm", NAME, "-n", ns, "--type=merge",
            "-p", json.dumps({"spec": {"resources": {
                "requests": {"cpu": "150m", "memory": "256Mi"}, "limits": {"memory": "2Gi"}
            }}}),
        )  # fmt: skip

        def rolled() -> bool:
            current = ready_pods(cluster, ns)
            every = pods(cluster, ns)
            return (
                len(current) == 2
                and len(every) == 2
                and not ({p["metadata"]["uid"] for p in every} & old)
                and all(
                    p["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "150m"
                    for p in current
                )
            )

        wait_for("the rollout to replace both pods", rolled, timeout=420, interval=2)
        time.sleep(3)
    finally:
        result = loop.finish()
    assert result["ok"] > 50
    by_kind = result["failed_by_kind"]
    # REST (a connection per request) must never fail: endpoint removal + readiness delay.
    assert not by_kind.get("rest"), result["errors"]
    if by_kind.get("grpc") and all("CANCELLED" in e for e in result["errors"]):
        # grpc.aio cancels a call that reaches a pod at the instant its drain starts
        # (grpc/grpc#41785). The operator's max_connection_age GOAWAY moves pinned clients
        # to a remaining pod during the readiness delay, so this should not happen; a
        # gRPC core race stays an xfail, not a product failure.
        pytest.xfail(f"gRPC call cancelled by the server's shutdown: {result['errors']}")
    assert result["failed"] == 0, result["errors"]


# --- 8b. autoscaling: the HPA exists and its target resolves ---------------------------------
def test_autoscaling_hpa_target_resolves(cluster: Cluster, fleet: dict):
    ns = fleet["namespace"]
    cluster.kubectl(
        "patch", "tfm", NAME, "-n", ns, "--type=merge",
        "-p", json.dumps({"spec": {"autoscaling": {
            "minReplicas": 2, "maxReplicas": 3, "targetCPUUtilizationPercentage": 80
        }}}),
    )  # fmt: skip

    def able_to_scale() -> dict | None:
        hpa = cluster.get("hpa", NAME, "-n", ns)
        conditions = {c["type"]: c for c in (hpa.get("status") or {}).get("conditions") or []}
        able = conditions.get("AbleToScale")
        return hpa if able and able["status"] == "True" else None

    hpa = wait_for("HPA AbleToScale", able_to_scale, timeout=120, interval=2)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": NAME,
    }
    owners = hpa["metadata"].get("ownerReferences") or []
    assert any(o["kind"] == "TFModel" and o["name"] == NAME for o in owners)


# --- 7. kubectl delete tfm: the garbage collector removes every child ------------------------
def test_delete_tfmodel_garbage_collects_children(cluster: Cluster, fleet: dict):
    ns = fleet["namespace"]
    kinds = "deployment,replicaset,pod,service,configmap,hpa,pdb"
    selector = f"app.kubernetes.io/instance={NAME}"
    before = cluster.get(kinds, "-n", ns, "-l", selector)["items"]
    assert {o["kind"] for o in before} >= {"Deployment", "ReplicaSet", "Pod", "Service"}
    cluster.kubectl("delete", "tfm", NAME, "-n", ns, "--wait=true", "--timeout=120s")

    def gone() -> bool:
        left = cluster.get(kinds, "-n", ns)["items"]
        left = [o for o in left if not o["metadata"]["name"].startswith("kube-root-ca")]
        return not left

    wait_for("every child of the TFModel gone", gone, timeout=180, interval=2)
