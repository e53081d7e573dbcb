"""Warmup replay against real SavedModels, standalone and as the manager's post-load hook."""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import text_format
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    predict_pb2,
    prediction_log_pb2,
    regression_pb2,
)
from tensorflow_serving.config import model_server_config_pb2
from tfmodel_server.codecs.tensor_proto import to_tensor_proto
from tfmodel_server.errors import ServingError
from tfmodel_server.monitoring.metrics import ServingMetrics
from tfmodel_server.servables.tensorflow.loader import load_saved_model
from tfmodel_server.servables.tensorflow.warmup import (
    MAX_NUM_RECORDS,
    make_warmup_hook,
    read_warmup_records,
    run_warmup,
    warmup_file,
    warmup_servable,
)

from tests.server.savedmodels import export_linear
from tests.server.stack import ServingStack


def _export_counting_model(path: Path) -> None:
    """serving_default: x f32[-1] -> y = 2x, and every call adds 1 to a variable;
    peek: dummy f32[-1] -> calls (how many serving_default runs happened)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, shape=[None], name="x")
        calls = v1.Variable(0, dtype=tf.int64, name="calls", use_resource=True)
        with tf.control_dependencies([calls.assign_add(1)]):
            y = tf.multiply(x, 2.0, name="y")
        dummy = v1.placeholder(tf.float32, shape=[None], name="dummy")
        with tf.control_dependencies([dummy]):
            seen = tf.identity(calls.read_value(), name="seen")
        info = v1.saved_model.utils.build_tensor_info
        build = v1.saved_model.signature_def_utils.build_signature_def
        method = "tensorflow/serving/predict"
        sigs = {
            "serving_default": build({"x": info(x)}, {"y": info(y)}, method),
            "peek": build({"dummy": info(dummy)}, {"calls": info(seen)}, method),
        }
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(
                session, ["serve"], signature_def_map=sigs, strip_default_attrs=True
            )
            builder.save()


_TEMPLATE: dict[str, Path] = {}


def counting_version(base: Path, version: int) -> Path:
    import shutil

    if "counting" not in _TEMPLATE:
        template = base.parent / "_counting_template"
        _export_counting_model(template)
        _TEMPLATE["counting"] = template
    target = base / str(version)
    shutil.copytree(_TEMPLATE["counting"], target)
    return target


def predict_log(x: list[float], signature: str = "", alias: str = "x"):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "ignored-by-warmup"
    request.model_spec.signature_name = signature
    request.inputs[alias].CopyFrom(to_tensor_proto(np.asarray(x, np.float32)))
    return prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request)
    )


def write_warmup(version_dir: Path, logs) -> Path:
    import tensorflow as tf

    path = Path(warmup_file(version_dir))
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for entry in logs:
            writer.write(entry if isinstance(entry, bytes) else entry.SerializeToString())
    return path


def calls_of(servable) -> int:
    out = servable.signature("peek").run({"dummy": np.zeros(1, np.float32)})
    return int(out["calls"])


# ---- reading -------------------------------------------------------------------


def test_no_warmup_file_means_no_records(tmp_path):
    assert read_warmup_records(tmp_path) == []


def test_reads_every_record_in_order(tmp_path):
    logs = [predict_log([float(i)]) for i in range(5)]
    write_warmup(tmp_path, logs)
    records = read_warmup_records(tmp_path)
    assert records == logs


def test_max_records_is_accepted_one_more_is_an_error(tmp_path):
    ok_dir, big_dir = tmp_path / "ok", tmp_path / "big"
    entry = predict_log([1.0])
    write_warmup(ok_dir, [entry] * MAX_NUM_RECORDS)
    assert len(read_warmup_records(ok_dir)) == MAX_NUM_RECORDS
    path = write_warmup(big_dir, [entry] * (MAX_NUM_RECORDS + 1))
    with pytest.raises(ServingError) as info:
        read_warmup_records(big_dir)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.message == (f"Number of warmup records exceeds the maximum (1000) at {path}")


def test_corrupt_tfrecord_is_data_loss(tmp_path):
    path = write_warmup(tmp_path, [predict_log([1.0]), predict_log([2.0])])
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # break the last record's CRC
    path.write_bytes(bytes(data))
    with pytest.raises(ServingError) as info:
        read_warmup_records(tmp_path)
    assert info.value.code == grpc.StatusCode.DATA_LOSS
    assert "TFRecord format" in info.value.message


def test_record_that_is_not_a_prediction_log_is_invalid(tmp_path):
    path = write_warmup(tmp_path, [b"\xff\xff\xff not a proto"])
    with pytest.raises(ServingError) as info:
        read_warmup_records(tmp_path)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "Failed to parse warmup record 0" in info.value.message
    assert str(path) in info.value.message


# ---- replay ---------------------------------------------------------------------


@pytest.fixture()
def counting(tmp_path):
    version_dir = counting_version(tmp_path / "counting", 1)
    servable = load_saved_model("counting", 1, str(version_dir))
    yield servable
    servable.unload()


def test_each_record_is_replayed_num_iterations_times(counting):
    records = [predict_log([1.0, 2.0]), predict_log([3.0])]
    run_warmup(counting, records, iterations=3)
    assert calls_of(counting) == 6


def test_warmup_servable_reads_replays_and_records_metric(counting):
    write_warmup(Path(counting.path), [predict_log([1.0])] * 4)
    metrics = ServingMetrics()
    assert warmup_servable(counting, iterations=2, metrics=metrics) == 4
    assert calls_of(counting) == 8
    assert metrics.warmup_latency.count(counting.path, "OK") == 1
    assert b":tensorflow:serving:model_warmup_latency_bucket" in metrics.render()


@pytest.mark.parametrize(
    ("record", "code", "text"),
    [
        (predict_log([1.0], alias="nope"), grpc.StatusCode.INVALID_ARGUMENT, "nope"),
        (
            predict_log([1.0], signature="missing"),
            grpc.StatusCode.FAILED_PRECONDITION,
            'Serving signature key "missing" not found.',
        ),
        (
            prediction_log_pb2.PredictionLog(session_run_log=prediction_log_pb2.SessionRunLog()),
            grpc.StatusCode.UNIMPLEMENTED,
            "Unsupported log_type for warmup: session_run_log",
        ),
        (
            prediction_log_pb2.PredictionLog(
                multi_inference_log=prediction_log_pb2.MultiInferenceLog(
                    request=inference_pb2.MultiInferenceRequest()
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Found no inference tasks in request.",
        ),
    ],
)
def test_failing_record_raises_with_its_status(counting, record, code, text):
    with pytest.raises(ServingError) as info:
        run_warmup(counting, [predict_log([1.0]), record], iterations=1)
    assert info.value.code == code
    assert text in info.value.message
    assert "Warmup record 1 failed for counting version 1" in info.value.message


def test_failed_warmup_is_recorded_with_its_status(counting):
    write_warmup(Path(counting.path), [predict_log([1.0], alias="nope")])
    metrics = ServingMetrics()
    with pytest.raises(ServingError):
        warmup_servable(counting, metrics=metrics)
    page = metrics.render().decode()
    assert 'status="INVALID_ARGUMENT: Warmup record 0 failed' in page


def test_classify_regress_and_multi_inference_logs(tmp_path):
    import tensorflow as tf

    version_dir = export_linear(tmp_path / "linear", 1, a=2.0, b=1.0)
    servable = load_saved_model("linear", 1, str(version_dir))
    try:
        example = tf.train.Example(
            features=tf.train.Features(
                feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=[3.0]))}
            )
        )
        classify = classification_pb2.ClassificationRequest()
        classify.model_spec.signature_name = "classify_x_to_y"
        classify.input.example_list.examples.add().CopyFrom(example)
        regress = regression_pb2.RegressionRequest()
        regress.model_spec.signature_name = "regress_x_to_y"
        regress.input.CopyFrom(classify.input)
        multi = inference_pb2.MultiInferenceRequest()
        multi.input.CopyFrom(classify.input)
        for key, method in (("regress_x_to_y", "regress"), ("classify_x_to_y", "classify")):
            task = multi.tasks.add()
            task.model_spec.name = "linear"  # MultiInference requires it, as in TF Serving
            task.model_spec.signature_name = key
            task.method_name = f"tensorflow/serving/{method}"
        records = [
            prediction_log_pb2.PredictionLog(
                classify_log=prediction_log_pb2.ClassifyLog(request=classify)
            ),
            prediction_log_pb2.PredictionLog(
                regress_log=prediction_log_pb2.RegressLog(request=regress)
            ),
            prediction_log_pb2.PredictionLog(
                multi_inference_log=prediction_log_pb2.MultiInferenceLog(request=multi)
            ),
        ]
        run_warmup(servable, records, iterations=2)
        # A classify request on a regression signature fails the warmup.
        wrong = classification_pb2.ClassificationRequest()
        wrong.CopyFrom(classify)
        wrong.model_spec.signature_name = "regress_x_to_y"
        bad = prediction_log_pb2.PredictionLog(
            classify_log=prediction_log_pb2.ClassifyLog(request=wrong)
        )
        with pytest.raises(ServingError) as info:
            run_warmup(servable, [bad])
        assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
        # MultiInference tasks must name the model.
        multi.tasks[0].model_spec.name = ""
        nameless = prediction_log_pb2.PredictionLog(
            multi_inference_log=prediction_log_pb2.MultiInferenceLog(request=multi)
        )
        with pytest.raises(ServingError, match="empty model name"):
            run_warmup(servable, [nameless])
    finally:
        servable.unload()


# ---- through the manager --------------------------------------------------------


def _config(name: str, base: Path) -> model_server_config_pb2.ModelServerConfig:
    return text_format.Parse(
        f'model_config_list {{ config {{ name: "{name}" base_path: "{base}" '
        f'model_platform: "tensorflow" }} }}',
        model_server_config_pb2.ModelServerConfig(),
    )


async def test_manager_runs_warmup_before_available_and_failing_warmup_fails_load(tmp_path):
    good_base, bad_base = tmp_path / "good", tmp_path / "bad"
    good_dir = counting_version(good_base, 1)
    write_warmup(good_dir, [predict_log([1.0]), predict_log([2.0, 3.0]), predict_log([4.0])])
    bad_dir = counting_version(bad_base, 1)
    write_warmup(bad_dir, [predict_log([1.0]), predict_log([1.0], alias="wrong")])

    metrics = ServingMetrics()
    seen_states: list[str] = []

    def hook(servable):
        # Still loading while warmup runs: never served before it finishes.
        seen_states.extend(s.state for s in manager.model_status(servable.name))
        make_warmup_hook(iterations=2, metrics=metrics)(servable)

    manager = ServingStack(
        file_system_poll_wait_seconds=0,
        max_num_load_retries=0,
        post_load_hook=hook,
    )
    await manager.start()
    try:
        await manager.apply_config(_config("good", good_base), timeout=60)
        [status] = manager.model_status("good")
        assert status.state == "AVAILABLE"
        assert seen_states == ["LOADING"]
        with manager.get_handle("good") as handle:
            # 3 records x 2 iterations, all done by the time the version is AVAILABLE.
            assert calls_of(handle.servable) == 6
        assert metrics.warmup_latency.count(os.fspath(good_dir), "OK") == 1

        await manager.apply_config(_config("bad", bad_base), timeout=60)
        [status] = manager.model_status("bad")
        assert status.state == "END"
        assert status.error_code == grpc.StatusCode.INVALID_ARGUMENT
        assert "Warmup record 1 failed" in status.error_message
        with pytest.raises(ServingError) as info:
            manager.get_handle("bad")
        assert info.value.code == grpc.StatusCode.NOT_FOUND
    finally:
        await manager.stop()
