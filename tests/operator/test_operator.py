"""The operator against a real API server, running with the Helm chart's RBAC only.

No kubelet or controller-manager: the tests patch Deployment status where a controller would.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2
from tfmodel_operator.model_config import render_models_config
from tfmodel_operator.spec import parse_spec

from tests.operator.kube import KubeCluster
from tests.operator.operator_proc import (
    STATUS_INTERVAL,
    Objects,
    OperatorProcess,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def example(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / name).read_text())


def wait_children(objs: Objects, name: str, operator: OperatorProcess) -> dict[str, dict]:
    def found():
        kids = {
            "cm": objs.get("configmap", f"{name}-config"),
            "deploy": objs.get("deployment", name),
            "svc": objs.get("service", name),
            "headless": objs.get("service", f"{name}-headless"),
        }
        return kids if all(kids.values()) else None

    return wait_for(found, 30, f"children of {name}", operator.log)


def models_config(cm: dict) -> model_server_config_pb2.ModelServerConfig:
    return text_format.Parse(
        cm["data"]["models.config"], model_server_config_pb2.ModelServerConfig()
    )


def resource_versions(objs: Objects, name: str, kinds: list[tuple[str, str]]) -> dict[str, str]:
    out = {}
    for kind, child in kinds:
        obj = objs.get(kind, child)
        out[f"{kind}/{child}"] = obj["metadata"]["resourceVersion"] if obj else None
    return out


@pytest.mark.parametrize("name", ["multi-model.yaml", "single-model.yaml", "gpu-autoscaled.yaml"])
def test_each_example_yields_owned_children(objs: Objects, operator: OperatorProcess, name: str):
    doc = example(name)
    tfm = doc["metadata"]["name"]
    objs.apply(doc)
    kids = wait_children(objs, tfm, operator)
    uid = objs.get("tfmodel", tfm)["metadata"]["uid"]
    for kind, obj in kids.items():
        (ref,) = obj["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
            "TFModel",
            tfm,
            uid,
            True,
        ), kind
    live_spec = parse_spec(objs.get("tfmodel", tfm)["spec"])
    assert models_config(kids["cm"]) == text_format.Parse(
        render_models_config(live_spec), model_server_config_pb2.ModelServerConfig()
    )
    assert kids["headless"]["spec"]["clusterIP"] == "None"
    grpc = next(p for p in kids["svc"]["spec"]["ports"] if p["name"] == "grpc")
    assert (grpc["port"], grpc["appProtocol"]) == (8500, "grpc")
    hpa = (
        wait_for(lambda: objs.get("hpa", tfm), 10, "HPA")
        if "autoscaling" in doc["spec"]
        else objs.get("hpa", tfm)
    )
    pdb = (
        wait_for(lambda: objs.get("pdb", tfm), 10, "PDB")
        if "podDisruptionBudget" in doc["spec"]
        else objs.get("pdb", tfm)
    )
    assert (hpa is not None) == ("autoscaling" in doc["spec"])
    assert (pdb is not None) == ("podDisruptionBudget" in doc["spec"])
    if hpa:
        assert hpa["metadata"]["ownerReferences"][0]["uid"] == uid
        ours = next(
            m
            for m in objs.get("deployment", tfm, managed_fields=True)["metadata"]["managedFields"]
            if m["manager"] == "tfmodel-operator"
        )
        assert ours["operation"] == "Apply"
        assert "f:replicas" not in ours["fieldsV1"]["f:spec"]  # left to the HPA


def test_three_model_config_in_configmap(objs: Objects, operator: OperatorProcess):
    objs.apply(example("multi-model.yaml"))
    cm = wait_children(objs, "multi-model", operator)["cm"]
    config = models_config(cm)
    by_name = {m.name: m for m in config.model_config_list.config}
    assert list(by_name["resnet"].model_version_policy.specific.versions) == [1, 2]
    assert dict(by_name["resnet"].version_labels) == {"stable": 1, "canary": 2}
    assert by_name["bert"].model_version_policy.WhichOneof("policy_choice") == "all"
    assert by_name["ranker"].model_version_policy.latest.num_versions == 2


def test_label_flip_changes_only_the_configmap(objs: Objects, operator: OperatorProcess):
    objs.apply(example("multi-model.yaml"))
    kids = wait_children(objs, "multi-model", operator)
    others = [
        ("deployment", "multi-model"),
        ("service", "multi-model"),
        ("service", "multi-model-headless"),
        ("pdb", "multi-model"),
    ]
    before = resource_versions(objs, "multi-model", others)
    template = json.dumps(kids["deploy"]["spec"]["template"], sort_keys=True)

    objs.patch(
        "tfm",
        "multi-model",
        [{"op": "replace", "path": "/spec/models/0/versionLabels/stable", "value": 2}],
        "json",
    )
    wait_for(
        lambda: (
            dict(
                models_config(objs.get("configmap", "multi-model-config"))
                .model_config_list.config[0]
                .version_labels
            )
            == {"stable": 2, "canary": 2}
        ),
        20,
        "stable label moved in models.config",
        operator.log,
    )
    # Let several reconcile/timer rounds pass: nothing but the ConfigMap may be written.
    wait_for(
        lambda: objs.get("tfm", "multi-model")["status"].get("stableVersions") == "resnet:2",
        20,
        "status",
    )
    time.sleep(3 * STATUS_INTERVAL)
    assert resource_versions(objs, "multi-model", others) == before
    after = objs.get("deployment", "multi-model")
    assert json.dumps(after["spec"]["template"], sort_keys=True) == template
    assert after["metadata"]["generation"] == kids["deploy"]["metadata"]["generation"]


def test_image_change_rolls_the_deployment(objs: Objects, operator: OperatorProcess):
    objs.apply(example("single-model.yaml"))
    kids = wait_children(objs, "half-plus-two", operator)
    cm_version = kids["cm"]["metadata"]["resourceVersion"]
    objs.patch("tfm", "half-plus-two", {"spec": {"image": "tfmodel/tfmodel-server:0.2.0"}})
    dep = wait_for(
        lambda: (
            (d := objs.get("deployment", "half-plus-two"))["spec"]["template"]["spec"][
                "containers"
            ][0]["image"]
            == "tfmodel/tfmodel-server:0.2.0"
            and d
        ),
        20,
        "new image in the pod template",
        operator.log,
    )
    assert dep["metadata"]["generation"] == kids["deploy"]["metadata"]["generation"] + 1
    assert (
        objs.get("configmap", "half-plus-two-config")["metadata"]["resourceVersion"] == cm_version
    )


def _mark_rolled_out(objs: Objects, name: str, ready: int) -> None:
    dep = objs.get("deployment", name)
    replicas = dep["spec"]["replicas"]
    objs.patch(
        "deployment",
        name,
        {
            "status": {
                "observedGeneration": dep["metadata"]["generation"],
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": ready,
                "availableReplicas": ready,
            }
        },
        subresource="status",
    )


def test_status_conditions_and_printer_columns(
    kube: KubeCluster, objs: Objects, operator: OperatorProcess
):
    objs.apply(example("multi-model.yaml"))
    wait_children(objs, "multi-model", operator)
    wait_for(
        lambda: (objs.condition("multi-model", "Ready") or {}).get("reason") == "ReplicasNotReady",
        20,
        "not ready",
    )
    _mark_rolled_out(objs, "multi-model", ready=1)
    wait_for(
        lambda: objs.get("tfm", "multi-model")["status"].get("readySummary") == "1/2",
        20,
        "1/2 ready",
    )
    assert objs.condition("multi-model", "Ready")["status"] == "False"
    _mark_rolled_out(objs, "multi-model", ready=2)
    ready = wait_for(
        lambda: (c := objs.condition("multi-model", "Ready")) and c["status"] == "True" and c,
        20,
        "Ready",
        operator.log,
    )
    assert ready["reason"] == "AllReplicasReady"
    status = objs.get("tfm", "multi-model")["status"]
    assert status["observedGeneration"] == objs.get("tfm", "multi-model")["metadata"]["generation"]
    assert objs.condition("multi-model", "Progressing")["reason"] == "RolloutComplete"
    # No pod answers (there is no kubelet): versions stay empty, nothing fails.
    assert [m["reachablePods"] for m in status["models"]] == [0, 0, 0]
    table = kube.kubectl("get", "tfm", "multi-model", "-n", objs.namespace).stdout.splitlines()
    assert table[0].split() == [
        "NAME", "MODELS", "READY", "STABLE", "CANARY", "AVAILABLE", "ROLLOUT", "DEGRADED", "AGE"
    ]  # fmt: skip
    assert table[1].split()[:7] == [
        "multi-model",
        "resnet,bert,ranker",
        "2/2",
        "resnet:1",
        "resnet:2",
        "True",
        # ROLLOUT is blank: no model has a rollout
        "StorageNotFound",  # the example's PVC "models" does not exist here
    ]
    assert status["address"] == {
        "grpc": f"multi-model.{objs.namespace}.svc:8500",
        "rest": f"http://multi-model.{objs.namespace}.svc:8501",
        "grpcHeadless": f"dns:///multi-model-headless.{objs.namespace}.svc:8500",
    }


def test_missing_pvc_is_reported_then_cleared(
    kube: KubeCluster, objs: Objects, operator: OperatorProcess
):
    objs.apply(example("multi-model.yaml"))  # claims PVC "models", which does not exist
    degraded = wait_for(
        lambda: (c := objs.condition("multi-model", "Degraded")) and c["status"] == "True" and c,
        20,
        "Degraded",
    )
    assert degraded["reason"] == "StorageNotFound"
    assert "PersistentVolumeClaim models" in degraded["message"]
    events = wait_for(
        lambda: [
            e
            for e in json.loads(
                kube.kubectl("get", "events", "-n", objs.namespace, "-o", "json").stdout
            )["items"]
            if e["reason"] == "StorageNotFound" and e["involvedObject"]["name"] == "multi-model"
        ],
        10,
        "StorageNotFound event",
    )
    assert events[0]["type"] == "Warning"
    objs.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "models"},
            "spec": {
                "accessModes": ["ReadOnlyMany"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
    )
    wait_for(
        lambda: objs.condition("multi-model", "Degraded")["status"] == "False",
        20,
        "Degraded cleared",
    )


def test_kubectl_scale_reaches_the_deployment(
    kube: KubeCluster, objs: Objects, operator: OperatorProcess
):
    objs.apply(example("single-model.yaml"))
    wait_children(objs, "half-plus-two", operator)
    kube.kubectl("scale", "tfm", "half-plus-two", "--replicas=3", "-n", objs.namespace)
    wait_for(
        lambda: objs.get("deployment", "half-plus-two")["spec"]["replicas"] == 3,
        20,
        "3 replicas",
        operator.log,
    )
    _mark_rolled_out(objs, "half-plus-two", ready=3)
    wait_for(
        lambda: objs.get("tfm", "half-plus-two")["status"].get("replicas") == 3,
        20,
        "status.replicas",
    )
    scale = json.loads(
        kube.kubectl(
            "get",
            "--raw",
            f"/apis/serving.tfmodel.io/v1alpha1/namespaces/{objs.namespace}/tfmodels/half-plus-two/scale",
        ).stdout
    )
    assert scale["spec"]["replicas"] == 3 and scale["status"]["replicas"] == 3
    assert (
        scale["status"]["selector"]
        == "app.kubernetes.io/instance=half-plus-two,app.kubernetes.io/name=tfmodel-server"
    )


def test_optional_children_follow_the_spec(objs: Objects, operator: OperatorProcess):
    objs.apply(example("single-model.yaml"))
    wait_children(objs, "half-plus-two", operator)
    assert objs.get("hpa", "half-plus-two") is None
    objs.patch(
        "tfm",
        "half-plus-two",
        {"spec": {"autoscaling": {"maxReplicas": 4}, "podDisruptionBudget": {}}},
    )
    hpa = wait_for(lambda: objs.get("hpa", "half-plus-two"), 20, "HPA", operator.log)
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)
    assert (
        wait_for(lambda: objs.get("pdb", "half-plus-two"), 20, "PDB")["spec"]["maxUnavailable"] == 1
    )
    objs.patch("tfm", "half-plus-two", {"spec": {"autoscaling": None, "podDisruptionBudget": None}})
    wait_for(lambda: objs.get("hpa", "half-plus-two") is None, 20, "HPA deleted", operator.log)
    wait_for(lambda: objs.get("pdb", "half-plus-two") is None, 20, "PDB deleted", operator.log)


def test_deleted_child_is_recreated(objs: Objects, operator: OperatorProcess):
    objs.apply(example("single-model.yaml"))
    old = wait_children(objs, "half-plus-two", operator)["cm"]["metadata"]["uid"]
    objs.kube.kubectl("delete", "configmap", "half-plus-two-config", "-n", objs.namespace)
    new = wait_for(
        lambda: objs.get("configmap", "half-plus-two-config"),
        20,
        "ConfigMap recreated",
        operator.log,
    )
    assert new["metadata"]["uid"] != old


def test_restarting_the_operator_writes_nothing(objs: Objects, operator: OperatorProcess):
    objs.apply(example("gpu-autoscaled.yaml"))
    wait_children(objs, "detector", operator)
    wait_for(lambda: objs.get("pdb", "detector") and objs.get("hpa", "detector"), 20, "HPA and PDB")
    wait_for(lambda: objs.condition("detector", "Degraded"), 20, "status written")
    kinds = [
        ("tfmodel", "detector"),
        ("configmap", "detector-config"),
        ("deployment", "detector"),
        ("service", "detector"),
        ("service", "detector-headless"),
        ("hpa", "detector"),
        ("pdb", "detector"),
    ]
    time.sleep(2 * STATUS_INTERVAL)  # settle: the first rounds may still be writing status
    before = resource_versions(objs, "detector", kinds)
    operator.stop()
    operator.start()
    time.sleep(4 * STATUS_INTERVAL)  # resume handler + several timer rounds
    assert resource_versions(objs, "detector", kinds) == before, operator.log()[-4000:]
