"""One reconcile per TFModel at a time, against the real API server.

The status timer and the change handlers used to reconcile the same TFModel at once, each
from its own snapshot of status.rollouts, and merge-patch status without a precondition: a
decision could be taken (and its event posted) twice. Here a rollout runs while other
threads edit the spec as fast as the API server takes it; the rollout must still make each
transition exactly once, with one event each.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.operator.fakefleet import StandIn, start_pods
from tests.operator.kube import KubeCluster
from tests.operator.operator_proc import Objects, OperatorProcess, wait_for

ROLLOUT_REASONS = (
    "RolloutStarted",
    "RolloutProgressing",
    "RolloutPromoted",
    "RolloutRolledBack",
    "RolloutAborted",
)


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    server = StandIn(models=["lin"], versions=[1, 2]).start()
    try:
        yield server
    finally:
        server.stop()


def rollout_tfmodel(name: str, stable: int) -> dict:
    return {
        "apiVersion": "serving.tfmodel.io/v1alpha1",
        "kind": "TFModel",
        "metadata": {"name": name},
        "spec": {
            "models": [
                {
                    "name": "lin",
                    "basePath": "/models/lin",
                    "versionPolicy": {"specific": {"versions": [stable]}},
                    "versionLabels": {"stable": stable},
                    "rollout": {
                        "steps": [
                            {"trafficPercent": 20, "pauseSeconds": 2},
                            {"trafficPercent": 60, "pauseSeconds": 2},
                        ],
                        "analysis": {"minRequests": 1, "maxErrorRatio": 0.5},
                    },
                }
            ],
            "storage": {"hostPath": {"path": "/srv/models"}},
        },
    }


def rollout_events(kube: KubeCluster, namespace: str, uid: str) -> Counter[str]:
    """Events about the TFModel by reason, each counted as often as it was posted."""
    items = json.loads(kube.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    counts: Counter[str] = Counter()
    for event in items:
        if event["involvedObject"].get("uid") == uid and event["reason"] in ROLLOUT_REASONS:
            counts[event["reason"]] += int(event.get("count") or 1)
    return counts


def phase(objs: Objects, name: str) -> str | None:
    rollouts = (objs.get("tfmodel", name) or {}).get("status", {}).get("rollouts") or []
    return rollouts[0]["phase"] if rollouts else None


def test_concurrent_spec_edits_during_a_rollout_make_each_transition_once(
    kube: KubeCluster,
    namespace: str,
    objs: Objects,
    operator: OperatorProcess,
    stand_in: StandIn,
):
    name = "one-writer"
    objs.apply(rollout_tfmodel(name, stable=1))
    start_pods(kube.admin, namespace, [name], pods_each=2, port=stand_in.port)
    wait_for(lambda: phase(objs, name) == "Stable", 60, "rollout state Stable", operator.log)
    uid = objs.get("tfmodel", name)["metadata"]["uid"]

    # Other writers edit the spec (replicas, which the rollout does not read) while the
    # rollout runs: every edit wakes the change handler while the timer keeps ticking.
    stop = threading.Event()
    edits = Counter[str]()

    def edit(worker: int) -> None:
        replicas = 1 + worker
        while not stop.is_set():
            done = kube.kubectl(
                "patch", "tfm", name, "-n", namespace, "--type=merge",
                "-p", json.dumps({"spec": {"replicas": replicas}}), check=False,
            )  # fmt: skip
            edits["ok" if done.returncode == 0 else "failed"] += 1
            replicas = 1 + (replicas % 3)
            time.sleep(0.5)  # a busy fleet's pace; unpaced, every status write would conflict

    editors = [threading.Thread(target=edit, args=(i,), daemon=True) for i in range(3)]
    for thread in editors:
        thread.start()
    try:
        objs.patch(
            "tfm",
            name,
            [
                {"op": "replace", "path": "/spec/models/0/versionLabels/stable", "value": 2},
                {
                    "op": "replace",
                    "path": "/spec/models/0/versionPolicy/specific/versions",
                    "value": [2],
                },
            ],
            "json",
        )
        try:
            wait_for(lambda: phase(objs, name) == "Promoted", 120, "rollout Promoted")
        except AssertionError as err:
            rollouts = (objs.get("tfmodel", name) or {}).get("status", {}).get("rollouts")
            raise AssertionError(f"{err}; rollouts: {rollouts}\n{operator.log()[-3000:]}") from err
    finally:
        stop.set()
        for thread in editors:
            thread.join(60)
    assert edits["ok"] >= 3, edits
    # Let several more status rounds pass: a late second decision would show up here.
    rounds = kube.kubectl("get", "tfm", name, "-n", namespace, "-o", "json")
    assert json.loads(rounds.stdout)["status"]["rollouts"][0]["stable"] == 2

    def settled() -> Counter[str] | None:
        counts = rollout_events(kube, namespace, uid)
        return counts if counts.get("RolloutPromoted") else None

    wait_for(settled, 30, "the RolloutPromoted event", operator.log)
    time.sleep(5)
    counts = rollout_events(kube, namespace, uid)
    assert counts == {
        "RolloutStarted": 1,
        "RolloutProgressing": 2,  # step 1 and step 2
        "RolloutPromoted": 1,
    }, (counts, operator.log()[-4000:])
