"""Shadow traffic against real server processes with real SavedModels.

Every model has stable=1 and canary=2. A canary whose signature fails costs the clients
nothing; an identical canary agrees (abs diff in the first bucket, every top-1 the same),
a canary built to answer differently does not; the cap and admission control shed shadow
runs, counted, while every client request succeeds.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import classification_pb2
from tfmodel_operator.promtext import shadow_figures
from tfmodel_server.inference.shadow import Agreement, compare

from tests.server.savedmodels import export_faulty, export_linear
from tests.server.serverproc import ServerProcess
from tests.server.test_grpc_api import predict_request, y_of

METRICS = "/monitoring/prometheus/metrics"
MODELS = ("same", "diff", "faulty")


def _config(root: Path, models: tuple[str, ...]) -> str:
    entries = "".join(
        f'  config {{ name: "{m}" base_path: "{root / m}" model_platform: "tensorflow"\n'
        "    model_version_policy { specific { versions: 1 versions: 2 } }\n"
        '    version_labels { key: "stable" value: 1 }\n'
        '    version_labels { key: "canary" value: 2 } }\n'
        for m in models
    )
    return f"model_config_list {{\n{entries}}}\n"


def _server(root: Path, models: tuple[str, ...], shadow: dict, *flags: str) -> ServerProcess:
    (root / "models.config").write_text(_config(root, models))
    (root / "split.json").write_text(json.dumps({"models": shadow}))
    (root / "monitoring.config").write_text(
        f'prometheus_config {{ enable: true path: "{METRICS}" }}\n'
    )
    return ServerProcess(
        f"--model_config_file={root / 'models.config'}",
        f"--traffic_split_file={root / 'split.json'}",
        f"--monitoring_config_file={root / 'monitoring.config'}",
        *flags,
    )


def scrape(server: ServerProcess) -> list[tuple[str, dict[str, str], float]]:
    text = requests.get(f"{server.rest}{METRICS}", timeout=10).text
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def total(server: ServerProcess, name: str, **labels: str) -> float:
    return sum(
        v
        for n, got, v in scrape(server)
        if n == name and all(got.get(k) == w for k, w in labels.items())
    )


def settled(server: ServerProcess, model: str, picked: int) -> None:
    """Wait until each of `picked` shadowed requests has run or been shed."""

    def done() -> bool:
        ran = total(server, ":tfmodel:shadow_request_count_total", model_name=model)
        shed = total(server, ":tfmodel:shadow_shed_total", model_name=model)
        return ran + shed == picked

    server.wait_for(done, 60, f"{picked} shadow runs of {model}")


def classify_request(
    model: str, xs: list[float], **spec
) -> classification_pb2.ClassificationRequest:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "classify_x_to_y"
    for key, value in spec.items():
        setattr(request.model_spec, key, value)
    for x in xs:
        request.input.example_list.examples.add().features.feature["x"].float_list.value.append(x)
    return request


@pytest.fixture(scope="module")
def shadow_server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("shadow")
    export_linear(root / "same", 1, 1.0, 0.5)
    export_linear(root / "same", 2, 1.0, 0.5)
    export_linear(root / "diff", 1, 1.0, 0.5)
    export_linear(root / "diff", 2, -1.0, -0.5)  # y flips sign: other answers, other top-1
    export_linear(root / "faulty", 1, 1.0, 0.5)
    export_faulty(root / "faulty", 2)
    shadow = {m: {"canaryPercent": 0, "shadowPercent": 100} for m in MODELS}
    with _server(root, MODELS, shadow) as server:
        server.wait_ready()
        for model in MODELS:
            server.wait_versions(model, {1: "AVAILABLE", 2: "AVAILABLE"})
        yield server


def test_a_failing_canary_never_reaches_the_client(shadow_server: ServerProcess):
    stub = shadow_server.prediction_stub()
    for i in range(60):
        spec = {} if i % 2 else {"version_label": "stable"}
        response = stub.Predict(predict_request("faulty", [float(i)], **spec), timeout=10)
        assert response.model_spec.version.value == 1
        assert y_of(response).tolist() == [i + 0.5]
    for i in range(40):
        url = f"{shadow_server.rest}/v1/models/faulty/labels/stable:predict"
        body = requests.post(url, json={"instances": [float(i)]}, timeout=10).json()
        assert body == {"predictions": [i + 0.5]}, body
    settled(shadow_server, "faulty", 100)
    ran = total(shadow_server, ":tfmodel:shadow_request_count_total", model_name="faulty")
    ok = total(
        shadow_server,
        ":tfmodel:shadow_request_count_total",
        model_name="faulty",
        stable_version="1",
        canary_version="2",
        status="OK",
    )
    # DEADLINE_EXCEEDED (ALREADY_EXISTS when two runs overlap on the Unbatch op's key).
    assert ran > 0 and ok == 0
    # The clients' own requests: all OK, all on version 1.
    assert (
        total(shadow_server, ":tfmodel:request_count_total", model_name="faulty", version="2") == 0
    )
    assert (
        total(shadow_server, ":tensorflow:serving:request_count", model_name="faulty", status="OK")
        == 100
    )
    assert "shadow request of model faulty on canary 2 (stable 1) failed" in shadow_server.log()


def _agreement(server: ServerProcess, model: str) -> tuple[float, float, float, float, float]:
    pair = {"model_name": model, "stable_version": "1", "canary_version": "2"}
    compared = total(server, ":tfmodel:shadow_abs_diff_count", **pair)
    identical = total(server, ":tfmodel:shadow_abs_diff_bucket", le="1e-09", **pair)
    within_5 = total(server, ":tfmodel:shadow_abs_diff_bucket", le="5", **pair)
    rows = total(server, ":tfmodel:shadow_top1_rows_total", **pair)
    agree = total(server, ":tfmodel:shadow_top1_agree_total", **pair)
    return compared, identical, within_5, rows, agree


@pytest.mark.parametrize("model", ["same", "diff"])
def test_agreement_of_an_identical_and_a_different_canary(shadow_server: ServerProcess, model: str):
    stub = shadow_server.prediction_stub()
    xs = [-2.0, -0.25, 1.0, 3.0]
    for _ in range(10):
        stub.Predict(predict_request(model, xs), timeout=10)
        answer = stub.Classify(classify_request(model, xs), timeout=10)
        assert answer.model_spec.version.value == 1
    # Named versions and the canary label are never shadowed.
    stub.Predict(predict_request(model, xs, version=1), timeout=10)
    stub.Predict(predict_request(model, xs, version_label="canary"), timeout=10)
    settled(shadow_server, model, 20)
    compared, identical, within_5, rows, agree = _agreement(shadow_server, model)
    ran = total(shadow_server, ":tfmodel:shadow_request_count_total", model_name=model, status="OK")
    assert compared == ran > 0
    predicts = total(
        shadow_server,
        ":tfmodel:shadow_latency_count",
        model_name=model,
        side="canary",
    )
    assert predicts == ran
    # The operator's rollout analysis reads the same figures from the same page.
    text = requests.get(f"{shadow_server.rest}{METRICS}", timeout=10).text
    read = shadow_figures(text, model)[(1, 2)]
    assert (read.canary.requests, read.compared, read.top1_rows) == (ran, compared, rows)
    if model == "same":
        assert identical == compared and agree == rows > 0
        assert read.abs_diff_over(1e-6) == 0 and read.top1_agree == rows
    else:
        # |y1 - y2| = 2|x + 0.5| up to 7 (Predict); top-1 flips on every row (Classify).
        assert identical == 0 and within_5 < compared and rows > 0 and agree == 0
        assert read.abs_diff_over(0.01) == compared and read.top1_agree == 0


def test_the_cap_and_admission_control_shed_shadow_runs(tmp_path: Path):
    export_linear(tmp_path / "slow", 1, 1.0, 0.5)
    export_faulty(tmp_path / "slow", 2, timeout_micros=300_000)  # holds its slot ~0.3 s
    shadow = {"slow": {"shadowPercent": 100}}
    flags = ("--shadow_max_concurrent=1", "--max_inflight_requests=2")
    with _server(tmp_path, ("slow",), shadow, *flags) as server:
        server.wait_ready()
        server.wait_versions("slow", {1: "AVAILABLE", 2: "AVAILABLE"})
        stub = server.prediction_stub()
        refused, lock = [0], threading.Lock()

        def client(seed: int) -> int:
            ok = 0
            for i in range(40):
                while True:  # admission refusals are retryable: retry until answered
                    try:
                        response = stub.Predict(predict_request("slow", [float(i)]), timeout=30)
                        break
                    except grpc.RpcError as e:
                        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e
                        with lock:
                            refused[0] += 1
                assert np.allclose(y_of(response), [i + 0.5])
                ok += 1
            return ok

        with ThreadPoolExecutor(6) as pool:
            assert sum(pool.map(client, range(6))) == 240
        settled(server, "slow", 240)
        ran = total(server, ":tfmodel:shadow_request_count_total", model_name="slow")
        by_cap = total(
            server, ":tfmodel:shadow_shed_total", model_name="slow", reason="concurrency"
        )
        by_load = total(server, ":tfmodel:shadow_shed_total", model_name="slow", reason="load")
        assert ran > 0 and by_cap > 0 and by_load > 0, (ran, by_cap, by_load, refused)
        assert ran + by_cap + by_load == 240


def test_the_flag_shadows_without_a_split_file(tmp_path: Path):
    export_linear(tmp_path / "m", 1, 1.0, 0.5)
    export_linear(tmp_path / "m", 2, 1.0, 0.5)
    (tmp_path / "models.config").write_text(_config(tmp_path, ("m",)))
    (tmp_path / "monitoring.config").write_text(
        f'prometheus_config {{ enable: true path: "{METRICS}" }}\n'
    )
    with ServerProcess(
        f"--model_config_file={tmp_path / 'models.config'}",
        f"--monitoring_config_file={tmp_path / 'monitoring.config'}",
        "--shadow_traffic_percent=100",
    ) as server:
        server.wait_ready()
        server.wait_versions("m", {1: "AVAILABLE", 2: "AVAILABLE"})
        stub = server.prediction_stub()
        for _ in range(10):
            stub.Predict(predict_request("m", [1.0], version_label="stable"), timeout=10)
        settled(server, "m", 10)
        # Unversioned requests go to the highest version (the canary) without a split
        # file, as in TF Serving: nothing to shadow.
        for _ in range(5):
            assert (
                stub.Predict(predict_request("m", [1.0]), timeout=10).model_spec.version.value == 2
            )
        assert tf.is_tensor(tf.constant(0))  # TensorFlow imported for the stubs' protos
        settled(server, "m", 10)


def test_an_unloaded_canarys_shadow_series_go(tmp_path: Path):
    """Version churn with shadowing on: once the canary unloads, every shadow series of its
    pair leaves /metrics, as its request series do (issue 21's bounded metrics)."""
    export_linear(tmp_path / "m", 1, 1.0, 0.5)
    export_linear(tmp_path / "m", 2, 1.0, 0.5)
    shadow = {"m": {"canaryPercent": 0, "shadowPercent": 100}}
    with _server(tmp_path, ("m",), shadow, "--model_config_file_poll_wait_seconds=1") as server:
        server.wait_ready()
        server.wait_versions("m", {1: "AVAILABLE", 2: "AVAILABLE"})
        stub = server.prediction_stub()
        for _ in range(5):
            stub.Predict(predict_request("m", [1.0], version_label="stable"), timeout=10)
        settled(server, "m", 5)
        shadow_series = lambda: [  # noqa: E731
            labels for name, labels, _ in scrape(server) if name.startswith(":tfmodel:shadow_")
        ]
        assert any(labels.get("canary_version") == "2" for labels in shadow_series())
        (tmp_path / "models.config").write_text(
            f'model_config_list {{ config {{ name: "m" base_path: "{tmp_path / "m"}"\n'
            '  model_platform: "tensorflow"\n'
            "  model_version_policy { specific { versions: 1 } } } }\n"
        )
        server.wait_for(
            lambda: not any(labels.get("canary_version") == "2" for labels in shadow_series()),
            60,
            "version 2's shadow series to go",
        )
        assert stub.Predict(predict_request("m", [1.0]), timeout=10).model_spec.version.value == 1


def test_compare_outputs():
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.5, 0.5]], np.float32)
    flipped = scores[:, ::-1].copy()
    assert compare({"s": scores}, {"s": scores}) == Agreement(0.0, 3, 3)
    got = compare({"s": scores}, {"s": flipped})
    # argmax of a tie is the first column on both sides: the third row agrees.
    assert got.top1_rows == 3 and got.top1_agree == 1 and np.isclose(got.max_abs_diff, 0.8)
    nan = np.array([np.nan, 1.0])
    assert compare({"y": nan}, {"y": nan.copy()}).max_abs_diff == 0.0
    assert compare({"y": nan}, {"y": np.array([0.0, 1.0])}).max_abs_diff == float("inf")
    assert compare({"y": np.ones(2)}, {"y": np.ones(3)}).max_abs_diff == float("inf")
    assert compare({"y": np.ones(2)}, {"z": np.ones(2)}).max_abs_diff == float("inf")
    assert compare({"c": np.array([3, 5])}, {"c": np.array([3, 7])}) == Agreement(2.0, 0, 0)
    words = np.array([b"a", b"b"], object)
    assert compare({"w": words}, {"w": words.copy()}).max_abs_diff == 0.0
    assert compare({"w": words}, {"w": np.array([b"a", b"c"], object)}).max_abs_diff == float("inf")
