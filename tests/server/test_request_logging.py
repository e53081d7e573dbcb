"""Request logging (ModelConfig.logging_config) against a real server process.

Counts are exact at sampling_rate 1.0 and within 6 sigma of the binomial mean at
0.1; records parse as PredictionLog; a log becomes a warmup file that the next
version replays; an unwritable log never fails a client.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
from google.protobuf import text_format
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    model_management_pb2,
    predict_pb2,
    prediction_log_pb2,
)
from tensorflow_serving.config import model_server_config_pb2
from tfmodel_server.codecs.tensor_proto import to_ndarray, to_tensor_proto
from tfmodel_server.servables.tensorflow.prediction_log_files import log_files, read_records
from tfmodel_server.servables.tensorflow.warmup import read_warmup_records

from tests.server.savedmodels import export_linear
from tests.server.serverproc import ServerProcess
from tests.server.test_warmup import counting_version

METRICS = "/monitoring/prometheus/metrics"
SAMPLED_REQUESTS = 1000
SAMPLED_RATE = 0.1

CONFIG = """
model_config_list {{
  config {{
    name: "every" base_path: "{root}/every" model_platform: "tensorflow"
    logging_config {{
      sampling_config {{ sampling_rate: 1.0 }}
      log_collector_config {{ filename_prefix: "every/log" }}
    }}
  }}
  config {{
    name: "tenth" base_path: "{root}/tenth" model_platform: "tensorflow"
    logging_config {{ sampling_config {{ sampling_rate: 0.1 }} }}
  }}
  config {{
    name: "unwritable" base_path: "{root}/unwritable" model_platform: "tensorflow"
    logging_config {{
      sampling_config {{ sampling_rate: 1.0 }}
      log_collector_config {{ filename_prefix: "{root}/a-file/log" }}
    }}
  }}
  config {{
    name: "counting" base_path: "{root}/counting" model_platform: "tensorflow"
    logging_config {{
      sampling_config {{ sampling_rate: 1.0 }}
      log_collector_config {{ type: "tfrecord" filename_prefix: "counting/log" }}
    }}
  }}
  config {{ name: "quiet" base_path: "{root}/quiet" model_platform: "tensorflow" }}
}}
"""


@pytest.fixture(scope="module")
def log_server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("reqlog")
    for name in ("every", "tenth", "unwritable", "quiet"):
        export_linear(root / name, 1, 2.0, 1.0)
    counting_version(root / "counting", 1)
    (root / "a-file").write_text("a regular file where the log directory should be\n")
    (root / "models.config").write_text(CONFIG.format(root=root))
    (root / "monitoring.config").write_text(
        f'prometheus_config {{ enable: true path: "{METRICS}" }}\n'
    )
    log_dir = root / "logs"
    server = ServerProcess(
        f"--model_config_file={root / 'models.config'}",
        f"--monitoring_config_file={root / 'monitoring.config'}",
        f"--request_log_dir={log_dir}",
        "--file_system_poll_wait_seconds=1",
    )
    server.root = root  # type: ignore[attr-defined]
    server.log_dir = log_dir  # type: ignore[attr-defined]
    with server:
        server.wait_ready()
        yield server


# ---- helpers -------------------------------------------------------------------


def scrape(server: ServerProcess) -> dict[tuple[str, tuple], float]:
    text = requests.get(f"{server.rest}{METRICS}", timeout=10).text
    samples: dict[tuple[str, tuple], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def log_metric(server: ServerProcess, what: str, **labels: str) -> float:
    key = (f":tfmodel:request_log_{what}_total", tuple(sorted(labels.items())))
    return scrape(server).get(key, 0.0)


def wait_caught_up(server: ServerProcess, model: str) -> float:
    """Wait until every sampled request of `model` is written or dropped; returns sampled."""

    def caught_up() -> bool:
        samples = scrape(server)

        def total(what: str) -> float:
            return sum(
                v
                for (name, labels), v in samples.items()
                if name == f":tfmodel:request_log_{what}_total" and ("model_name", model) in labels
            )

        return total("sampled") == total("records") + total("dropped")

    server.wait_for(caught_up, what=f"the request log writer for {model}")
    return log_metric(server, "sampled", model_name=model)


def records_at(prefix: Path) -> list[prediction_log_pb2.PredictionLog]:
    records = []
    for path in log_files([str(prefix)]):
        for raw in read_records(path):
            record = prediction_log_pb2.PredictionLog()
            record.ParseFromString(raw)  # raises on anything that is not a PredictionLog
            records.append(record)
    return records


def predict(model: str, x: list[float]) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["x"].CopyFrom(to_tensor_proto(np.asarray(x, np.float32)))
    return request


def example(x: float):
    from tensorflow.core.example import example_pb2

    e = example_pb2.Example()
    e.features.feature["x"].float_list.value.append(x)
    return e


# ---- tests ---------------------------------------------------------------------


def test_rate_one_logs_every_call_of_every_api_exactly(log_server):
    stub = log_server.prediction_stub()
    for i in range(20):
        stub.Predict(predict("every", [float(i)]), timeout=10)
    for i in range(10):
        response = requests.post(
            f"{log_server.rest}/v1/models/every:predict",
            json={"instances": [100.0 + i]},
            timeout=10,
        )
        assert response.status_code == 200, response.text
    for _ in range(4):
        request = classification_pb2.ClassificationRequest()
        request.model_spec.name = "every"
        request.model_spec.signature_name = "classify_x_to_y"
        request.input.example_list.examples.append(example(3.0))
        stub.Classify(request, timeout=10)
    for _ in range(3):
        response = requests.post(
            f"{log_server.rest}/v1/models/every/versions/1:regress",
            json={"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]},
            timeout=10,
        )
        assert response.status_code == 200, response.text
    for _ in range(2):
        request = inference_pb2.MultiInferenceRequest()
        task = request.tasks.add()
        task.model_spec.name = "every"
        task.model_spec.signature_name = "regress_x_to_y"
        task.method_name = "tensorflow/serving/regress"
        request.input.example_list.examples.append(example(1.0))
        stub.MultiInference(request, timeout=10)
    # A failed call is not logged (TF Serving logs after a successful call only).
    bad = predict("every", [1.0])
    bad.inputs["nope"].CopyFrom(bad.inputs["x"])
    with pytest.raises(grpc.RpcError):
        stub.Predict(bad, timeout=10)

    assert wait_caught_up(log_server, "every") == 39
    records = records_at(log_server.log_dir / "every" / "log")
    kinds = [r.WhichOneof("log_type") for r in records]
    assert kinds.count("predict_log") == 30
    assert kinds.count("classify_log") == 4
    assert kinds.count("regress_log") == 3
    assert kinds.count("multi_inference_log") == 2
    assert len(records) == 39
    assert log_metric(log_server, "records", model_name="every") == 39

    predicts = [r for r in records if r.HasField("predict_log")]
    grpc_first, rest_first = predicts[0], predicts[20]
    assert to_ndarray(grpc_first.predict_log.request.inputs["x"]).tolist() == [0.0]
    assert to_ndarray(grpc_first.predict_log.response.outputs["y"]).tolist() == [1.0]
    assert to_ndarray(rest_first.predict_log.request.inputs["x"]).tolist() == [100.0]
    assert to_ndarray(rest_first.predict_log.response.outputs["y"]).tolist() == [201.0]
    assert grpc_first.log_metadata.model_spec.name == "every"
    assert grpc_first.log_metadata.model_spec.version.value == 1
    assert grpc_first.log_metadata.sampling_config.sampling_rate == 1.0
    assert grpc_first.log_metadata.timestamp_secs > 0
    regress = next(r for r in records if r.HasField("regress_log")).regress_log
    assert regress.request.model_spec.version.value == 1
    assert regress.response.result.regressions[0].value == pytest.approx(5.0)

    # The bytes metric is what the files hold (TFRecord framing included).
    on_disk = sum(Path(p).stat().st_size for p in log_files([str(log_server.log_dir / "every")]))
    assert log_metric(log_server, "bytes", model_name="every") == on_disk


def test_rate_tenth_logs_a_binomial_share(log_server):
    stub = log_server.prediction_stub()
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda i: stub.Predict(predict("tenth", [float(i)]), timeout=30),
                range(SAMPLED_REQUESTS),
            )
        )
    sampled = wait_caught_up(log_server, "tenth")
    mean = SAMPLED_REQUESTS * SAMPLED_RATE
    sigma = math.sqrt(SAMPLED_REQUESTS * SAMPLED_RATE * (1 - SAMPLED_RATE))
    assert mean - 6 * sigma <= sampled <= mean + 6 * sigma  # 43..157: p(outside) ~ 2e-9
    # The default prefix is the model name, in --request_log_dir.
    records = records_at(log_server.log_dir / "tenth")
    assert len(records) == sampled
    assert log_metric(log_server, "dropped", model_name="tenth", reason="queue_full") == 0
    assert all(r.log_metadata.sampling_config.sampling_rate == pytest.approx(0.1) for r in records)


def test_model_without_logging_config_writes_nothing(log_server):
    log_server.prediction_stub().Predict(predict("quiet", [1.0]), timeout=10)
    assert log_metric(log_server, "sampled", model_name="quiet") == 0
    assert not list(log_server.log_dir.glob("quiet*"))


def test_unwritable_log_never_fails_a_client(log_server):
    stub = log_server.prediction_stub()
    failures = 0
    for i in range(30):
        try:
            stub.Predict(predict("unwritable", [float(i)]), timeout=10)
        except grpc.RpcError:
            failures += 1
        response = requests.post(
            f"{log_server.rest}/v1/models/unwritable:predict", json={"instances": [1.0]}, timeout=10
        )
        failures += response.status_code != 200
    assert failures == 0
    assert wait_caught_up(log_server, "unwritable") == 60
    assert log_metric(log_server, "dropped", model_name="unwritable", reason="write_error") == 60
    assert log_metric(log_server, "records", model_name="unwritable") == 0
    assert "cannot write" in log_server.log() and "a-file/log" in log_server.log()


def test_bad_logging_config_is_refused_whole(log_server):
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((log_server.root / "models.config").read_text(), config)
    config.model_config_list.config[0].logging_config.sampling_config.sampling_rate = 1.5
    request = model_management_pb2.ReloadConfigRequest(config=config)
    with pytest.raises(grpc.RpcError) as info:
        log_server.model_stub().HandleReloadConfigRequest(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "logging_config of model every: sampling_rate must be in [0, 1]" in info.value.details()

    config.model_config_list.config[0].logging_config.sampling_config.sampling_rate = 1.0
    config.model_config_list.config[0].logging_config.log_collector_config.type = "kafka"
    request = model_management_pb2.ReloadConfigRequest(config=config)
    with pytest.raises(grpc.RpcError) as info:
        log_server.model_stub().HandleReloadConfigRequest(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Cannot find LogCollector::Factory for type: 'kafka'" in info.value.details()


def test_log_becomes_the_next_versions_warmup(log_server, tmp_path):
    stub = log_server.prediction_stub()
    for i in range(7):
        stub.Predict(predict("counting", [float(i), 1.0]), timeout=10)
    assert wait_caught_up(log_server, "counting") == 7

    # The next version: a copy of the model plus the log as its warmup file, staged
    # outside the base path and moved in whole.
    staging = tmp_path / "2"
    shutil.copytree(log_server.root / "counting" / "1", staging)
    shutil.rmtree(staging / "assets.extra", ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "tfmodel_server.servables.tensorflow.log_to_warmup",
        str(log_server.log_dir / "counting" / "log"),
        f"--version_dir={staging}",
        "--max_records=5",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "wrote 5 warmup records" in done.stdout
    warmup = read_warmup_records(staging)
    assert [to_ndarray(r.predict_log.request.inputs["x"]).tolist() for r in warmup] == [
        [float(i), 1.0] for i in range(5)
    ]
    assert not warmup[0].predict_log.HasField("response")
    shutil.move(staging, log_server.root / "counting" / "2")

    log_server.wait_versions("counting", {2: "AVAILABLE"}, timeout=60)
    # The counting model adds one to a variable per serving_default run: version 2
    # ran its five warmup records before it became AVAILABLE, and nothing else.
    peek = predict_pb2.PredictRequest()
    peek.model_spec.name = "counting"
    peek.model_spec.version.value = 2
    peek.model_spec.signature_name = "peek"
    peek.inputs["dummy"].CopyFrom(to_tensor_proto(np.zeros(1, np.float32)))
    calls = stub.Predict(peek, timeout=10).outputs["calls"]
    assert int(to_ndarray(calls)) == 5


def test_log_to_warmup_refuses_a_log_with_nothing_to_replay(tmp_path):
    command = [
        sys.executable,
        "-m",
        "tfmodel_server.servables.tensorflow.log_to_warmup",
        str(tmp_path / "nothing-here"),
        f"--output={tmp_path / 'warmup'}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "no request log files found" in done.stderr
    assert not (tmp_path / "warmup").exists()
