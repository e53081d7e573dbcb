"""The CRD's shadow-traffic fields in a real API server: accepted forms and clear refusals."""

from __future__ import annotations

import json

import pytest

from tests.operator.kube import KubeCluster
from tests.operator.operator_proc import install_chart


@pytest.fixture(scope="module", autouse=True)
def crd(kube: KubeCluster) -> None:
    install_chart(kube)


def create(kube: KubeCluster, model: dict):
    doc = {
        "apiVersion": "serving.tfmodel.io/v1alpha1",
        "kind": "TFModel",
        "metadata": {"name": "shadow"},
        "spec": {
            "models": [{"name": "lin", "basePath": "/models/lin", **model}],
            "storage": {"hostPath": {"path": "/srv"}},
        },
    }
    return kube.kubectl(
        "create", "--dry-run=server", "-n", "default", "-f", "-",
        input=json.dumps(doc), check=False,
    )  # fmt: skip


ROLLOUT = {"versionPolicy": {"all": {}}, "versionLabels": {"stable": 1}}
BOTH_LABELS = {"versionPolicy": {"all": {}}, "versionLabels": {"stable": 1, "canary": 2}}


@pytest.mark.parametrize(
    "model",
    [
        {
            **ROLLOUT,
            "rollout": {
                "steps": [
                    {"shadowPercent": 100, "pauseSeconds": 30},
                    {"trafficPercent": 50},
                ],
                "analysis": {"shadow": {"minTop1Agreement": 0.99, "maxAbsDiff": 0.001}},
            },
        },
        {**BOTH_LABELS, "shadowTrafficPercent": 10},
    ],
)
def test_shadow_forms_are_accepted(kube: KubeCluster, model: dict):
    done = create(kube, model)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "model,message",
    [
        (
            {**ROLLOUT, "rollout": {"steps": [{"shadowPercent": 10, "trafficPercent": 10}]}},
            "a rollout step sets exactly one of trafficPercent (real traffic) or shadowPercent",
        ),
        (
            {**ROLLOUT, "rollout": {"steps": [{"pauseSeconds": 10}]}},
            "a rollout step sets exactly one of trafficPercent (real traffic) or shadowPercent",
        ),
        (
            {**ROLLOUT, "rollout": {"steps": [{"shadowPercent": 101}]}},
            "should be less than or equal to 100",
        ),
        (
            {
                **ROLLOUT,
                "rollout": {
                    "steps": [{"shadowPercent": 10}],
                    "analysis": {"shadow": {"minTop1Agreement": 2}},
                },
            },
            "should be less than or equal to 1",
        ),
        (
            {**ROLLOUT, "shadowTrafficPercent": 10},
            "model lin: shadowTrafficPercent needs both a stable and a canary version label",
        ),
    ],
)
def test_bad_shadow_fields_are_refused(kube: KubeCluster, model: dict, message: str):
    done = create(kube, model)
    assert done.returncode != 0, f"accepted: {model}"
    assert message in done.stderr, done.stderr
