"""The request logger's pieces on real files: rotation, the bounded queue, config rules."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from google.protobuf import text_format
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2
from tfmodel_server.errors import ServingError
from tfmodel_server.inference.request_logging import (
    RequestLogger,
    RequestLogOptions,
    Spec,
    plans_from_config,
    predict_record,
)
from tfmodel_server.monitoring.request_log_metrics import RequestLogStats
from tfmodel_server.servables.tensorflow.prediction_log_files import (
    RECORD_FRAMING_BYTES,
    RotatingRecordWriter,
    log_files,
    read_records,
)

SPEC = Spec("m", 1, None, "serving_default")


def record(i: int) -> prediction_log_pb2.PredictionLog:
    x = np.full(8, i, np.float32)
    return predict_record(SPEC, SPEC, {"x": x}, (), {"y": x * 2})


def config(text: str) -> model_server_config_pb2.ModelServerConfig:
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def test_writer_rotates_by_size_and_keeps_every_record_in_order(tmp_path):
    payloads = [record(i).SerializeToString() for i in range(20)]
    size = len(payloads[0]) + RECORD_FRAMING_BYTES
    writer = RotatingRecordWriter(str(tmp_path / "m" / "log"), max_file_bytes=3 * size)
    for data in payloads:
        assert writer.write(data) == size
    writer.close()
    files = log_files([str(tmp_path / "m" / "log")])
    assert len(files) == 7  # 3 records a file
    assert [len(list(read_records(f))) for f in files] == [3] * 6 + [2]
    assert [data for f in files for data in read_records(f)] == payloads
    assert log_files([str(tmp_path)]) == files  # a directory: its files, in name order


def test_full_queue_drops_and_counts_and_never_blocks(tmp_path):
    stats = RequestLogStats()
    logger = RequestLogger(RequestLogOptions(str(tmp_path), queue_records=3), stats)
    plan = plans_from_config(
        config(
            'model_config_list { config { name: "m" base_path: "/x" '
            "logging_config { sampling_config { sampling_rate: 1.0 } } } }"
        ),
        logger.options,
    )["m"]
    # The writer thread is not started yet, so nothing drains the queue.
    accepted = [logger.submit(plan, SPEC, lambda i=i: record(i), 64) for i in range(5)]
    assert accepted == [True, True, True, False, False]
    assert stats.dropped.value("m", "queue_full") == 2
    logger.start()
    logger.close()
    assert stats.records.value("m") == 3
    assert stats.sampled.value("m") == 5
    written = [r for f in log_files([str(tmp_path / "m")]) for r in read_records(f)]
    assert [
        prediction_log_pb2.PredictionLog.FromString(r)
        .predict_log.request.inputs["x"]
        .tensor_content
        for r in written
    ] == [record(i).predict_log.request.inputs["x"].tensor_content for i in range(3)]


def test_queue_is_bounded_in_bytes_too(tmp_path):
    stats = RequestLogStats()
    logger = RequestLogger(RequestLogOptions(str(tmp_path), queue_bytes=100), stats)
    plans = plans_from_config(
        config(
            'model_config_list { config { name: "m" base_path: "/x" '
            "logging_config { sampling_config { sampling_rate: 1.0 } } } }"
        ),
        logger.options,
    )
    # One oversized record is taken when the queue is empty (else it could never be logged).
    assert logger.submit(plans["m"], SPEC, lambda: record(0), 500)
    assert not logger.submit(plans["m"], SPEC, lambda: record(1), 1)
    logger.close(timeout=0)
    assert stats.dropped.value("m", "shutdown") == 1  # never started: the queue is counted


@pytest.mark.parametrize(
    "logging_config, directory, message",
    [
        ("sampling_config { sampling_rate: -0.5 }", "/logs", "sampling_rate must be in [0, 1]"),
        (
            'log_collector_config { type: "kafka" }',
            "/logs",
            "Cannot find LogCollector::Factory for type: 'kafka'",
        ),
        (
            'sampling_config { sampling_rate: 1 } log_collector_config { filename_prefix: "rel" }',
            "",
            "filename_prefix 'rel' is not an absolute path and --request_log_dir is not set",
        ),
    ],
)
def test_bad_logging_config_names_the_model(logging_config, directory, message):
    text = f'model_config_list {{ config {{ name: "m" logging_config {{ {logging_config} }} }} }}'
    with pytest.raises(ServingError) as info:
        plans_from_config(config(text), RequestLogOptions(directory))
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "logging_config of model m: " + message in info.value.message


def test_prefixes_rates_and_models_without_logging():
    text = """model_config_list {
      config { name: "a" logging_config { sampling_config { sampling_rate: 0.25 } } }
      config { name: "b" logging_config { sampling_config { sampling_rate: 1 }
                                          log_collector_config { filename_prefix: "/abs/b" } } }
      config { name: "off" logging_config { sampling_config { sampling_rate: 0 } } }
      config { name: "none" }
    }"""
    plans = plans_from_config(config(text), RequestLogOptions("/logs"))
    assert sorted(plans) == ["a", "b"]
    assert (plans["a"].prefix, plans["a"].sampling_rate) == ("/logs/a", 0.25)
    assert plans["b"].prefix == "/abs/b"
