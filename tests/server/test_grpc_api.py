"""PredictionService / ModelService through the official stubs on a real channel."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    predict_pb2,
    regression_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from tests.server.conftest import LINEAR_V1, LINEAR_V2


def predict_request(model: str, x, **spec) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.asarray(x, dtype=np.float32)))
    return request


def y_of(response: predict_pb2.PredictResponse) -> np.ndarray:
    return tf.make_ndarray(response.outputs["y"])


def rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=10)
    return info.value


def test_predict_defaults_to_latest_version(api_server):
    response = api_server.prediction_stub().Predict(
        predict_request("linear", [1.0, 2.0]), timeout=10
    )
    a, b = LINEAR_V2
    np.testing.assert_allclose(y_of(response), [a * 1 + b, a * 2 + b])
    assert response.model_spec.name == "linear"
    assert response.model_spec.version.value == 2
    assert response.model_spec.signature_name == "serving_default"
    # TF Serving's default: typed fields, not tensor_content (mnist_client.py reads float_val).
    assert not response.outputs["y"].tensor_content
    np.testing.assert_allclose(response.outputs["y"].float_val, [a * 1 + b, a * 2 + b])
    assert response.outputs["y"].dtype == tf.float32.as_datatype_enum


@pytest.mark.parametrize(
    ("spec", "expected_version", "coeffs"),
    [
        ({"version": 1}, 1, LINEAR_V1),
        ({"version": 2}, 2, LINEAR_V2),
        ({"version_label": "stable"}, 1, LINEAR_V1),
        ({"version_label": "canary"}, 2, LINEAR_V2),
    ],
)
def test_predict_by_version_and_label(api_server, spec, expected_version, coeffs):
    response = api_server.prediction_stub().Predict(
        predict_request("linear", [3.0], **spec), timeout=10
    )
    assert response.model_spec.version.value == expected_version
    np.testing.assert_allclose(y_of(response), [coeffs[0] * 3 + coeffs[1]])


def test_predict_accepts_typed_val_fields(api_server):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "linear"
    request.model_spec.version.value = 1
    tensor = request.inputs["x"]
    tensor.dtype = tf.float32.as_datatype_enum
    tensor.tensor_shape.dim.add().size = 3
    tensor.float_val.extend([1.0, 2.0, 4.0])
    response = api_server.prediction_stub().Predict(request, timeout=10)
    np.testing.assert_allclose(y_of(response), [1.0, 2.0, 4.0])


def test_predict_multi_input_with_strings(api_server):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "multi"
    request.inputs["a"].CopyFrom(tf.make_tensor_proto(np.array([[1, 2], [3, 4]], np.float32)))
    request.inputs["b"].CopyFrom(tf.make_tensor_proto(np.array([10, 20], np.int64)))
    request.inputs["s"].CopyFrom(tf.make_tensor_proto([b"foo", b"bar"]))
    response = api_server.prediction_stub().Predict(request, timeout=10)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["sum"]), [13.0, 27.0])
    assert list(response.outputs["s_out"].string_val) == [b"foo_out", b"bar_out"]
    assert list(response.outputs["s_bytes"].string_val) == [b"foo", b"bar"]


def test_output_filter(api_server):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "multi"
    request.inputs["a"].CopyFrom(tf.make_tensor_proto(np.array([[1, 2]], np.float32)))
    request.inputs["b"].CopyFrom(tf.make_tensor_proto(np.array([1], np.int64)))
    request.inputs["s"].CopyFrom(tf.make_tensor_proto([b"x"]))
    request.output_filter.append("sum")
    response = api_server.prediction_stub().Predict(request, timeout=10)
    assert set(response.outputs) == {"sum"}

    request.output_filter[:] = ["nope"]
    error = rpc_error(api_server.prediction_stub().Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "nope" in error.details()


def test_predict_errors(api_server):
    stub = api_server.prediction_stub()
    error = rpc_error(stub.Predict, predict_request("", [1.0]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "ModelSpec has no name specified."

    error = rpc_error(stub.Predict, predict_request("missing", [1.0]))
    assert error.code() == grpc.StatusCode.NOT_FOUND

    error = rpc_error(stub.Predict, predict_request("linear", [1.0], version=7))
    assert error.code() == grpc.StatusCode.NOT_FOUND

    error = rpc_error(stub.Predict, predict_request("linear", [1.0], version_label="nolabel"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "Unrecognized servable version label: nolabel"

    error = rpc_error(stub.Predict, predict_request("linear", [1.0], signature_name="bogus"))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "bogus" in error.details()

    request = predict_request("linear", [1.0])
    request.inputs["extra"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
    error = rpc_error(stub.Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "extra" in error.details()

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "linear"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1], np.int32)))
    error = rpc_error(stub.Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "x" in error.details()

    # No static-shape check, as TF Serving's predict_util: the tensor is fed and the
    # graph decides (y = a*x + b broadcasts a [2,2] input).
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "linear"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.ones((2, 2), np.float32)))
    a, b = LINEAR_V2
    np.testing.assert_allclose(y_of(stub.Predict(request, timeout=10)), np.full((2, 2), a + b))


def test_malformed_tensor_is_invalid_argument(api_server):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "linear"
    tensor = request.inputs["x"]
    tensor.dtype = tf.float32.as_datatype_enum
    tensor.tensor_shape.dim.add().size = 4
    tensor.tensor_content = b"\x00" * 7  # not 4 floats
    error = rpc_error(api_server.prediction_stub().Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    # ...and the server is still fine afterwards.
    api_server.prediction_stub().Predict(predict_request("linear", [1.0]), timeout=10)


def _example(x: float):
    return tf.train.Example(
        features=tf.train.Features(
            feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=[x]))}
        )
    )


def test_classify_and_regress(api_server):
    stub = api_server.prediction_stub()
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "linear"
    request.model_spec.version_label = "stable"
    request.model_spec.signature_name = "regress_x_to_y"
    request.input.example_list.examples.extend([_example(1.0), _example(5.0)])
    response = stub.Regress(request, timeout=10)
    assert [r.value for r in response.result.regressions] == pytest.approx([1.0, 5.0])
    assert response.model_spec.version.value == 1

    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "linear"
    request.model_spec.signature_name = "classify_x_to_y"
    request.input.example_list.examples.extend([_example(10.0)])
    response = stub.Classify(request, timeout=10)
    classes = response.result.classifications[0].classes
    assert [c.label for c in classes] == ["negative", "positive"]
    assert classes[1].score > 0.99

    # A predict signature cannot classify.
    request.model_spec.signature_name = "serving_default"
    error = rpc_error(stub.Classify, request)
    assert error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION)


def test_multi_inference(api_server):
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (
        ("classify_x_to_y", "tensorflow/serving/classify"),
        ("regress_x_to_y", "tensorflow/serving/regress"),
    ):
        task = request.tasks.add()
        task.model_spec.name = "linear"
        task.model_spec.version.value = 2
        task.model_spec.signature_name = signature
        task.method_name = method
    request.input.example_list.examples.extend([_example(2.0)])
    response = api_server.prediction_stub().MultiInference(request, timeout=10)
    assert len(response.results) == 2
    assert response.results[0].HasField("classification_result")
    assert response.results[1].regression_result.regressions[0].value == pytest.approx(5.0)

    request.tasks[1].model_spec.name = "multi"
    error = rpc_error(api_server.prediction_stub().MultiInference, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_get_model_metadata(api_server):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "linear"
    response = api_server.prediction_stub().GetModelMetadata(request, timeout=10)
    assert response.model_spec.version.value == 2
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    assert set(signature_map.signature_def) == {
        "serving_default",
        "regress_x_to_y",
        "classify_x_to_y",
    }
    assert (
        signature_map.signature_def["serving_default"].inputs["x"].dtype
        == tf.float32.as_datatype_enum
    )

    request.metadata_field[:] = ["bogus"]
    error = rpc_error(api_server.prediction_stub().GetModelMetadata, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_get_model_status(api_server):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "linear"
    response = api_server.model_stub().GetModelStatus(request, timeout=10)
    states = {s.version: s.state for s in response.model_version_status}
    assert states == {
        1: get_model_status_pb2.ModelVersionStatus.AVAILABLE,
        2: get_model_status_pb2.ModelVersionStatus.AVAILABLE,
    }
    assert all(s.status.error_code == 0 for s in response.model_version_status)

    request.model_spec.version.value = 1
    response = api_server.model_stub().GetModelStatus(request, timeout=10)
    assert [s.version for s in response.model_version_status] == [1]

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "nope"
    error = rpc_error(api_server.model_stub().GetModelStatus, request)
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_reload_config_rejects_label_on_unavailable_version(api_server):
    root = api_server.root
    request = model_management_pb2.ReloadConfigRequest()
    config = request.config.model_config_list.config.add()
    config.name = "linear"
    config.base_path = f"{root}/linear"
    config.model_platform = "tensorflow"
    config.model_version_policy.specific.versions.extend([1, 2])
    config.version_labels["stable"] = 1
    config.version_labels["canary"] = 9  # not on disk, never available
    multi = request.config.model_config_list.config.add()
    multi.name = "multi"
    multi.base_path = f"{root}/multi"
    error = rpc_error(api_server.model_stub().HandleReloadConfigRequest, request)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not currently available" in error.details()
    # The previous labels stay in force.
    response = api_server.prediction_stub().Predict(
        predict_request("linear", [1.0], version_label="canary"), timeout=10
    )
    assert response.model_spec.version.value == 2


def test_reload_config_rejects_invalid_config(api_server):
    request = model_management_pb2.ReloadConfigRequest()
    config = request.config.model_config_list.config.add()
    config.name = "linear"
    config.base_path = "relative/path"
    error = rpc_error(api_server.model_stub().HandleReloadConfigRequest, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_health_service(api_server):
    stub = health_pb2_grpc.HealthStub(api_server.channel())
    response = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reload_config_swaps_models(tmp_path):
    """HandleReloadConfigRequest replaces the whole config: add one model, drop another."""
    from tests.server.savedmodels import export_linear
    from tests.server.serverproc import ServerProcess

    export_linear(tmp_path / "a", 1, 1.0, 0.0)
    export_linear(tmp_path / "b", 1, 3.0, 0.0)
    with ServerProcess("--model_name=a", f"--model_base_path={tmp_path / 'a'}") as server:
        server.wait_ready()
        request = model_management_pb2.ReloadConfigRequest(
            config=model_server_config_pb2.ModelServerConfig()
        )
        config = request.config.model_config_list.config.add()
        config.name = "b"
        config.base_path = str(tmp_path / "b")
        config.model_platform = "tensorflow"
        server.model_stub().HandleReloadConfigRequest(request, timeout=60)
        response = server.prediction_stub().Predict(predict_request("b", [2.0]), timeout=10)
        np.testing.assert_allclose(y_of(response), [6.0])
        server.wait_versions("a", {1: "END"})
        error = rpc_error(server.prediction_stub().Predict, predict_request("a", [1.0]))
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert server.stop() == 0
