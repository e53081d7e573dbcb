"""Metrics filled by real traffic: gRPC and REST calls, then a Prometheus scrape."""

from __future__ import annotations

import re

import grpc
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import classification_pb2

from tests.server.savedmodels import export_linear
from tests.server.serverproc import ServerProcess
from tests.server.test_server_process import predict_request

CONFIG = """
model_config_list {{
  config {{
    name: "m"
    base_path: "{base}"
    model_platform: "tensorflow"
    model_version_policy {{ specific {{ versions: 1 versions: 2 }} }}
  }}
}}
"""


@pytest.fixture(scope="module")
def metrics_server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("metrics")
    export_linear(root / "m", 1, 1.0, 0.0)
    export_linear(root / "m", 2, 2.0, 1.0)
    (root / "models.config").write_text(CONFIG.format(base=root / "m"))
    (root / "monitoring.config").write_text(
        'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }\n'
    )
    server = ServerProcess(
        f"--model_config_file={root / 'models.config'}",
        f"--monitoring_config_file={root / 'monitoring.config'}",
    )
    with server:
        server.wait_ready()
        server.wait_versions("m", {1: "AVAILABLE", 2: "AVAILABLE"})
        yield server


def scrape(server: ServerProcess) -> dict[tuple[str, tuple], float]:
    text = requests.get(f"{server.rest}/monitoring/prometheus/metrics", timeout=10).text
    samples: dict[tuple[str, tuple], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_request_metrics_carry_version_and_signature(metrics_server):
    before = scrape(metrics_server)
    stub = metrics_server.prediction_stub()
    for _ in range(3):
        request = predict_request("m", [1.0])
        request.model_spec.version.value = 1
        stub.Predict(request, timeout=10)
    stub.Predict(predict_request("m", [1.0]), timeout=10)  # latest: version 2
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "m"
    classify.model_spec.signature_name = "classify_x_to_y"
    classify.input.example_list.examples.add().features.feature["x"].float_list.value.append(1.0)
    stub.Classify(classify, timeout=10)
    rest = requests.post(
        f"{metrics_server.rest}/v1/models/m/versions/1:predict",
        json={"instances": [1.0, 2.0]},
        timeout=10,
    )
    assert rest.status_code == 200
    with pytest.raises(grpc.RpcError):
        stub.Predict(predict_request("missing", [1.0]), timeout=10)

    after = scrape(metrics_server)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    counts = ":tfmodel:request_count_total"
    base = {"model_name": "m", "entrypoint": "GRPC", "status": "OK"}
    assert delta(counts, version="1", signature="serving_default", API="Predict", **base) == 3
    assert delta(counts, version="2", signature="serving_default", API="Predict", **base) == 1
    assert delta(counts, version="2", signature="classify_x_to_y", API="Classify", **base) == 1
    assert (
        delta(
            counts,
            model_name="m",
            version="1",
            signature="serving_default",
            API="Predict",
            entrypoint="REST",
            status="OK",
        )
        == 1
    )
    assert (
        delta(
            counts,
            model_name="missing",
            version="",
            signature="",
            API="Predict",
            entrypoint="GRPC",
            status="NOT_FOUND",
        )
        == 1
    )
    # TF Serving's own families, filled by the same requests.
    assert delta(":tensorflow:serving:request_count", model_name="m", status="OK") == 6
    runtime = ":tensorflow:serving:runtime_latency_count"
    assert delta(runtime, model_name="m", API="Predict", runtime="TF1") == 5
    assert delta(runtime, model_name="m", API="Classify", runtime="TF1") == 1
    latency = ":tensorflow:serving:request_latency_count"
    assert delta(latency, model_name="m", API="Predict", entrypoint="GRPC") == 4
    assert delta(latency, model_name="m", API="Predict", entrypoint="REST") == 1
    per_version = ":tfmodel:request_latency_count"
    assert (
        delta(
            per_version,
            model_name="m",
            version="1",
            signature="serving_default",
            API="Predict",
            entrypoint="GRPC",
        )
        == 3
    )


def test_load_metrics_name_each_version_path(metrics_server):
    samples = scrape(metrics_server)
    loaded = {
        dict(labels)["model_path"]
        for (name, labels), v in samples.items()
        if name == ":tensorflow:cc:saved_model:load_attempt_count"
        and dict(labels).get("status") == "success"
        and v >= 1
    }
    assert {re.sub(r".*/m/", "", p) for p in loaded} >= {"1", "2"}
