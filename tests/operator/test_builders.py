"""Pure builder tests: TFModel spec -> manifests, models.config, batching.config, status."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2
from tfmodel_operator import names, ownership
from tfmodel_operator.children import build_children
from tfmodel_operator.configmap import build_configmap
from tfmodel_operator.deployment import build_deployment, server_args
from tfmodel_operator.model_config import render_batching_config, render_models_config
from tfmodel_operator.scaling import HANDOVER_MANAGER, manages_field, replicas_handover
from tfmodel_operator.spec import SpecError, TFModelSpec, parse_spec
from tfmodel_operator.status import Observation, build_status, merge_conditions, models_status
from tfmodel_operator.textproto import quote, render
from tfmodel_server.inference.batching_params import parse_batching_parameters
from tfmodel_server.model_servers.config_file import (
    parse_model_server_config,
    validate_model_server_config,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CRD = ROOT / "crds" / "serving.tfmodel.io_tfmodels.yaml"


def example(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / name).read_text())


def spec_of(doc: dict) -> TFModelSpec:
    return parse_spec(doc["spec"])


def children_by_kind(tfmodel: str, raw_spec: dict) -> dict[str, dict]:
    out = {}
    for manifest in build_children(tfmodel, "ns", parse_spec(raw_spec)).present:
        out[f"{manifest['kind']}/{manifest['metadata']['name']}"] = manifest
    return out


# --- models.config -------------------------------------------------------------------------


def test_multi_model_example_is_the_official_model_config_list():
    text = render_models_config(spec_of(example("multi-model.yaml")))
    parsed = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())

    expected = model_server_config_pb2.ModelServerConfig()
    resnet = expected.model_config_list.config.add(
        name="resnet", base_path="/models/resnet", model_platform="tensorflow"
    )
    resnet.model_version_policy.specific.versions.extend([1, 2])
    resnet.version_labels["stable"] = 1
    resnet.version_labels["canary"] = 2
    bert = expected.model_config_list.config.add(
        name="bert", base_path="/models/bert", model_platform="tensorflow"
    )
    bert.model_version_policy.all.SetInParent()
    ranker = expected.model_config_list.config.add(
        name="ranker", base_path="/models/ranker", model_platform="tensorflow"
    )
    ranker.model_version_policy.latest.num_versions = 2
    assert parsed == expected
    # The real server's own parser and checks accept it too.
    validate_model_server_config(parse_model_server_config(text, "models.config"), "models.config")


def test_default_policy_is_latest_one_and_rendering_is_deterministic():
    raw = {
        "models": [{"name": "m", "basePath": "/models/m"}],
        "storage": {"hostPath": {"path": "/d"}},
    }
    first = render_models_config(parse_spec(raw))
    parsed = text_format.Parse(first, model_server_config_pb2.ModelServerConfig())
    (model,) = parsed.model_config_list.config
    assert model.model_version_policy.WhichOneof("policy_choice") == "latest"
    assert model.model_version_policy.latest.num_versions == 1
    # Label order in the input must not change the bytes (no spurious ConfigMap writes).
    a = {**raw, "models": [{**raw["models"][0], "versionLabels": {"b": 2, "a": 1}}]}
    b = {**raw, "models": [{**raw["models"][0], "versionLabels": {"a": 1, "b": 2}}]}
    assert render_models_config(parse_spec(a)) == render_models_config(parse_spec(b))


@pytest.mark.parametrize(
    "value",
    ['quote"d', "back\\slash", "new\nline\ttab\r", "ünïcødé ✓", "single'q", "\x00\x01\x7f", ""],
)
def test_string_escaping_round_trips_through_the_official_parser(value: str):
    text = render(
        [("model_config_list", [("config", [("name", value), ("base_path", "/models/" + value)])])]
    )
    parsed = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    assert parsed.model_config_list.config[0].name == value
    assert parsed.model_config_list.config[0].base_path == "/models/" + value
    assert quote(value).startswith('"') and "\n" not in quote(value)


def test_render_rejects_unknown_scalar_types():
    with pytest.raises(TypeError, match="cannot write"):
        render([("name", object())])  # type: ignore[list-item]


# --- batching.config -----------------------------------------------------------------------


def test_batching_config_is_accepted_by_the_server_parser():
    spec = spec_of(example("gpu-autoscaled.yaml"))
    text = render_batching_config(spec.batching)
    assert "max_batch_size {\n  value: 32\n}" in text
    params = parse_batching_parameters(text, "batching.config")
    assert params.max_batch_size == 32
    assert params.batch_timeout_micros == 2000
    assert params.max_enqueued_batches == 100
    assert params.num_batch_threads == 4
    assert list(params.allowed_batch_sizes) == [8, 16, 32]
    assert params.pad_variable_length_inputs is True


def test_batching_turns_on_flags_and_configmap_key():
    spec = spec_of(example("gpu-autoscaled.yaml"))
    args = server_args(spec)
    assert "--enable_batching" in args
    assert "--batching_parameters_file=/etc/tfmodel/batching.config" in args
    assert set(build_configmap("d", "ns", spec)["data"]) == {
        "models.config",
        "batching.config",
        "traffic-split.json",
        "monitoring.config",
    }
    plain = spec_of(example("multi-model.yaml"))
    assert not any("batching" in a for a in server_args(plain))
    assert set(build_configmap("m", "ns", plain)["data"]) == {
        "models.config",
        "traffic-split.json",
        "monitoring.config",
    }


# --- the Deployment ------------------------------------------------------------------------


def test_deployment_mounts_config_directory_and_passes_flags():
    doc = example("multi-model.yaml")
    dep = build_deployment("multi-model", "ns", spec_of(doc))
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == [
        "--port=8500",
        "--rest_api_port=8501",
        "--model_config_file=/etc/tfmodel/models.config",
        "--model_config_file_poll_wait_seconds=10",
        "--file_system_poll_wait_seconds=1",
        "--traffic_split_file=/etc/tfmodel/traffic-split.json",
        "--monitoring_config_file=/etc/tfmodel/monitoring.config",
        "--listen_before_models_load",
        "--shutdown_readiness_delay_seconds=10",
        "--drain_timeout_seconds=30",
        "--grpc_channel_arguments=grpc.max_connection_age_ms=3000,grpc.max_connection_age_grace_ms=30000",
        # Pods start with labels in models.config (see the CRD field's description).
        "--allow_version_labels_for_unavailable_models",
    ]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["config"] == {"name": "config", "mountPath": "/etc/tfmodel", "readOnly": True}
    assert all("subPath" not in m for m in container["volumeMounts"])  # subPath never updates
    assert mounts["models"]["mountPath"] == "/models" and mounts["models"]["readOnly"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "multi-model-config"
    assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "grpc": 8500,
        "http": 8501,
    }
    assert dep["spec"]["replicas"] == 2
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"memory": "4Gi"},
    }


def test_grace_period_covers_readiness_delay_drain_and_exit_margin():
    pod = build_deployment("m", "ns", spec_of(example("single-model.yaml")))["spec"]["template"]
    args = pod["spec"]["containers"][0]["args"]
    flags = dict(a.removeprefix("--").split("=", 1) for a in args if "=" in a)
    delay = float(flags["shutdown_readiness_delay_seconds"])
    drain = float(flags["drain_timeout_seconds"])
    # The server exits at most 2 s after the drain timeout (its exit deadline).
    assert delay > 0
    assert pod["spec"]["terminationGracePeriodSeconds"] >= delay + drain + 2 + 1


def test_pod_is_hardened():
    dep = build_deployment("m", "ns", spec_of(example("single-model.yaml")))
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    sc = pod["containers"][0]["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    # A read-only root needs a writable /tmp.
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]


def test_gpus_become_limits_on_a_configurable_resource():
    raw = example("gpu-autoscaled.yaml")["spec"]
    container = build_deployment("d", "ns", parse_spec(raw))["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["resources"] == {"limits": {"nvidia.com/gpu": 1}}
    raw2 = {**raw, "gpus": 2, "gpuResourceName": "amd.com/gpu"}
    container2 = build_deployment("d", "ns", parse_spec(raw2))["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container2["resources"] == {"limits": {"amd.com/gpu": 2}}
    pod = build_deployment("d", "ns", parse_spec(raw))["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"accelerator": "nvidia"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_autoscaling_leaves_replicas_to_the_hpa():
    kids = children_by_kind("detector", example("gpu-autoscaled.yaml")["spec"])
    assert "replicas" not in kids["Deployment/detector"]["spec"]
    hpa = kids["HorizontalPodAutoscaler/detector"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "detector",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 8)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    assert kids["PodDisruptionBudget/detector"]["spec"]["minAvailable"] == 1


def test_optional_children_absent_are_listed_for_deletion():
    built = build_children("m", "ns", spec_of(example("single-model.yaml")))
    assert {m["kind"] for m in built.present} == {"ConfigMap", "Deployment", "Service"}
    assert [(k.kind, n) for k, n in built.absent] == [
        ("HorizontalPodAutoscaler", "m"),
        ("PodDisruptionBudget", "m"),
    ]
    # ConfigMap first: pods must never start without their config.
    assert built.present[0]["kind"] == "ConfigMap"


def test_pdb_defaults_to_max_unavailable_one():
    raw = {**example("single-model.yaml")["spec"], "podDisruptionBudget": {}}
    pdb = children_by_kind("m", raw)["PodDisruptionBudget/m"]
    assert pdb["spec"] == {
        "selector": {"matchLabels": names.selector_labels("m")},
        "maxUnavailable": 1,
    }


def test_services_grpc_with_app_protocol_and_headless():
    raw = example("gpu-autoscaled.yaml")["spec"]
    kids = children_by_kind("detector", raw)
    svc = kids["Service/detector"]
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["metadata"]["annotations"] == {"networking.example.com/internal": "true"}
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert ports["grpc"] == {
        "name": "grpc",
        "port": 8500,
        "targetPort": "grpc",
        "protocol": "TCP",
        "appProtocol": "grpc",
    }
    assert ports["http"]["port"] == 8501
    headless = kids["Service/detector-headless"]
    assert headless["spec"]["clusterIP"] == "None"
    assert (
        headless["spec"]["selector"] == svc["spec"]["selector"] == names.selector_labels("detector")
    )


# --- what changes when -----------------------------------------------------------------------


def _model_edits() -> list[tuple[str, callable]]:
    def move_stable(s):
        s["models"][0]["versionLabels"]["stable"] = 2

    def add_label(s):
        s["models"][1]["versionLabels"] = {"beta": 7}

    def change_policy(s):
        s["models"][2]["versionPolicy"] = {"latest": {"numVersions": 3}}

    def add_model(s):
        s["models"].append({"name": "extra", "basePath": "/models/extra"})

    def poll_unchanged_base_path(s):
        s["models"][1]["basePath"] = "/models/bert-v2"

    return [
        ("move stable", move_stable),
        ("add label", add_label),
        ("change policy", change_policy),
        ("add model", add_model),
        ("change basePath", poll_unchanged_base_path),
    ]


@pytest.mark.parametrize("edit", _model_edits(), ids=lambda e: e[0])
def test_model_edits_change_only_the_configmap(edit):
    before = example("multi-model.yaml")["spec"]
    after = copy.deepcopy(before)
    edit[1](after)
    old, new = children_by_kind("multi-model", before), children_by_kind("multi-model", after)
    assert old.keys() == new.keys()
    changed = [key for key in old if old[key] != new[key]]
    assert changed == ["ConfigMap/multi-model-config"]
    # Byte-identical pod template, not merely equal dicts.
    dump = lambda m: json.dumps(m["Deployment/multi-model"]["spec"]["template"], sort_keys=True)  # noqa: E731
    assert dump(old) == dump(new)


@pytest.mark.parametrize(
    "field,value",
    [
        ("image", "tfmodel/tfmodel-server:0.2.0"),
        ("resources", {"requests": {"cpu": "2"}}),
        ("gpus", 1),
        ("pollIntervalSeconds", 30),
        ("batching", {"maxBatchSize": 8}),
        ("allowVersionLabelsForUnavailableModels", False),
    ],
)
def test_pod_level_edits_roll_the_deployment(field, value):
    before = example("multi-model.yaml")["spec"]
    after = {**copy.deepcopy(before), field: value}
    old, new = children_by_kind("multi-model", before), children_by_kind("multi-model", after)
    assert (
        old["Deployment/multi-model"]["spec"]["template"]
        != new["Deployment/multi-model"]["spec"]["template"]
    )


def test_batching_parameter_change_rolls_pods_via_hash_annotation():
    raw = example("gpu-autoscaled.yaml")["spec"]
    raw2 = copy.deepcopy(raw)
    raw2["batching"]["batchTimeoutMicros"] = 5000
    t1 = build_deployment("d", "ns", parse_spec(raw))["spec"]["template"]
    t2 = build_deployment("d", "ns", parse_spec(raw2))["spec"]["template"]
    assert t1["spec"] == t2["spec"]
    key = names.BATCHING_HASH_ANNOTATION
    assert t1["metadata"]["annotations"][key] != t2["metadata"]["annotations"][key]


# --- spec errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,message",
    [
        ({"models": [], "storage": {"hostPath": {"path": "/d"}}}, "at least one model"),
        (
            {
                "models": [
                    {
                        "name": "m",
                        "basePath": "/models/m",
                        "versionPolicy": {"specific": {"versions": [1]}},
                        "versionLabels": {"canary": 2},
                    }
                ],
                "storage": {"hostPath": {"path": "/d"}},
            },
            "label canary names version 2",
        ),
        (
            {
                "models": [
                    {
                        "name": "m",
                        "basePath": "/models/m",
                        "versionPolicy": {"latest": {}, "all": {}},
                    }
                ],
                "storage": {"hostPath": {"path": "/d"}},
            },
            "exactly one of latest, all or specific",
        ),
        (
            {
                "models": [
                    {"name": "m", "basePath": "/models/a"},
                    {"name": "m", "basePath": "/models/b"},
                ],
                "storage": {"hostPath": {"path": "/d"}},
            },
            "unique",
        ),
        (
            {"models": [{"name": "m", "basePath": "/models/m"}], "storage": {}},
            "exactly one volume source",
        ),
    ],
)
def test_spec_errors_name_the_problem(raw, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(raw)


def test_code_defaults_match_crd_defaults():
    crd = yaml.safe_load(CRD.read_text())
    props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]
    d = TFModelSpec(models=(), storage={})
    assert props["replicas"]["default"] == d.replicas
    assert props["image"]["default"] == d.image
    assert props["imagePullPolicy"]["default"] == d.image_pull_policy
    assert props["gpus"]["default"] == d.gpus
    assert props["gpuResourceName"]["default"] == d.gpu_resource_name
    assert props["pollIntervalSeconds"]["default"] == d.poll_interval_seconds
    assert props["fileSystemPollWaitSeconds"]["default"] == d.file_system_poll_wait_seconds
    assert props["allowVersionLabelsForUnavailableModels"]["default"] == d.allow_unavailable_labels
    svc = props["service"]["properties"]
    assert (svc["type"]["default"], svc["grpcPort"]["default"], svc["restPort"]["default"]) == (
        d.service.type,
        d.service.grpc_port,
        d.service.rest_port,
    )


# --- status ----------------------------------------------------------------------------------


def _deployment(replicas=2, ready=2, updated=2, total=2, generation=3, observed=3) -> dict:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "replicas": total,
            "readyReplicas": ready,
            "updatedReplicas": updated,
        },
    }


def _conds(status: dict) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_status_ready_when_rolled_out():
    spec = spec_of(example("multi-model.yaml"))
    st = build_status("multi-model", spec, Observation(generation=5, deployment=_deployment()))
    assert _conds(st) == {
        "Ready": ("True", "AllReplicasReady"),
        "Progressing": ("False", "RolloutComplete"),
        "Degraded": ("False", "AsExpected"),
    }
    assert st["observedGeneration"] == 5
    assert st["readySummary"] == "2/2"
    assert st["modelNames"] == "resnet,bert,ranker"
    assert st["stableVersions"] == "resnet:1" and st["canaryVersions"] == "resnet:2"
    assert (
        st["selector"]
        == "app.kubernetes.io/instance=multi-model,app.kubernetes.io/name=tfmodel-server"
    )


@pytest.mark.parametrize(
    "deployment,ready,progressing",
    [
        (None, ("False", "DeploymentMissing"), ("False", "RollingOut")),
        (_deployment(ready=1), ("False", "ReplicasNotReady"), ("False", "RolloutComplete")),
        (_deployment(updated=1, total=3), ("False", "ReplicasNotReady"), ("True", "RollingOut")),
        (_deployment(observed=2), ("False", "ReplicasNotReady"), ("True", "RollingOut")),
        (
            _deployment(replicas=0, ready=0, updated=0, total=0),
            ("False", "ScaledToZero"),
            ("False", "RolloutComplete"),
        ),
    ],
)
def test_status_conditions_follow_the_deployment(deployment, ready, progressing):
    spec = spec_of(example("multi-model.yaml"))
    conds = _conds(
        build_status("multi-model", spec, Observation(generation=1, deployment=deployment))
    )
    assert conds["Ready"] == ready
    assert conds["Progressing"] == progressing


def test_degraded_names_problems_and_deployment_failures():
    spec = spec_of(example("multi-model.yaml"))
    dep = _deployment()
    dep["status"]["conditions"] = [
        {"type": "ReplicaFailure", "status": "True", "message": 'pods "x" is forbidden: quota'}
    ]
    st = build_status(
        "m",
        spec,
        Observation(
            generation=1, deployment=dep, problems=[("StorageNotFound", "PVC models missing")]
        ),
    )
    degraded = next(c for c in st["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "StorageNotFound"
    assert "PVC models missing" in degraded["message"] and "quota" in degraded["message"]


def _report(
    model: str, states: dict[int, str], labels: dict[str, int] | None = None, error: str = ""
) -> dict:
    return {
        "models": [
            {
                "name": model,
                "model_version_status": [
                    {
                        "version": str(v),
                        "state": s,
                        "status": {
                            "error_code": "OK" if not error else "NOT_FOUND",
                            "error_message": error,
                        },
                    }
                    for v, s in states.items()
                ],
                "version_labels": labels or {},
            }
        ]
    }


def test_models_status_aggregates_pods_worst_state_wins():
    spec = spec_of(example("multi-model.yaml"))
    reports = [
        _report("resnet", {1: "AVAILABLE", 2: "AVAILABLE"}, {"stable": 1, "canary": 2}),
        _report("resnet", {1: "AVAILABLE", 2: "LOADING"}, {"stable": 1, "canary": 2}),
    ]
    models = {m["name"]: m for m in models_status(spec, reports)}
    assert models["resnet"]["reachablePods"] == 2
    assert models["resnet"]["versions"] == [
        {"version": 1, "state": "AVAILABLE", "availablePods": 2},
        {"version": 2, "state": "LOADING", "availablePods": 1},
    ]
    assert models["resnet"]["versionLabels"] == {"stable": 1, "canary": 2}
    assert models["bert"] == {"name": "bert", "reachablePods": 0, "versions": []}


def test_model_load_errors_degrade():
    spec = spec_of(example("multi-model.yaml"))
    reports = [_report("bert", {3: "END"}, error="Could not find base path /models/bert")]
    st = build_status(
        "m", spec, Observation(generation=1, deployment=_deployment(), reports=reports)
    )
    degraded = next(c for c in st["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "ModelLoadFailed"
    assert "bert version 3: Could not find base path" in degraded["message"]


def test_config_rejected_by_a_server_degrades():
    spec = spec_of(example("multi-model.yaml"))
    report = _report("resnet", {1: "AVAILABLE"})
    report["config_status"] = {
        "ok": False,
        "error": "Request to assign label to version 3 of model resnet",
    }
    st = build_status(
        "m", spec, Observation(generation=1, deployment=_deployment(), reports=[report])
    )
    degraded = next(c for c in st["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "ConfigRejected"
    assert "version 3 of model resnet" in degraded["message"]


def test_merge_conditions_keeps_transition_time_until_status_changes():
    old = [{"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]
    same = merge_conditions([{"type": "Ready", "status": "True"}], old, "2030-01-01T00:00:00Z")
    flipped = merge_conditions([{"type": "Ready", "status": "False"}], old, "2030-01-01T00:00:00Z")
    assert same[0]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    assert flipped[0]["lastTransitionTime"] == "2030-01-01T00:00:00Z"


def test_operator_imports_no_tensorflow():
    code = (
        "import sys, tfmodel_operator.handlers, tfmodel_operator.main;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_serving', 'tfmodel_server')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


# --- ownership, names, replicas hand-over ------------------------------------------------------


def _owned(uid: str | None, controller: bool = True, name: str = "m") -> dict:
    refs = (
        []
        if uid is None
        else [{"kind": "TFModel", "name": name, "uid": uid, "controller": controller}]
    )
    return {"metadata": {"name": "x", "ownerReferences": refs}}


def test_ownership_is_the_controller_reference_uid():
    assert ownership.classify(None, "u1") is ownership.Ownership.ABSENT
    assert ownership.classify(_owned("u1"), "u1") is ownership.Ownership.OURS
    assert ownership.classify(_owned("u2"), "u1") is ownership.Ownership.FOREIGN
    # An owner reference that is not the controller gives no right to write.
    assert ownership.classify(_owned("u1", controller=False), "u1") is ownership.Ownership.FOREIGN
    assert ownership.classify(_owned(None), "u1") is ownership.Ownership.FOREIGN


def test_conflict_message_names_the_object_and_its_controller():
    hand_made = ownership.conflict_message("ConfigMap", "bar-config", _owned(None), "bar")
    assert hand_made.startswith("ConfigMap bar-config already exists and has no controller")
    other = ownership.conflict_message(
        "Service", "foo-headless", _owned("u2", name="foo-headless"), "foo"
    )
    assert "controlled by TFModel foo-headless" in other
    earlier = ownership.conflict_message("Deployment", "foo", _owned("old", name="foo"), "foo")
    assert "earlier TFModel foo (uid old)" in earlier


def test_child_names_cannot_collide_between_valid_tfmodel_names():
    """Per kind, the child names of two different valid TFModel names never coincide."""
    tfmodels = ["foo", "foo-headless", "foo-config", "a", "a-b", "config", "headless", "x" * 54]
    valid = [t for t in tfmodels if not names.name_problems(t) and not t.endswith("-headless")]
    assert "foo-headless" not in valid and "x" * 54 in valid
    seen: dict[str, str] = {}
    for tfmodel in valid:
        for manifest in build_children(
            tfmodel, "ns", spec_of(example("gpu-autoscaled.yaml"))
        ).present:
            key = f"{manifest['kind']}/{manifest['metadata']['name']}"
            assert seen.setdefault(key, tfmodel) == tfmodel, (key, tfmodel, seen[key])
            assert len(manifest["metadata"]["name"]) <= 63


def test_name_rules_in_code_match_the_crd():
    crd = yaml.safe_load(CRD.read_text())
    rules = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["x-kubernetes-validations"]
    text = " ".join(r["rule"] for r in rules)
    assert names.DNS1035_LABEL in text
    assert f"size() <= {names.MAX_TFMODEL_NAME_LENGTH}" in text
    assert f"endsWith('{names.HEADLESS_SUFFIX}')" in text
    assert all(r.get("optionalOldSelf") for r in rules)
    assert names.MAX_TFMODEL_NAME_LENGTH + len(names.HEADLESS_SUFFIX) == 63
    assert names.name_problems("ok-name") == []
    for bad in ("my.model", "1model", "Upper", "x" * 55, "trailing-"):
        assert names.name_problems(bad), bad


def _live_deployment(replicas: int, manager: str = names.FIELD_MANAGER) -> dict:
    return {
        "metadata": {
            "name": "m",
            "managedFields": [
                {
                    "manager": manager,
                    "operation": "Apply",
                    "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {}}},
                },
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "subresource": "status",
                },
            ],
        },
        "spec": {"replicas": replicas},
    }


def test_autoscaling_on_hands_the_live_replica_count_over():
    raw = {
        **example("single-model.yaml")["spec"],
        "autoscaling": {"minReplicas": 2, "maxReplicas": 9},
    }
    spec = parse_spec(raw)
    handover = replicas_handover("m", "ns", spec, _live_deployment(5))
    assert handover == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "m", "namespace": "ns"},
        "spec": {"replicas": 5},
    }
    # Never below the HPA's floor.
    assert replicas_handover("m", "ns", spec, _live_deployment(1))["spec"]["replicas"] == 2
    # Nothing to hand over: no Deployment yet, already handed over, or no autoscaling.
    assert replicas_handover("m", "ns", spec, None) is None
    assert replicas_handover("m", "ns", spec, _live_deployment(5, HANDOVER_MANAGER)) is None
    assert (
        replicas_handover("m", "ns", spec_of(example("single-model.yaml")), _live_deployment(5))
        is None
    )


def test_manages_field_reads_managed_fields():
    live = _live_deployment(3)
    assert manages_field(live, names.FIELD_MANAGER, ("spec", "replicas"))
    assert not manages_field(live, names.FIELD_MANAGER, ("spec", "selector"))
    assert not manages_field(live, "someone", ("spec", "replicas"))


def test_pods_are_probed_at_once_under_one_deadline():
    """Five pods that never answer cost one deadline, not five timeouts; answers still count.
    Every running pod is asked (no cap), with its UID and restart count for the analysis."""
    import http.server
    import socket
    import threading
    import time

    from tfmodel_operator.probe import PodClient

    silent = [socket.socket() for _ in range(5)]
    for sock in silent:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)  # accepts, never answers

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = json.dumps({"models": []}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def pod(port: int, uid: str = "u") -> dict:
        return {
            "metadata": {"uid": uid},
            "spec": {
                "containers": [
                    {
                        "name": names.SERVER_CONTAINER,
                        "ports": [{"name": "http", "containerPort": port}],
                    }
                ]
            },
            "status": {
                "phase": "Running",
                "podIP": "127.0.0.1",
                "containerStatuses": [{"name": names.SERVER_CONTAINER, "restartCount": 2}],
            },
        }

    answering = [pod(server.server_address[1], f"ok-{i}") for i in range(25)]
    pods = [pod(s.getsockname()[1]) for s in silent] + answering
    client = PodClient(concurrency=32, timeout=5.0, deadline=3.0)
    try:
        start = time.monotonic()
        answers = client.ask(pods, metrics=True)
        elapsed = time.monotonic() - start
    finally:
        client.close()
        server.shutdown()
        for sock in silent:
            sock.close()
    assert [a.models for a in answers] == [None] * 5 + [{"models": []}] * 25
    assert [a.uid for a in answers[5:]] == [f"ok-{i}" for i in range(25)]
    assert {a.restarts for a in answers} == {2}
    assert all(a.metrics == '{"models": []}' for a in answers[5:])
    assert elapsed < 3.0 + 5.0, elapsed  # one deadline, not 5 x 5 s timeouts


# --- canary traffic split --------------------------------------------------------------------


def test_canary_traffic_percent_is_a_configmap_only_change():
    raw = example("multi-model.yaml")["spec"]
    before = children_by_kind("multi-model", raw)
    split = json.loads(before["ConfigMap/multi-model-config"]["data"]["traffic-split.json"])
    assert split == {"models": {}}
    edited = copy.deepcopy(raw)
    edited["models"][0]["canaryTrafficPercent"] = 10
    after = children_by_kind("multi-model", edited)
    split = json.loads(after["ConfigMap/multi-model-config"]["data"]["traffic-split.json"])
    assert split == {"models": {"resnet": {"canaryPercent": 10}}}
    for key in before:
        if not key.startswith("ConfigMap/"):
            assert before[key] == after[key], key
    status = build_status(
        "multi-model", parse_spec(edited), Observation(generation=1, deployment=None)
    )
    assert status["canaryVersions"] == "resnet:2@10%"


def test_canary_traffic_percent_needs_both_labels():
    raw = copy.deepcopy(example("single-model.yaml")["spec"])
    raw["models"][0]["canaryTrafficPercent"] = 5
    with pytest.raises(SpecError, match="needs both a stable and a canary"):
        parse_spec(raw)


def test_traffic_split_file_is_what_the_server_parses():
    from tfmodel_operator.model_config import render_traffic_split
    from tfmodel_server.model_servers.traffic_split import parse_traffic_split

    raw = copy.deepcopy(example("multi-model.yaml")["spec"])
    raw["models"][0]["canaryTrafficPercent"] = 0
    text = render_traffic_split(parse_spec(raw))
    assert parse_traffic_split(text.encode(), "x") == {"resnet": 0.0}


def test_monitoring_config_is_what_the_server_parses():
    from tfmodel_operator.model_config import render_monitoring_config
    from tfmodel_server.monitoring.metrics import parse_monitoring_config

    options = parse_monitoring_config(render_monitoring_config(), "x")
    assert options.prometheus_enabled and options.prometheus_path == names.METRICS_PATH
    pod = build_deployment("m", "ns", spec_of(example("single-model.yaml")))["spec"]["template"]
    assert pod["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8501",
        "prometheus.io/path": names.METRICS_PATH,
    }
