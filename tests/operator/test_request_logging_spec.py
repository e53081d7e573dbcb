"""A TFModel's request logging: spec.requestLogging (the volume) and models[].requestLogging
(TF Serving's logging_config). The operator's rendered config and pod arguments run a real
server that writes the records; the CRD's checks run in the real API server."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest
from tfmodel_operator import names
from tfmodel_operator.deployment import build_pod_template
from tfmodel_operator.model_config import render_models_config
from tfmodel_operator.spec import SpecError, parse_spec

from tests.operator.kube import KubeCluster
from tests.operator.operator_proc import install_chart
from tests.operator.test_crd import minimal

LOGGED = {
    "models": [
        {"name": "lin", "basePath": "/models/lin", "requestLogging": {"samplingRate": 1.0}},
        {"name": "quiet", "basePath": "/models/quiet"},
    ],
    "storage": {"persistentVolumeClaim": {"claimName": "models"}},
    "requestLogging": {"persistentVolumeClaim": {"claimName": "logs"}, "maxFileBytes": 1048576},
}


def _pod(raw: dict) -> dict:
    return build_pod_template("t", parse_spec(raw))["spec"]


def test_the_pod_writes_its_logs_under_its_own_name_on_the_volume():
    pod = _pod(LOGGED)
    (container,) = pod["containers"]
    assert f"--request_log_dir={names.REQUEST_LOG_DIR}/$(POD_NAME)" in container["args"]
    assert "--request_log_max_file_bytes=1048576" in container["args"]
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in (
        container["env"]
    )
    assert {"name": "request-logs", "mountPath": names.REQUEST_LOG_DIR} in container["volumeMounts"]
    assert {"name": "request-logs", "persistentVolumeClaim": {"claimName": "logs"}} in pod[
        "volumes"
    ]


def test_without_request_logging_nothing_is_added():
    raw = copy.deepcopy(LOGGED)
    del raw["requestLogging"], raw["models"][0]["requestLogging"]
    (container,) = _pod(raw)["containers"]
    assert not any(a.startswith("--request_log") for a in container["args"])
    assert "env" not in container
    assert "logging_config" not in render_models_config(parse_spec(raw))


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda s: s.pop("requestLogging"), "spec.requestLogging must name the volume"),
        (
            lambda s: s["models"][0]["requestLogging"].update(samplingRate=1.5),
            "samplingRate 1.5 is not in 0..1",
        ),
        (
            lambda s: s["models"][0]["requestLogging"].update(filenamePrefix="../up"),
            "must be a relative path",
        ),
        (
            lambda s: s["requestLogging"].update(emptyDir={}),
            "exactly one volume source",
        ),
        (
            lambda s: s.update(env=[{"name": "POD_NAME", "value": "x"}]),
            "env POD_NAME: set by the operator",
        ),
        (
            lambda s: s.update(extraArgs=["--request_log_dir=/x"]),
            "--request_log_dir is set by spec.requestLogging",
        ),
    ],
)
def test_bad_request_logging_is_refused(mutate, message):
    raw = copy.deepcopy(LOGGED)
    mutate(raw)
    with pytest.raises(SpecError, match=message.replace(".", r"\.")):
        parse_spec(raw)


def test_the_rendered_config_and_args_make_a_real_server_log_every_call(tmp_path: Path):
    """What the kubelet would run: the operator's models.config and --request_log_dir with
    $(POD_NAME) expanded. Each of 12 calls is one PredictionLog in the pod's directory."""
    from tests.server.savedmodels import export_linear
    from tests.server.serverproc import ServerProcess
    from tests.server.test_request_logging import predict, records_at, wait_caught_up

    spec = parse_spec(LOGGED)
    # The pod mounts the models at /models; here they are in tmp_path.
    models = tuple(dataclasses.replace(m, base_path=str(tmp_path / m.name)) for m in spec.models)
    for m in models:
        export_linear(Path(m.base_path), 1, 2.0, 1.0)
    (tmp_path / "models.config").write_text(
        render_models_config(dataclasses.replace(spec, models=models))
    )
    (container,) = build_pod_template("t", spec)["spec"]["containers"]
    log_root = tmp_path / "volume"
    log_args = [
        a.replace(names.REQUEST_LOG_DIR, str(log_root)).replace("$(POD_NAME)", "t-abc12")
        for a in container["args"]
        if a.startswith("--request_log")
    ]
    (tmp_path / "monitoring.config").write_text(
        'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }\n'
    )
    with ServerProcess(
        f"--model_config_file={tmp_path / 'models.config'}",
        f"--monitoring_config_file={tmp_path / 'monitoring.config'}",
        *log_args,
    ) as server:
        server.wait_ready()
        stub = server.prediction_stub()
        for i in range(12):
            stub.Predict(predict("lin", [float(i)]), timeout=10)
            stub.Predict(predict("quiet", [float(i)]), timeout=10)
        assert wait_caught_up(server, "lin") == 12
    records = records_at(log_root / "t-abc12" / "lin")
    assert len(records) == 12
    assert {r.predict_log.request.model_spec.name for r in records} == {"lin"}
    assert not list((log_root / "t-abc12").glob("quiet*"))


@pytest.fixture(scope="module")
def crd(kube: KubeCluster) -> None:
    install_chart(kube)


def test_the_crd_stores_request_logging_as_written(crd, kube: KubeCluster, namespace: str):
    doc = minimal("logged")
    doc["spec"] = copy.deepcopy(LOGGED)
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))
    got = json.loads(kube.kubectl("get", "tfm", "logged", "-n", namespace, "-o", "json").stdout)
    assert got["spec"]["requestLogging"] == LOGGED["requestLogging"]
    assert got["spec"]["models"][0]["requestLogging"] == {"samplingRate": 1.0}


@pytest.mark.parametrize(
    "mutate,message",
    [
        (
            lambda s: s["requestLogging"].update(emptyDir={}),
            "requestLogging must set exactly one of persistentVolumeClaim, emptyDir",
        ),
        (
            lambda s: s["models"][0]["requestLogging"].update(filenamePrefix="a/../b"),
            "requestLogging.filenamePrefix must be a relative path",
        ),
        (
            lambda s: s["models"][0]["requestLogging"].update(samplingRate=2),
            "should be less than or equal to 1",
        ),
    ],
)
def test_the_crd_refuses_bad_request_logging(crd, kube: KubeCluster, mutate, message):
    doc = minimal("bad")
    doc["spec"] = copy.deepcopy(LOGGED)
    mutate(doc["spec"])
    done = kube.kubectl(
        "create", "--dry-run=server", "-n", "default", "-f", "-", input=json.dumps(doc), check=False
    )
    assert done.returncode != 0, f"accepted: {doc['spec']}"
    assert message in done.stderr, done.stderr
