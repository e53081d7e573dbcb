"""A rollout's shadow step on the real cluster: a canary that answers differently is rolled
back in the shadow step, before any client got one of its answers.

TFModel "shadow", model lin (stable 1: y = x + 0.5). Version 2 is built to answer otherwise
(y = -x - 0.5: other values, and Classify's top-1 class flips). The rollout's first step
shadows 100 % of stable's requests on 2 and judges the agreement; the second step would
move real traffic. A REST client loops on `stable` (Predict and Classify) throughout and
records every answer: all of them are version 1's.

The TFModel also logs every request (models[].requestLogging, samplingRate 1) to a hostPath
volume (spec.requestLogging): each pod writes in the directory the kubelet names after it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from tfmodel_devcluster.cluster import Cluster
from tfmodel_devcluster.demo.steps import wait_until

from tests.cluster import tfmodels
from tests.server.savedmodels import export_linear

pytestmark = pytest.mark.cluster

NAME = "shadow"
ROLLOUT = {
    "steps": [
        {"shadowPercent": 100, "pauseSeconds": 5},
        {"trafficPercent": 50, "pauseSeconds": 5},
    ],
    "analysis": {
        "minRequests": 30,
        "progressDeadlineSeconds": 120,
        "shadow": {"minTop1Agreement": 0.99, "maxAbsDiff": 0.001},
    },
}

# Predict and Classify on `stable`, alternately; every answer is kept (value -> count).
CLIENT = r"""
import json, os, sys, time, urllib.error, urllib.request
host, stop = sys.argv[1], sys.argv[2]
base = f"http://{host}:8501/v1/models/lin/labels/stable"
calls = [
    (base + ":predict", {"instances": [1.0, 2.0]}),
    (base + ":classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 1.0}]}),
]
ok = failed = 0
answers, errors = {}, []
start, i = time.monotonic(), 0
while not os.path.exists(stop) and time.monotonic() - start < 600:
    url, doc = calls[i % 2]
    i += 1
    request = urllib.request.Request(url, json.dumps(doc).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            body = json.loads(answer.read())
        key = json.dumps(body.get("predictions", body.get("results")))
        answers[key] = answers.get(key, 0) + 1
        ok += 1
        if ok == 1:
            open(stop + ".ready", "w").close()
    except (urllib.error.HTTPError, OSError) as exc:
        failed += 1
        if len(errors) < 20:
            errors.append(str(getattr(exc, "code", type(exc).__name__)))
    time.sleep(0.01)
print(json.dumps({"ok": ok, "failed": failed, "errors": errors, "answers": answers}))
"""


@pytest.fixture(scope="module")
def tfmodel(cluster: Cluster, operator: None) -> Iterator[dict[str, Any]]:
    root = cluster.data_dir / "shadow-models"
    export_linear(root / "lin", 1, a=1.0, b=0.5)
    export_linear(root / "lin", 2, a=-1.0, b=-0.5)  # answers otherwise
    tfmodels.world_readable(root)
    logs = cluster.data_dir / f"shadow-logs-{secrets.token_hex(3)}"
    logs.mkdir()
    logs.chmod(0o777)  # the server runs as a non-root user; a hostPath keeps the host's modes
    namespace = f"shadow-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", namespace)
    manifest = tfmodels.manifest(
        cluster,
        NAME,
        namespace,
        2,
        [
            {
                "name": "lin",
                "basePath": "/models/lin",
                "versionPolicy": {"specific": {"versions": [1, 2]}},
                "versionLabels": {"stable": 1},
                "rollout": ROLLOUT,
                "requestLogging": {"samplingRate": 1.0},
            }
        ],
        storage={"hostPath": {"path": str(root), "type": "Directory"}},
        requestLogging={"hostPath": {"path": str(logs), "type": "Directory"}},
    )
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    tfmodels.wait_ready(cluster, NAME, namespace, stable_rollout=True)
    ip = cluster.get("service", NAME, "-n", namespace)["spec"]["clusterIP"]
    yield {"namespace": namespace, "ip": ip, "logs": logs}
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def rollout(cluster: Cluster, namespace: str) -> dict[str, Any]:
    return tfmodels.rollout(cluster, NAME, namespace)


class Client(tfmodels.LoopingClient):
    """CLIENT in the node's network namespace until finish()."""

    def __init__(self, cluster: Cluster, host: str) -> None:
        super().__init__(cluster, CLIENT, "shadow", host)


def test_a_disagreeing_canary_is_rolled_back_in_the_shadow_step(cluster: Cluster, tfmodel):
    ns = tfmodel["namespace"]
    client = Client(cluster, tfmodel["ip"])
    seen: list[dict[str, Any]] = []
    try:
        cluster.kubectl(
            "patch", "tfm", NAME, "-n", ns, "--type=json",
            "-p", json.dumps([
                {"op": "replace", "path": "/spec/models/0/versionLabels/stable", "value": 2}
            ]),
        )  # fmt: skip

        def rolled_back() -> dict[str, Any] | None:
            state = rollout(cluster, ns)
            seen.append(state)
            done = state.get("target") == 2 and state.get("phase") in ("Promoted", "RolledBack")
            return state if done else None

        state = wait_until("the rollout to 2 to end", rolled_back, 300, 1)
    finally:
        result = client.finish()
    assert state["phase"] == "RolledBack" and state["stable"] == 1, state
    assert state["step"] == 0, state  # the shadow step: no real traffic moved
    assert "failed the shadow analysis" in state["message"], state
    assert "top-1 agreement 0.0000 < 0.99" in state["message"], state
    assert "differ from stable's by more than 0.001" in state["message"], state
    agreement = state["analysis"]["agreement"]
    assert agreement["compared"] >= 30 and agreement["top1Agreement"] == 0.0, state
    assert agreement["absDiffOver"] == agreement["compared"], state
    # While it ran, the servers were told: canary 0 %, shadow 100 %; never real traffic.
    assert all(s.get("weight", 0) == 0 for s in seen), seen
    assert any(s.get("shadow") == 100 for s in seen), seen
    # Every client answer is version 1's (y = x + 0.5; class "positive" for x = 1).
    assert result["failed"] == 0 and result["ok"] > 60, result
    assert _only_version_1(result["answers"]), result
    events = [
        e
        for e in cluster.get("events", "-n", ns)["items"]
        if e["involvedObject"]["name"] == NAME and e["reason"] == "RolloutRolledBack"
    ]
    assert events and "top-1 agreement" in events[-1]["message"], events


def _only_version_1(answers: dict[str, int]) -> bool:
    """Predict answers [1.5, 2.5]; Classify answers 'positive' the likelier (version 2 would
    answer [-1.5, -2.5] and 'negative'). Both kinds must be there."""
    kinds = set()
    for key in answers:
        body = json.loads(key)
        if isinstance(body[0], float):
            kinds.add("predict")
            if body != [1.5, 2.5]:
                return False
        else:
            kinds.add("classify")
            scores = dict(body[0])
            if not scores["positive"] > scores["negative"]:
                return False
    return kinds == {"predict", "classify"}


def test_each_pod_logs_its_requests_in_its_own_directory(cluster: Cluster, tfmodel):
    """spec.requestLogging on the real kubelet: $(POD_NAME) expanded in the server's
    --request_log_dir, the volume writable by the server's user, records that parse."""
    from tensorflow_serving.apis import prediction_log_pb2
    from tfmodel_server.servables.tensorflow.prediction_log_files import log_files, read_records

    ns, logs = tfmodel["namespace"], tfmodel["logs"]
    pods = {
        p["metadata"]["name"]
        for p in cluster.get("pods", "-n", ns, "-l", f"app.kubernetes.io/instance={NAME}")["items"]
    }
    assert len(pods) == 2, pods

    def written() -> list[prediction_log_pb2.PredictionLog] | None:
        records = []
        for pod in pods:
            for path in log_files([str(logs / pod / "lin")]):
                for raw in read_records(path):
                    record = prediction_log_pb2.PredictionLog()
                    record.ParseFromString(raw)
                    records.append(record)
        return records or None

    records = wait_until("request log records on the volume", written, 60, 1)
    assert {d.name for d in logs.iterdir()} <= pods, list(logs.iterdir())
    kinds = {r.WhichOneof("log_type") for r in records}
    assert kinds <= {"predict_log", "classify_log"} and kinds, kinds
    names = {
        (
            r.predict_log.request if r.HasField("predict_log") else r.classify_log.request
        ).model_spec.name
        for r in records
    }
    assert names == {"lin"}, names
