"""The canary analysis on the real cluster: it judges the canary, not the clients.

One TFModel ("canary", model lin) with an automated rollout, walked through in file order:
  1. 1 -> 2 with a client sending 1 malformed request in 32 (~3 %, each answered 400) to
     `stable` throughout: promoted, 0 failed valid requests;
  2. 2 -> 3, a version whose signature fails server-side (DEADLINE_EXCEEDED): rolled back;
  3. 2 -> 4 with no traffic at all: waits ("waiting for traffic"), then rolls back at the
     progress deadline, as the spec says.
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
from tests.server.savedmodels import export_faulty, export_linear

pytestmark = pytest.mark.cluster

NAME = "canary"
LIN = {1: (0.5, 2.0), 2: (1.0, 0.0), 4: (2.0, 1.0)}  # y = a*x + b; 3 is the faulty one
DEADLINE_S = 30
ROLLOUT = {
    "steps": [
        {"trafficPercent": 25, "pauseSeconds": 5},
        {"trafficPercent": 50, "pauseSeconds": 5},
    ],
    "analysis": {"minRequests": 30, "progressDeadlineSeconds": DEADLINE_S},
}

# A REST client in the node's network namespace: valid predicts on `stable`, every
# EVERY-th one malformed (an input the signature does not have: HTTP 400, INVALID_ARGUMENT).
CLIENT = r"""
import json, os, sys, time, urllib.error, urllib.request
host, stop, every = sys.argv[1], sys.argv[2], int(sys.argv[3])
url = f"http://{host}:8501/v1/models/lin/labels/stable:predict"
valid = {"instances": [1.0, 2.0]}
bad = {"inputs": {"no_such_input": [1.0]}}
ok = failed = 0
malformed, outputs, errors = {}, {}, []
start, i = time.monotonic(), 0
while not os.path.exists(stop) and time.monotonic() - start < 600:
    i += 1
    is_bad = every > 0 and i % every == 0
    body = json.dumps(bad if is_bad else valid).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            y = tuple(round(v, 4) for v in json.loads(answer.read())["predictions"])
        code = "200"
    except urllib.error.HTTPError as exc:
        code, y = str(exc.code), None
    except OSError as exc:
        code, y = type(exc).__name__, None
    if is_bad:
        malformed[code] = malformed.get(code, 0) + 1
    elif code == "200":
        ok += 1
        outputs[str(y)] = outputs.get(str(y), 0) + 1
        if ok == 1:
            open(stop + ".ready", "w").close()
    else:
        failed += 1
        if len(errors) < 20:
            errors.append(code)
    time.sleep(0.01)
print(json.dumps({"ok": ok, "failed": failed, "errors": errors, "malformed": malformed,
                  "outputs": outputs}))
"""


class Client(tfmodels.LoopingClient):
    """CLIENT running in the node's network namespace until finish()."""

    def __init__(self, cluster: Cluster, host: str, every: int) -> None:
        super().__init__(cluster, CLIENT, "canary", host, str(every))


@pytest.fixture(scope="module")
def tfmodel(cluster: Cluster, operator: None) -> Iterator[dict[str, Any]]:
    root = cluster.data_dir / "canary-models"
    for version, (a, b) in LIN.items():
        export_linear(root / "lin", version, a=a, b=b)
    export_faulty(root / "lin", 3)
    tfmodels.world_readable(root)
    namespace = f"canary-{secrets.token_hex(3)}"
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
                "versionPolicy": {"specific": {"versions": [1, 2, 3, 4]}},
                "versionLabels": {"stable": 1},
                "rollout": ROLLOUT,
            }
        ],
        storage={"hostPath": {"path": str(root), "type": "Directory"}},
    )
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    tfmodels.wait_ready(cluster, NAME, namespace, stable_rollout=True)
    ip = cluster.get("service", NAME, "-n", namespace)["spec"]["clusterIP"]
    yield {"namespace": namespace, "ip": ip}
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def rollout(cluster: Cluster, namespace: str) -> dict[str, Any]:
    return tfmodels.rollout(cluster, NAME, namespace)


def move_stable(cluster: Cluster, namespace: str, version: int) -> None:
    cluster.kubectl(
        "patch", "tfm", NAME, "-n", namespace, "--type=json",
        "-p", json.dumps([
            {"op": "replace", "path": "/spec/models/0/versionLabels/stable", "value": version}
        ]),
    )  # fmt: skip


def wait_phase(cluster: Cluster, namespace: str, target: int, phase: str, timeout: float) -> dict:
    def reached() -> dict[str, Any] | None:
        state = rollout(cluster, namespace)
        done = state.get("target") == target and state.get("phase") in ("Promoted", "RolledBack")
        if done and state.get("phase") != phase:
            raise AssertionError(f"expected {phase}, got {state}")
        return state if done else None

    return dict(wait_until(f"rollout to {target}: {phase}", reached, timeout, 1))


def events(cluster: Cluster, namespace: str, reason: str) -> list[dict[str, Any]]:
    items = cluster.get("events", "-n", namespace)["items"]
    return [e for e in items if e["involvedObject"]["name"] == NAME and e["reason"] == reason]


def test_malformed_client_traffic_does_not_fail_a_healthy_canary(cluster: Cluster, tfmodel):
    ns = tfmodel["namespace"]
    client = Client(cluster, tfmodel["ip"], every=32)
    try:
        move_stable(cluster, ns, 2)
        state = wait_phase(cluster, ns, 2, "Promoted", 300)
    finally:
        result = client.finish()
    assert state["stable"] == 2, state
    assert result["failed"] == 0, result
    assert result["ok"] > 100 and set(result["malformed"]) == {"400"}, result
    # Both versions served valid requests; the malformed ones reached the canary too.
    assert set(result["outputs"]) >= {"(2.5, 3.0)", "(1.0, 2.0)"}, result
    canary, stable = state["analysis"]["canary"], state["analysis"]["stable"]
    assert canary["serverFaults"] == 0 and stable["serverFaults"] == 0, state
    assert canary["requests"] >= 30, state
    promoted = events(cluster, ns, "RolloutPromoted")
    assert promoted and "canary: " in promoted[-1]["message"], promoted


def test_a_canary_that_fails_server_side_rolls_back(cluster: Cluster, tfmodel):
    ns = tfmodel["namespace"]
    client = Client(cluster, tfmodel["ip"], every=32)
    try:
        move_stable(cluster, ns, 3)
        state = wait_phase(cluster, ns, 3, "RolledBack", 300)
    finally:
        result = client.finish()
    assert state["stable"] == 2, state
    assert "failed the analysis: server-fault ratio" in state["message"], state
    canary, stable = state["analysis"]["canary"], state["analysis"]["stable"]
    # Judged on at least minRequests; every valid call failed server-side. The client's
    # malformed share (1 in 32) may reach the canary too: those are client errors.
    assert canary["requests"] >= 30 and stable["serverFaults"] == 0, state
    assert canary["serverFaults"] == canary["requests"] - canary["clientErrors"] > 0, state
    assert set(result["errors"]) == {"504"}, result  # the canary's share, until rolled back
    warning = events(cluster, ns, "RolloutRolledBack")
    assert warning and warning[-1]["type"] == "Warning", warning
    assert "; stable: " in warning[-1]["message"], warning


def test_a_canary_without_traffic_waits_then_rolls_back(cluster: Cluster, tfmodel):
    ns = tfmodel["namespace"]
    move_stable(cluster, ns, 4)

    def waiting() -> dict[str, Any] | None:
        state = rollout(cluster, ns)
        waits = "waiting for traffic: 0 of 30 requests" in state.get("message", "")
        return state if state.get("target") == 4 and waits else None

    state = wait_until("the canary to wait for traffic", waiting, 300, 1)
    assert state["phase"] == "Progressing" and state["analysis"]["result"] == "Inconclusive"
    state = wait_phase(cluster, ns, 4, "RolledBack", 120 + DEADLINE_S)
    assert state["stable"] == 2, state
    assert "no verdict 30 s after step 1's pause (progressDeadlineSeconds)" in state["message"]
