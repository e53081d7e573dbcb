"""TFLite models (--prefer_tflite_model) through a real server and the TfLiteSession.

TF Serving's own model.tflite files (tests/server/testdata/tf_serving) plus a
two-input model converted here with tf.lite.TFLiteConverter.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2
from tfmodel_server.servables.tensorflow.loader import LoaderOptions, SavedModelLoader
from tfmodel_server.servables.tensorflow.saved_model_files import incomplete_reason
from tfmodel_server.servables.tensorflow.tflite import (
    TfLitePoolOptions,
    load_tflite_session,
    read_signature_defs_metadata,
)

from tests.server.serverproc import ServerProcess
from tests.server.tfs_testdata import VENDORED

PLAIN = VENDORED / "saved_model_half_plus_two_tflite"
WITH_SIGDEF = VENDORED / "saved_model_half_plus_two_tflite_with_sigdef"

# f(a: f32[None, 2], b: i32[None]) -> sum(a, axis=1) * b, converted without signatures
# metadata: TF Serving then generates serving_default from the tensor names
# (inputs a and b; the converter names the output tensor "Identity").
_CONVERT = """
import sys, tensorflow as tf
@tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name='a'),
                              tf.TensorSpec([None], tf.int32, name='b')])
def f(a, b):
    return {'out': tf.reduce_sum(a, axis=1) * tf.cast(b, tf.float32)}
converter = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
open(sys.argv[1], 'wb').write(converter.convert())
"""


@pytest.fixture(scope="module")
def two_input_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("two_input")
    (base / "7").mkdir()
    subprocess.run(
        [sys.executable, "-c", _CONVERT, str(base / "7" / "model.tflite")],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return base


def _session(base: Path, pools: int = 1, per_pool: int = 1):
    version_dir = next(p for p in base.iterdir() if p.name.isdigit())
    return load_tflite_session(str(version_dir), TfLitePoolOptions(pools, per_pool))


def test_signature_defs_come_from_the_models_metadata():
    model = (WITH_SIGDEF / "00000123" / "model.tflite").read_bytes()
    stored = read_signature_defs_metadata(model)
    assert list(stored) == ["serving_default"]
    assert stored["serving_default"].inputs["x"].name == "tflite_input:0"
    session = _session(WITH_SIGDEF)
    # FixTfLiteTensorName: "tflite_input:0" is the TFLite tensor "tflite_input".
    assert session.signature_defs["serving_default"].inputs["x"].name == "tflite_input"
    assert session.signature_defs["serving_default"].outputs["y"].name == "y"


def test_without_metadata_serving_default_is_generated_from_the_tensors():
    assert read_signature_defs_metadata((PLAIN / "00000123" / "model.tflite").read_bytes()) == {}
    signature = _session(PLAIN).signature_defs["serving_default"]
    assert signature.method_name == "tensorflow/serving/predict"
    assert list(signature.inputs) == ["x"] and list(signature.outputs) == ["y"]
    assert signature.inputs["x"].dtype == types_pb2.DT_FLOAT
    assert [d.size for d in signature.inputs["x"].tensor_shape.dim] == [1, 1]


def test_pool_size_and_the_callable_resize_inputs():
    session = _session(PLAIN, pools=3)
    assert session.pool_size == 3
    assert session.max_execution_batch_size is None
    from tensorflow.core.protobuf import config_pb2

    run = session._make_callable_from_options(config_pb2.CallableOptions(feed=["x:0"], fetch=["y"]))
    (out,) = run(np.array([[1.0], [2.0], [3.0]], np.float32))
    np.testing.assert_array_equal(out, [[2.5], [3.0], [3.5]])
    (out,) = run(np.array([4.0], np.float32))  # a different shape again
    np.testing.assert_array_equal(out, [4.0])


def test_interpreters_per_pool_split_a_large_request(two_input_model):
    # ceil(500 / 250) = 2 rows per execution batch: 5 rows run as 2 + 2 + 1.
    session = _session(two_input_model, pools=2, per_pool=250)
    assert session.max_execution_batch_size == 2
    chunks = session._split([(0, np.zeros((5, 2), np.float32)), (1, np.zeros(5, np.int32))])
    assert [c[0][1].shape[0] for c in chunks] == [2, 2, 1]
    signature = session.signature_defs["serving_default"]
    a_name = signature.inputs["a"].name
    b_name = signature.inputs["b"].name
    from tensorflow.core.protobuf import config_pb2

    run = session._make_callable_from_options(
        config_pb2.CallableOptions(
            feed=[a_name, b_name], fetch=[signature.outputs["Identity"].name]
        )
    )
    a = np.arange(10, dtype=np.float32).reshape(5, 2)
    b = np.array([1, 2, 3, 4, 5], np.int32)
    (out,) = run(a, b)
    np.testing.assert_array_equal(out, a.sum(axis=1) * b)


def test_a_tflite_only_dir_is_complete_only_when_tflite_is_preferred():
    version_dir = str(PLAIN / "00000123")
    assert incomplete_reason(version_dir) is not None
    assert incomplete_reason(version_dir, prefer_tflite_model=True) is None


def test_loader_reports_a_corrupt_model(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "model.tflite").write_bytes(b"not a flatbuffer at all")
    loader = SavedModelLoader(LoaderOptions(prefer_tflite_model=True))
    with pytest.raises(Exception) as raised:
        loader.load("m", 1, str(tmp_path / "1"))
    assert "TFLite model at" in str(raised.value)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, two_input_model):
    root = tmp_path_factory.mktemp("tflite_models")
    shutil.copytree(WITH_SIGDEF, root / "half")
    config = root / "models.config"
    config.write_text(
        "model_config_list {\n"
        f'  config {{ name: "half" base_path: "{root / "half"}" model_platform: "tensorflow" }}\n'
        f'  config {{ name: "two" base_path: "{two_input_model}" model_platform: "tensorflow" }}\n'
        "}\n"
    )
    with ServerProcess(
        f"--model_config_file={config}",
        "--prefer_tflite_model=true",
        "--num_tflite_pools=2",
    ) as proc:
        proc.wait_ready()
        yield proc


def test_grpc_predict_metadata_and_status(server):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half"
    request.inputs["x"].CopyFrom(_float_tensor([2.0, 4.0], [2, 1]))
    response = server.prediction_stub().Predict(request, timeout=30)
    assert list(response.outputs["y"].float_val) == [3.0, 4.0]
    assert response.model_spec.version.value == 123
    assert response.model_spec.signature_name == "serving_default"

    metadata = get_model_metadata_pb2.GetModelMetadataRequest()
    metadata.model_spec.name = "half"
    metadata.metadata_field.append("signature_def")
    result = server.prediction_stub().GetModelMetadata(metadata, timeout=30)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    result.metadata["signature_def"].Unpack(signature_map)
    assert signature_map.signature_def["serving_default"].inputs["x"].name == "tflite_input"
    assert server.version_states("half") == {123: "AVAILABLE"}


def _float_tensor(values, shape):
    import tensorflow as tf

    return tf.make_tensor_proto(np.array(values, np.float32).reshape(shape))


def test_grpc_errors_match_saved_models(server):
    stub = server.prediction_stub()
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half"
    request.inputs["x"].dtype = types_pb2.DT_INT32
    request.inputs["x"].int_val.append(2)
    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(request, timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "DT_FLOAT" in raised.value.details()

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half"
    request.model_spec.signature_name = "nope"
    request.inputs["x"].CopyFrom(_float_tensor([2.0], [1]))
    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(request, timeout=30)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "two"
    # 2 rows of a against 3 of b: the resized model cannot be prepared.
    request.inputs["a"].CopyFrom(_float_tensor([1.0, 2.0, 3.0, 4.0], [2, 2]))
    request.inputs["b"].dtype = types_pb2.DT_INT32
    request.inputs["b"].int_val.extend([1, 2, 3])
    request.inputs["b"].tensor_shape.dim.add().size = 3
    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(request, timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Failed to allocate tensors" in raised.value.details()
    for _ in range(3):  # every pooled interpreter recovers
        request.inputs["b"].int_val.pop()
        request.inputs["b"].tensor_shape.dim[0].size = 2
        response = stub.Predict(request, timeout=30)
        assert list(response.outputs["Identity"].float_val) == [3.0, 14.0]
        request.inputs["b"].int_val.append(3)
        request.inputs["b"].tensor_shape.dim[0].size = 3


def test_rest_predict_row_and_columnar_and_errors(server):
    base = f"{server.rest}/v1/models"
    response = requests.post(f"{base}/half:predict", json={"instances": [2.0, 3.0]}, timeout=30)
    assert response.json() == {"predictions": [3.0, 3.5]}
    response = requests.post(
        f"{base}/two:predict",
        json={"inputs": {"a": [[1.0, 2.0], [3.0, 4.0]], "b": [2, 3]}},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"outputs": [6.0, 21.0]}
    response = requests.post(f"{base}/half:predict", json={"instances": ["a"]}, timeout=30)
    assert response.status_code == 400
    assert "error" in response.json()
    status = requests.get(f"{base}/two", timeout=30).json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
