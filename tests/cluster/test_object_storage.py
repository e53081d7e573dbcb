"""A TFModel whose model lives in a bucket, on the real cluster with a real S3 store.

The cluster's SeaweedFS (tfmodel_devcluster/objectstore.py: a process in the node namespace,
the pods reach it at their gateway address) holds the versions; the TFModel names it with
`storage.s3` and a Secret holding the credentials. Walked through in file order:
  1. 2 replicas Ready serving version 1, each pod having downloaded it once into its cache
     (the server's GET /v1/cache, and the TFModel status's summary of it);
  2. version 2 uploaded while a client loops: every pod serves it, 0 failed requests, each
     pod fetched its bytes once (GET /v1/cache and the TFModel status);
  3. `stable` moved from 1 to 2 with the canary analysis, a client looping on `stable`:
     promoted, 0 failed requests.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tfmodel_devcluster.cluster import Cluster
from tfmodel_devcluster.demo import steps
from tfmodel_devcluster.demo.steps import wait_until
from tfmodel_devcluster.objectstore import ObjectStore

from tests.cluster import tfmodels
from tests.server.savedmodels import export_linear

pytestmark = pytest.mark.cluster

NAME = "bucket"
SECRET = "s3-credentials"
X = [1.0, 2.0]
CALL = {"input": "x", "values": X, "output": "y"}
LIN = {1: (0.5, 2.0), 2: (1.0, 0.0)}  # y = a*x + b
ROLLOUT = {
    "steps": [
        {"trafficPercent": 25, "pauseSeconds": 5},
        {"trafficPercent": 50, "pauseSeconds": 5},
    ],
    "analysis": {"minRequests": 30, "progressDeadlineSeconds": 60},
}


def expect(version: int) -> list[float]:
    a, b = LIN[version]
    return [a * x + b for x in X]


def approx(values: list[float]) -> list[float]:
    return [round(v, 4) for v in values]


def upload_version(store: ObjectStore, bucket: str, version: int) -> int:
    """Export lin `version` locally and upload it under lin/<version>/; returns its bytes."""
    a, b = LIN[version]
    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        export_linear(Path(tmp), version, a=a, b=b)
        cli = store.client()
        for path in sorted(p for p in (Path(tmp) / str(version)).rglob("*") if p.is_file()):
            key = f"lin/{version}/{path.relative_to(Path(tmp) / str(version)).as_posix()}"
            cli.upload_file(str(path), bucket, key)
            total += path.stat().st_size
    return total


@pytest.fixture(scope="module")
def bucket_model(cluster: Cluster, operator: None) -> Iterator[dict[str, Any]]:
    store = cluster.object_store()
    bucket = f"models-{secrets.token_hex(3)}"
    store.client().create_bucket(Bucket=bucket)
    sizes = {1: upload_version(store, bucket, 1)}
    namespace = f"s3-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", namespace)
    literals = [f"--from-literal={k}={v}" for k, v in store.secret_data().items()]
    cluster.kubectl("create", "secret", "generic", SECRET, "-n", namespace, *literals)
    manifest = tfmodels.manifest(
        cluster,
        NAME,
        namespace,
        2,
        [
            {
                "name": "lin",
                "storage": {
                    "s3": {
                        "endpoint": store.pod_endpoint,
                        "bucket": bucket,
                        "prefix": "lin",
                        "region": store.region,
                        "addressingStyle": "path",
                        "secretRef": {"name": SECRET},
                    }
                },
                "versionPolicy": {"latest": {"numVersions": 2}},
                "versionLabels": {"stable": 1},
                "rollout": ROLLOUT,
            }
        ],
        fileSystemPollWaitSeconds=2,
        modelCache={"sizeLimit": "1Gi"},
    )
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    yield {"namespace": namespace, "store": store, "bucket": bucket, "sizes": sizes}
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def ready_pods(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    selector = f"app.kubernetes.io/instance={NAME},app.kubernetes.io/name=tfmodel-server"
    items = cluster.get("pods", "-n", namespace, "-l", selector)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp") and steps.pod_ready(p)]


def service_ip(cluster: Cluster, namespace: str) -> str:
    return str(cluster.get("service", NAME, "-n", namespace)["spec"]["clusterIP"])


def tfmodel_status(cluster: Cluster, namespace: str) -> dict[str, Any]:
    return dict(cluster.get("tfm", NAME, "-n", namespace).get("status") or {})


def status_cache(cluster: Cluster, namespace: str, version: int) -> dict[str, Any] | None:
    """The TFModel status's download summary of lin `version` (None until shown)."""
    for model in tfmodel_status(cluster, namespace).get("models") or []:
        for row in model.get("versions") or [] if model.get("name") == "lin" else []:
            if row.get("version") == version:
                return row.get("cache")
    return None


def cache_of(cluster: Cluster, pod_ip: str) -> dict[str, Any]:
    """The server's GET /v1/cache of one pod (from the node namespace)."""
    code = (
        "import sys, urllib.request; "
        "print(urllib.request.urlopen(f'http://{sys.argv[1]}:8501/v1/cache', timeout=10).read()"
        ".decode())"
    )
    done = cluster.netns_python("-c", code, pod_ip, timeout=60)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def loop(cluster: Cluster, host: str, label: str) -> steps.Loop:
    log_file = cluster.data_dir / "logs" / "service-client.log"
    return steps.Loop(cluster, log_file, 600, host=host, model="lin", label=label, call=CALL)


def serves(cluster: Cluster, host: str, version: int, label: str = "-") -> bool:
    answer = steps.predict_once(cluster, host, "lin", label, CALL)
    return bool(answer["grpc"]["version"] == version)


def test_two_replicas_serve_the_bucket_version(cluster: Cluster, bucket_model: dict[str, Any]):
    ns = bucket_model["namespace"]

    def ready() -> bool:
        status = tfmodel_status(cluster, ns)
        conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
        return conditions.get("Ready") == "True" and len(ready_pods(cluster, ns)) == 2

    wait_until("TFModel bucket Ready with 2 pods", ready, 420, 2)
    answer = steps.predict_once(cluster, service_ip(cluster, ns), "lin", "stable", CALL)
    assert answer["grpc"]["version"] == 1, answer
    pod_ips = [p["status"]["podIP"] for p in ready_pods(cluster, ns)]
    for pod_ip in pod_ips:
        entry = cache_of(cluster, pod_ip)["models"]["lin"]["1"]
        assert entry["state"] == "cached", entry
        assert entry["bytes_fetched"] == entry["bytes_total"] == bucket_model["sizes"][1], entry

    # The TFModel status says the same, summed over the pods.
    def shown() -> dict[str, Any] | None:
        summary = status_cache(cluster, ns, 1)
        return summary if summary and summary["cachedPods"] == 2 else None

    summary = wait_until("the status showing v1 cached on 2 pods", shown, 120, 2)
    size = bucket_model["sizes"][1]
    assert summary["state"] == "Cached" and summary["sizeBytes"] == size, summary
    assert summary["fetchedBytes"] == 2 * size and summary["fetchedBytesMaxPerPod"] == size


def test_new_version_uploaded_reaches_every_pod(cluster: Cluster, bucket_model: dict[str, Any]):
    ns = bucket_model["namespace"]
    client = loop(cluster, service_ip(cluster, ns), "-")
    try:
        size = upload_version(bucket_model["store"], bucket_model["bucket"], 2)
        bucket_model["sizes"][2] = size

        def every_pod_serves_v2() -> bool:
            ips = [p["status"]["podIP"] for p in ready_pods(cluster, ns)]
            return len(ips) == 2 and all(serves(cluster, ip, 2) for ip in ips)

        wait_until("every pod serving lin v2", every_pod_serves_v2, 240, 2)
    finally:
        result = client.finish()
    assert result["failed"] == 0, result["errors"]
    assert approx(result["seen"][-1][3]) == expect(2), result["seen"]
    for pod in ready_pods(cluster, ns):
        cache = cache_of(cluster, pod["status"]["podIP"])["models"]["lin"]
        # Each pod fetched each version once: its bytes, no more (no second download).
        for version in (1, 2):
            entry = cache[str(version)]
            assert entry["state"] == "cached", cache
            assert entry["bytes_fetched"] == bucket_model["sizes"][version], cache

    def shown() -> dict[str, Any] | None:
        summary = status_cache(cluster, ns, 2)
        return summary if summary and summary["cachedPods"] == 2 else None

    summary = wait_until("the status showing v2 cached on 2 pods", shown, 120, 2)
    assert summary["fetchedBytesMinPerPod"] == summary["fetchedBytesMaxPerPod"] == size, summary


def test_canary_rollout_to_the_uploaded_version(cluster: Cluster, bucket_model: dict[str, Any]):
    ns = bucket_model["namespace"]
    client = loop(cluster, service_ip(cluster, ns), "stable")
    try:
        cluster.kubectl(
            "patch", "tfm", NAME, "-n", ns, "--type=json",
            "-p", json.dumps([
                {"op": "replace", "path": "/spec/models/0/versionLabels/stable", "value": 2}
            ]),
        )  # fmt: skip

        def finished() -> dict[str, Any] | None:
            for state in tfmodel_status(cluster, ns).get("rollouts") or []:
                if state.get("target") == 2 and state.get("phase") in ("Promoted", "RolledBack"):
                    return dict(state)
            return None

        state = wait_until("the rollout of lin v2", finished, 300, 1)
    finally:
        result = client.finish()
    assert state["phase"] == "Promoted" and state["stable"] == 2, state
    assert state["analysis"]["canary"]["requests"] >= 30, state
    assert result["failed"] == 0, result["errors"]
    outputs = {tuple(approx(s[3])) for s in result["seen"]}
    assert {tuple(expect(1)), tuple(expect(2))} <= outputs, result["seen"]
    # Promoted is written once the ConfigMap names 2 stable; each pod sees it when the kubelet
    # syncs the mounted ConfigMap (up to its sync period) and the server re-reads it.
    ip = service_ip(cluster, ns)
    wait_until(
        "every pod's stable to be 2",
        lambda: all(serves(cluster, ip, 2, "stable") for _ in range(3)),
        120,
        2,
    )
