"""The CRD's object-storage fields in a real API server: accepted forms and clear refusals."""

from __future__ import annotations

import copy
import json

import pytest

from tests.operator.kube import KubeCluster
from tests.operator.operator_proc import install_chart

S3 = {"bucket": "models", "prefix": "m", "secretRef": {"name": "s3-credentials"}}


@pytest.fixture(scope="module", autouse=True)
def crd(kube: KubeCluster) -> None:
    install_chart(kube)


def doc(spec: dict) -> dict:
    return {
        "apiVersion": "serving.tfmodel.io/v1alpha1",
        "kind": "TFModel",
        "metadata": {"name": "s3"},
        "spec": spec,
    }


def create(kube: KubeCluster, spec: dict):
    return kube.kubectl(
        "create", "--dry-run=server", "-n", "default", "-f", "-",
        input=json.dumps(doc(spec)), check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    "spec",
    [
        {"models": [{"name": "m", "storage": {"s3": S3}}], "modelCache": {"sizeLimit": "5Gi"}},
        {
            "models": [{"name": "m", "basePath": "s3://models/m"}],
            "objectStore": {"endpoint": "http://s3:8333", "addressingStyle": "path"},
        },
        {
            "models": [
                {"name": "a", "basePath": "/models/a"},
                {"name": "b", "storage": {"s3": S3}},
            ],
            "storage": {"hostPath": {"path": "/srv"}},
        },
    ],
)
def test_object_storage_forms_are_accepted(kube: KubeCluster, spec: dict):
    done = create(kube, spec)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "spec,message",
    [
        (
            {"models": [{"name": "m", "basePath": "s3://b/m", "storage": {"s3": S3}}]},
            "model m: set exactly one of basePath or storage.s3",
        ),
        (
            {"models": [{"name": "m", "basePath": "/models/m"}]},
            "spec.storage is required when a model's basePath is a directory under /models",
        ),
        (
            {"models": [{"name": "m", "basePath": "gs://b/m"}]},
            "must be an absolute path under /models/ (spec.storage is mounted there) or an s3:// URL",
        ),
        (
            {"models": [{"name": "m", "storage": {"s3": {"prefix": "m"}}}]},
            "bucket: Required value",
        ),
        (
            {"models": [{"name": "m", "storage": {"s3": S3}}], "modelCache": {"sizeLimit": "big"}},
            "modelCache.sizeLimit: big is not a quantity",
        ),
    ],
)
def test_object_storage_mistakes_are_refused_clearly(kube: KubeCluster, spec: dict, message: str):
    done = create(kube, copy.deepcopy(spec))
    assert done.returncode != 0, f"accepted: {spec}"
    assert message in done.stderr, done.stderr
