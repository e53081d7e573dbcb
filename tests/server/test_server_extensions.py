"""Batching, Prometheus metrics and flag validation wired into a real server process."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import requests

from tests.server.savedmodels import export_linear
from tests.server.serverproc import ServerProcess
from tests.server.test_grpc_api import predict_request, y_of
from tests.server.test_server_process import run_cli

BATCHING = "max_batch_size { value: 16 }\nbatch_timeout_micros { value: 5000 }\n"
MONITORING = 'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }\n'


def test_batched_server_answers_each_request_and_exports_metrics(tmp_path):
    base = tmp_path / "m"
    export_linear(base, 1, 2.0, 1.0)
    (tmp_path / "batching.config").write_text(BATCHING)
    (tmp_path / "monitoring.config").write_text(MONITORING)
    with ServerProcess(
        "--model_name=m",
        f"--model_base_path={base}",
        "--enable_batching",
        f"--batching_parameters_file={tmp_path / 'batching.config'}",
        f"--monitoring_config_file={tmp_path / 'monitoring.config'}",
    ) as server:
        server.wait_ready()
        stub = server.prediction_stub()

        def call(i: int) -> tuple[int, np.ndarray]:
            xs = [float(i), float(i) + 0.5][: 1 + i % 2]
            return i, y_of(stub.Predict(predict_request("m", xs), timeout=30))

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(call, range(64)))
        for i, y in results:
            xs = np.array([float(i), float(i) + 0.5][: 1 + i % 2], np.float32)
            np.testing.assert_allclose(y, 2.0 * xs + 1.0)

        r = requests.post(
            f"{server.rest}/v1/models/m:predict", json={"instances": [1.0]}, timeout=10
        )
        assert r.json() == {"predictions": [3.0]}
        requests.post(
            f"{server.rest}/v1/models/nope:predict", json={"instances": [1.0]}, timeout=10
        )

        text = requests.get(f"{server.rest}/monitoring/prometheus/metrics", timeout=10).text
        assert ':tensorflow:serving:request_count{model_name="m",status="OK"} 65' in text
        assert 'model_name="nope",status="NOT_FOUND"' in text
        assert ":tensorflow:serving:request_latency_bucket" in text
        assert 'entrypoint="GRPC"' in text and 'entrypoint="REST"' in text
        assert (
            ':tfmodel:model_load_latency_count{model_name="m",status="success",version="1"} 1'
            in text
            or (
                ':tfmodel:model_load_latency_count{model_name="m",version="1",status="success"} 1'
                in text
            )
        ), text
        # 64 requests through a 16-row batcher: some batches carried more than one request.
        batch_lines = [
            line
            for line in text.splitlines()
            if line.startswith(":tensorflow:serving:batching_session:") and "_count" in line
        ]
        assert batch_lines, text


def test_bad_batching_file_fails_startup(tmp_path):
    export_linear(tmp_path / "m", 1)
    bad = tmp_path / "batching.config"
    bad.write_text("max_batch_size { value: 8 }\nallowed_batch_sizes: 4\nallowed_batch_sizes: 6\n")
    result = run_cli(
        f"--model_base_path={tmp_path / 'm'}",
        "--enable_batching",
        f"--batching_parameters_file={bad}",
    )
    assert result.returncode == 255
    assert str(bad) in result.stderr
