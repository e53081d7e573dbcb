"""spec.security and the pod fields in the real API server: accepted as written, and the
CRD's own checks (before the operator sees the object) with their messages."""

from __future__ import annotations

import copy
import json

import pytest

from tests.operator.kube import KubeCluster
from tests.operator.operator_proc import install_chart
from tests.operator.test_crd import minimal
from tests.operator.test_security_spec import SECURE


@pytest.fixture(scope="module", autouse=True)
def crd(kube: KubeCluster) -> None:
    install_chart(kube)


def test_a_secure_tfmodel_with_every_pod_field_is_stored_as_written(
    kube: KubeCluster, namespace: str
):
    doc = minimal("secure")
    doc["spec"] = copy.deepcopy(SECURE)
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))
    spec = json.loads(kube.kubectl("get", "tfm", "secure", "-n", namespace, "-o", "json").stdout)[
        "spec"
    ]
    # Free-form Pod fields are kept whole (x-kubernetes-preserve-unknown-fields).
    for key in ("affinity", "topologySpreadConstraints", "env", "podLabels", "podAnnotations"):
        assert spec[key] == SECURE[key], key
    assert spec["security"] == SECURE["security"]
    assert spec["extraArgs"] == SECURE["extraArgs"]


def test_security_defaults(kube: KubeCluster, namespace: str):
    doc = minimal("defaults")
    doc["spec"]["security"] = {"tls": {"secretName": "t"}, "tokenSecret": {"name": "k"}}
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))
    got = json.loads(kube.kubectl("get", "tfm", "defaults", "-n", namespace, "-o", "json").stdout)
    assert got["spec"]["security"] == {
        "tls": {"secretName": "t", "clientVerify": False},
        "tokenSecret": {"name": "k", "key": "tokens"},
        "cors": False,
    }


def _mutations():
    def mtls_without_probe_client(s):
        s["security"] = {"tls": {"secretName": "t", "clientVerify": True}}

    def tls_without_secret(s):
        s["security"] = {"tls": {"clientVerify": False}}

    def selector_label(s):
        s["podLabels"] = {"app.kubernetes.io/instance": "other"}

    def operator_label(s):
        s["podLabels"] = {"serving.tfmodel.io/tfmodel": "other"}

    def prometheus_annotation(s):
        s["podAnnotations"] = {"prometheus.io/port": "9999"}

    def not_a_flag(s):
        s["extraArgs"] = ["rest_api_timeout_in_ms=5"]

    def env_twice(s):
        s["env"] = [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]

    def spread_without_key(s):
        s["topologySpreadConstraints"] = [{"maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"}]

    return [
        (mtls_without_probe_client, "security.tls.clientVerify needs probeClientSecretName"),
        (tls_without_secret, "spec.security.tls.secretName: Required value"),
        (selector_label, "podLabels may not set app.kubernetes.io/name"),
        (operator_label, "podLabels may not set"),
        (prometheus_annotation, "podAnnotations may not set prometheus.io/*"),
        (not_a_flag, "extraArgs: rest_api_timeout_in_ms=5 is not --flag or --flag=value"),
        (env_twice, 'Duplicate value: map[string]interface {}{"name":"A"}'),
        (spread_without_key, "topologyKey: Required value"),
    ]


@pytest.mark.parametrize(
    "mutate,message", _mutations(), ids=lambda v: getattr(v, "__name__", "msg")
)
def test_invalid_security_and_pod_fields_are_rejected(kube: KubeCluster, mutate, message):
    doc = copy.deepcopy(minimal("bad"))
    mutate(doc["spec"])
    done = kube.kubectl(
        "create", "--dry-run=server", "-n", "default", "-f", "-", input=json.dumps(doc), check=False
    )
    assert done.returncode != 0, f"accepted: {doc['spec']}"
    assert message in done.stderr, done.stderr
