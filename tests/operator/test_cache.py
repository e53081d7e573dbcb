"""What the operator keeps of the watched objects (cache.py), which API errors it retries
(kubeapi.transient) and which log lines it demotes (handlers.RoutineAtDebug)."""

from __future__ import annotations

import logging

from kubernetes.client.exceptions import ApiException
from tfmodel_operator import names
from tfmodel_operator.applied import AppliedChildren, own_fields_hash
from tfmodel_operator.cache import View, tfmodel_of, trim_child, trim_pod
from tfmodel_operator.handlers import RoutineAtDebug
from tfmodel_operator.kubeapi import transient
from tfmodel_operator.scaling import HANDOVER_MANAGER, manages_field

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "m",
        "namespace": "ns",
        "uid": "u1",
        "resourceVersion": "7",
        "generation": 3,
        "labels": names.common_labels("m"),
        "annotations": {"big": "x" * 10_000},
        "ownerReferences": [{"kind": "TFModel", "name": "m", "uid": "t1", "controller": True}],
        "managedFields": [
            {
                "manager": names.FIELD_MANAGER,
                "operation": "Apply",
                "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {}}},
            },
            {"manager": HANDOVER_MANAGER, "operation": "Apply", "fieldsV1": {"f:spec": {}}},
            {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {"f:x": {}}},
            {"manager": "kubectl-edit", "operation": "Update", "fieldsV1": {"f:y": {}}},
        ],
    },
    "spec": {"replicas": 4, "template": {"spec": {"containers": [{"name": "server"}] * 3}}},
    "status": {"readyReplicas": 4, "observedGeneration": 3},
}


def test_a_trimmed_child_answers_what_a_reconcile_asks():
    kept = trim_child("Deployment", DEPLOYMENT)
    assert "template" not in kept["spec"] and "annotations" not in kept["metadata"]
    assert kept["spec"] == {"replicas": 4} and kept["status"] == DEPLOYMENT["status"]
    # applied.py's drift check and scaling.py's hand-over read the same from the copy.
    assert own_fields_hash(kept) == own_fields_hash(DEPLOYMENT)
    assert manages_field(kept, names.FIELD_MANAGER, ("spec", "replicas"))
    assert [e["manager"] for e in kept["metadata"]["managedFields"]] == [
        names.FIELD_MANAGER,
        HANDOVER_MANAGER,
    ]
    assert kept["metadata"]["ownerReferences"] == DEPLOYMENT["metadata"]["ownerReferences"]
    assert "status" not in trim_child("ConfigMap", {**DEPLOYMENT, "kind": "ConfigMap"})


def test_a_trimmed_pod_keeps_what_the_probes_read():
    pod = {
        "metadata": {"name": "m-1", "namespace": "ns", "uid": "p1", "labels": {"a": "b"}},
        "spec": {
            "containers": [
                {"name": "sidecar", "ports": [{"name": "http", "containerPort": 1}]},
                {"name": "server", "ports": [{"name": "http", "containerPort": 9000}], "env": []},
            ],
            "volumes": [{"name": "config"}],
        },
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.5",
            "conditions": [{"type": "Ready"}],
            "containerStatuses": [
                {"name": "server", "restartCount": 2, "image": "x"},
                {"name": "sidecar", "restartCount": 5},
            ],
        },
    }
    kept = trim_pod(pod)
    assert kept == {
        "metadata": {"name": "m-1", "namespace": "ns", "uid": "p1"},
        "spec": {
            "containers": [{"name": "server", "ports": pod["spec"]["containers"][1]["ports"]}]
        },
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.5",
            "containerStatuses": [{"name": "server", "restartCount": 2}],
        },
    }
    assert tfmodel_of(names.common_labels("m")) == "m" and tfmodel_of({}) is None


def test_a_view_tells_unwatched_kinds_from_missing_objects():
    view = View(
        children={("ConfigMap", "m-config"): {"metadata": {}}}, indexed=frozenset({"ConfigMap"})
    )
    assert view.child("ConfigMap", "m-config") == (True, {"metadata": {}})
    assert view.child("ConfigMap", "other") == (True, None)  # watched, none by that name
    assert view.child("ServiceMonitor", "m") == (False, None)  # not watched: read the API


def test_an_unwatched_child_is_read_again_only_after_the_recheck_interval():
    applied = AppliedChildren()
    key = ("ServiceMonitor", "ns", "m")
    manifest = {"kind": "ServiceMonitor", "spec": {"a": 1}}
    applied.remember(key, manifest, {"metadata": {"uid": "s1"}})
    assert not applied.recently_checked(key, manifest, 100.0)  # never read yet
    applied.checked(key, 100.0)
    assert applied.recently_checked(key, manifest, 399.0)
    assert not applied.recently_checked(key, manifest, 401.0)
    assert not applied.recently_checked(key, {**manifest, "spec": {"a": 2}}, 101.0)


def test_errors_that_can_pass_are_retried_the_others_reported():
    assert all(transient(ApiException(status=s)) for s in (0, 429, 500, 503, 504))
    assert not any(transient(ApiException(status=s)) for s in (400, 403, 404, 409, 422))


def test_routine_success_lines_are_debug():
    logger = logging.getLogger("test.routine")
    logger.setLevel(logging.INFO)
    routine = RoutineAtDebug()

    def record(message: str, level: int = logging.INFO) -> logging.LogRecord:
        return logger.makeRecord(logger.name, level, __file__, 1, message, (), None)

    line = record("Timer 'refresh' succeeded.")
    assert routine.filter(line) is False and line.levelno == logging.DEBUG
    assert routine.filter(record("Updating is processed: 1 succeeded; 0 failed.")) is False
    assert routine.filter(record("RolloutPromoted: lin: promoted 2 (was 1)")) is True
    assert routine.filter(record("Handler 'x' failed.", logging.ERROR)) is True
    logger.setLevel(logging.DEBUG)
    assert routine.filter(record("Timer 'refresh' succeeded.")) is True
