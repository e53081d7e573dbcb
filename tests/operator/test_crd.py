"""The TFModel CRD in a real API server: installs, defaults, CEL validation messages."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from tests.operator.kube import KubeCluster
from tests.operator.operator_proc import CRD_NAME, install_chart, wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def crd(kube: KubeCluster) -> None:
    install_chart(kube)


def minimal(name: str = "m") -> dict:
    return {
        "apiVersion": "serving.tfmodel.io/v1alpha1",
        "kind": "TFModel",
        "metadata": {"name": name},
        "spec": {
            "models": [{"name": "lin", "basePath": "/models/lin"}],
            "storage": {"persistentVolumeClaim": {"claimName": "models"}},
        },
    }


def test_crd_served_with_short_name_and_subresources(kube: KubeCluster):
    crd = json.loads(kube.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    version = crd["spec"]["versions"][0]
    assert crd["spec"]["names"]["shortNames"] == ["tfm"]
    assert set(version["subresources"]) == {"status", "scale"}
    resources = kube.kubectl("api-resources", "--api-group=serving.tfmodel.io", "-o", "wide").stdout
    assert "tfm" in resources and "TFModel" in resources and "true" in resources  # namespaced


def test_crd_in_repo_is_the_installed_one(kube: KubeCluster):
    """Server-side dry-run of crds/ against the installed CRD changes nothing but metadata."""
    done = kube.kubectl(
        "apply", "--server-side", "--dry-run=server", "--force-conflicts",
        "-f", str(ROOT / "crds" / "serving.tfmodel.io_tfmodels.yaml"), "-o", "json",
    )  # fmt: skip
    live = json.loads(kube.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    assert json.loads(done.stdout)["spec"] == live["spec"]


def test_defaults_are_filled_by_the_api_server(kube: KubeCluster, namespace: str):
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(minimal()))
    spec = json.loads(kube.kubectl("get", "tfm", "m", "-n", namespace, "-o", "json").stdout)["spec"]
    assert spec["models"][0]["versionPolicy"] == {"latest": {"numVersions": 1}}
    assert spec["replicas"] == 1
    assert spec["image"] == "tfmodel/tfmodel-server:0.1.0"
    assert spec["pollIntervalSeconds"] == 10
    assert spec["service"] == {"type": "ClusterIP", "grpcPort": 8500, "restPort": 8501}
    assert spec["gpus"] == 0 and spec["gpuResourceName"] == "nvidia.com/gpu"


def _mutations():
    def labels_outside_specific(s):
        s["models"][0]["versionPolicy"] = {"specific": {"versions": [1, 2]}}
        s["models"][0]["versionLabels"] = {"stable": 1, "canary": 3}

    def two_policies(s):
        s["models"][0]["versionPolicy"] = {"latest": {"numVersions": 1}, "all": {}}

    def bad_label_name(s):
        s["models"][0]["versionLabels"] = {"stable-v2": 1}

    def relative_base_path(s):
        s["models"][0]["basePath"] = "lin"

    def escaping_base_path(s):
        s["models"][0]["basePath"] = "/models/../etc"

    def two_storages(s):
        s["storage"]["nfs"] = {"server": "nfs", "path": "/x"}

    def min_over_max(s):
        s["autoscaling"] = {"minReplicas": 5, "maxReplicas": 2}

    def batch_sizes_not_ending_at_max(s):
        s["batching"] = {"maxBatchSize": 64, "allowedBatchSizes": [8, 16]}

    def batch_sizes_unsorted(s):
        s["batching"] = {"maxBatchSize": 16, "allowedBatchSizes": [8, 4, 16]}

    def pdb_both(s):
        s["podDisruptionBudget"] = {"minAvailable": 1, "maxUnavailable": 1}

    def duplicate_models(s):
        s["models"].append({"name": "lin", "basePath": "/models/other"})

    def bad_model_name(s):
        s["models"][0]["name"] = "-bad name"

    def same_ports(s):
        s["service"] = {"grpcPort": 9000, "restPort": 9000}

    def no_models(s):
        s["models"] = []

    def bad_gpu_resource(s):
        s["gpuResourceName"] = "not a resource!"

    def split_without_canary_label(s):
        s["models"][0]["versionLabels"] = {"stable": 1}
        s["models"][0]["canaryTrafficPercent"] = 10

    def split_over_100(s):
        s["models"][0]["versionLabels"] = {"stable": 1, "canary": 2}
        s["models"][0]["canaryTrafficPercent"] = 101

    def rollout_with_canary_label(s):
        s["models"][0]["versionLabels"] = {"stable": 1, "canary": 2}
        s["models"][0]["rollout"] = {"steps": [{"trafficPercent": 10}]}

    def rollout_with_latest_one(s):
        s["models"][0]["versionLabels"] = {"stable": 1}
        s["models"][0]["rollout"] = {"steps": [{"trafficPercent": 10}]}

    def rollout_without_steps(s):
        s["models"][0]["versionLabels"] = {"stable": 1}
        s["models"][0]["versionPolicy"] = {"all": {}}
        s["models"][0]["rollout"] = {"steps": []}

    def cpu_lots(s):
        s["resources"] = {"requests": {"cpu": "lots"}}

    def cpu_with_unit_word(s):
        s["resources"] = {"limits": {"cpu": "2 cores"}}

    def toleration_exists_with_value(s):
        s["tolerations"] = [{"key": "gpu", "operator": "Exists", "value": "yes"}]

    def toleration_without_key(s):
        s["tolerations"] = [{"operator": "Equal", "value": "x"}]

    def toleration_seconds_without_no_execute(s):
        s["tolerations"] = [{"key": "k", "operator": "Exists", "tolerationSeconds": 5}]

    return [
        (
            labels_outside_specific,
            "model lin: every version label must name one of the versions listed in versionPolicy.specific.versions",
        ),
        (two_policies, "versionPolicy must set exactly one of latest, all or specific"),
        (
            bad_label_name,
            "version label names may only contain letters, digits and underscores",
        ),
        (relative_base_path, "basePath lin must be an absolute path under /models/"),
        (escaping_base_path, "basePath /models/../etc must be an absolute path under /models/"),
        (
            two_storages,
            "storage must set exactly one of persistentVolumeClaim, nfs, csi or hostPath",
        ),
        (min_over_max, "autoscaling.minReplicas must not be greater than autoscaling.maxReplicas"),
        (
            batch_sizes_not_ending_at_max,
            "the last of batching.allowedBatchSizes must equal batching.maxBatchSize",
        ),
        (batch_sizes_unsorted, "batching.allowedBatchSizes must be increasing"),
        (pdb_both, "podDisruptionBudget takes minAvailable or maxUnavailable, not both"),
        (duplicate_models, 'Duplicate value: map[string]interface {}{"name":"lin"}'),
        (bad_model_name, "model name -bad name must start with a letter or digit"),
        (same_ports, "service.grpcPort and service.restPort must differ"),
        (
            no_models,
            "spec.models: Invalid value: 0: spec.models in body should have at least 1 items",
        ),
        (bad_gpu_resource, "gpuResourceName must be an extended resource name"),
        (
            split_without_canary_label,
            "model lin: canaryTrafficPercent needs both a stable and a canary version label",
        ),
        (split_over_100, "should be less than or equal to 100"),
        (
            rollout_with_canary_label,
            "model lin: a rollout needs a stable version label and sets the canary label",
        ),
        (rollout_with_latest_one, "versionPolicy latest needs numVersions >= 2"),
        (rollout_without_steps, "should have at least 1 items"),
        (cpu_lots, "resources.requests: lots is not a quantity"),
        (cpu_with_unit_word, "resources.limits: 2 cores is not a quantity"),
        (toleration_exists_with_value, "a toleration with operator Exists must not set a value"),
        (toleration_without_key, "a toleration without a key must have operator Exists"),
        (toleration_seconds_without_no_execute, "tolerationSeconds needs effect NoExecute"),
    ]


@pytest.mark.parametrize(
    "mutate,message", _mutations(), ids=lambda v: getattr(v, "__name__", "msg")
)
def test_invalid_tfmodels_are_rejected_with_a_clear_message(kube: KubeCluster, mutate, message):
    doc = copy.deepcopy(minimal("bad"))
    mutate(doc["spec"])
    done = kube.kubectl(
        "create", "--dry-run=server", "-n", "default", "-f", "-", input=json.dumps(doc), check=False
    )
    assert done.returncode != 0, f"accepted: {doc['spec']}"
    assert message in done.stderr, done.stderr


@pytest.mark.parametrize(
    "name,message",
    [
        ("my.model", "the TFModel name must be a DNS-1035 label"),
        ("1model", "the TFModel name must be a DNS-1035 label"),
        ("n" * 55, "the TFModel name must be at most 54 characters"),
        ("foo-headless", "the TFModel name must not end in -headless"),
    ],
)
def test_names_that_cannot_name_every_child_are_rejected(kube: KubeCluster, name, message):
    done = kube.kubectl(
        "create", "--dry-run=server", "-n", "default", "-f", "-",
        input=json.dumps(minimal(name)), check=False,
    )  # fmt: skip
    assert done.returncode != 0, f"accepted: {name}"
    assert message in done.stderr, done.stderr


def test_good_quantities_and_the_longest_name_are_accepted(kube: KubeCluster):
    doc = minimal("n" * 54)
    doc["spec"]["resources"] = {
        "requests": {"cpu": "500m", "memory": "2Gi", "nvidia.com/gpu": 1},
        "limits": {"cpu": 2, "memory": "4096Mi"},
    }
    doc["spec"]["tolerations"] = [
        {"operator": "Exists"},
        {
            "key": "k",
            "operator": "Equal",
            "value": "v",
            "effect": "NoExecute",
            "tolerationSeconds": 30,
        },
    ]
    kube.kubectl("create", "--dry-run=server", "-n", "default", "-f", "-", input=json.dumps(doc))


def test_name_rules_apply_on_create_only(kube: KubeCluster, namespace: str):
    """Names never change: a TFModel created under the earlier CRD (without the name rules)
    stays editable under this one (the rules use optionalOldSelf and pass on updates)."""
    crd_file = ROOT / "crds" / "serving.tfmodel.io_tfmodels.yaml"
    earlier = yaml.safe_load(crd_file.read_text())
    del earlier["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["x-kubernetes-validations"]

    def install(doc: dict) -> None:
        kube.kubectl(
            "apply", "--server-side", "--force-conflicts", "--field-manager=test-crd",
            "-f", "-", input=json.dumps(doc),
        )  # fmt: skip

    def create_legacy() -> bool:
        done = kube.kubectl(
            "create", "-n", namespace, "-f", "-", input=json.dumps(minimal("old-headless")),
            check=False,
        )  # fmt: skip
        return done.returncode == 0

    try:
        install(earlier)
        wait_for(create_legacy, 30, "the earlier CRD in effect")
    finally:
        install(yaml.safe_load(crd_file.read_text()))
    wait_for(
        lambda: kube.kubectl(
            "create", "--dry-run=server", "-n", namespace, "-f", "-",
            input=json.dumps(minimal("new-headless")), check=False,
        ).returncode != 0,
        30,
        "this CRD in effect",
    )  # fmt: skip
    kube.kubectl(
        "patch", "tfm", "old-headless", "-n", namespace, "--type=merge", "-p",
        '{"spec":{"replicas":2}}',
    )  # fmt: skip
    kube.kubectl("delete", "tfm", "old-headless", "-n", namespace, "--wait=false")


@pytest.mark.parametrize("example", sorted(p.name for p in (ROOT / "examples").glob("*.yaml")))
def test_examples_are_valid(kube: KubeCluster, example: str):
    for doc in yaml.safe_load_all((ROOT / "examples" / example).read_text()):
        kube.kubectl(
            "create", "--dry-run=server", "-n", "default", "-f", "-", input=json.dumps(doc)
        )
