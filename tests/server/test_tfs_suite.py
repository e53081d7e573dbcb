"""TF Serving's own server tests, ported case by case against tfmodel-server.

Source: tensorflow_serving/model_servers/tensorflow_model_server_test.py and
test_util/tensorflow_model_server_test_base.py. Each test below keeps the
upstream name (snake-cased), request and expected values; the servers are
started with the command line the base class's RunServer builds
(--port, --rest_api_port, --rest_api_timeout_in_ms=5000, --grpc_socket_path,
then --model_name/--model_base_path or --model_config_file, --prefer_tflite_model
for model_type tflite, ..., --grpc_channel_arguments ending in
grpc.so_reuseaddr=1), one server per
distinct argument set, and waited for the way WaitForServerReady waits: until a
Predict for a missing model is answered with an error naming a "Servable".
After that wait the tests call at once, with no retry: the ports must open only
when the initial models are loaded, as in tensorflow_model_server.

Every upstream case is here except _TestBadModel and
_TestBadModelUpconvertedSavedModel, which are disabled upstream (leading
underscore). The TFLite cases use TF Serving's own model.tflite files
(tests/server/testdata/tf_serving); test_tf_text uses the model TF Text's
save_models.py generates (tests/server/tf_text_model.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import requests
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tests.server.serverproc import ServerProcess
from tests.server.tfs_testdata import VERSION, TfsTestData

RPC_TIMEOUT = 20.0

HTTP_REST_TIMEOUT_MS = 5000
WAIT_FOR_SERVER_READY_INT_SECS = 60


@pytest.fixture(scope="module")
def testdata(tmp_path_factory: pytest.TempPathFactory) -> TfsTestData:
    return TfsTestData(tmp_path_factory.mktemp("testdata")).build()


class Servers:
    """RunServer: one server per distinct argument set, reused across tests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._servers: dict[tuple, ServerProcess] = {}

    def run(
        self,
        model_name: str | None,
        model_path: Path | str | None,
        model_config_file: Path | None = None,
        monitoring_config_file: Path | None = None,
        grpc_channel_arguments: str = "",
        wait_for_server_ready: bool = True,
        model_config_file_poll_period: int | None = None,
        model_type: str = "tf",
    ) -> ServerProcess:
        key = (
            model_type,
            model_name,
            str(model_path),
            str(model_config_file),
            str(monitoring_config_file),
            grpc_channel_arguments,
            model_config_file_poll_period,
        )
        if key in self._servers:
            return self._servers[key]
        socket_path = self.root / f"tf-serving-{len(self._servers)}.sock"
        args = [
            f"--rest_api_timeout_in_ms={HTTP_REST_TIMEOUT_MS}",
            f"--grpc_socket_path={socket_path}",
        ]
        if model_config_file:
            args.append(f"--model_config_file={model_config_file}")
        elif model_path:
            args += [f"--model_name={model_name}", f"--model_base_path={model_path}"]
        else:
            raise ValueError("Both model_config_file and model_path cannot be empty!")
        if model_type == "tflite":
            args.append("--prefer_tflite_model=true")
        if monitoring_config_file:
            args.append(f"--monitoring_config_file={monitoring_config_file}")
        if model_config_file_poll_period is not None:
            args.append(f"--model_config_file_poll_wait_seconds={model_config_file_poll_period}")
        # The base adds grpc.so_reuseaddr=1 to every server (its port-reuse fix).
        channel_arguments = ",".join(
            a for a in (grpc_channel_arguments, "grpc.so_reuseaddr=1") if a
        )
        args.append(f"--grpc_channel_arguments={channel_arguments}")
        server = ServerProcess(*args).start()
        server.socket_path = socket_path  # type: ignore[attr-defined]
        self._servers[key] = server
        if wait_for_server_ready:
            wait_for_server_ready_like_tfs(server)
        return server

    def stop_all(self) -> None:
        for server in self._servers.values():
            server.stop()


def wait_for_server_ready_like_tfs(server: ServerProcess) -> None:
    """WaitForServerReady: a missing model's error names a Servable => ready."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "intentionally_missing_model"
    deadline = time.monotonic() + WAIT_FOR_SERVER_READY_INT_SECS
    while time.monotonic() < deadline:
        assert server.proc is not None and server.proc.poll() is None, server.log()
        with grpc.insecure_channel(f"localhost:{server.grpc_port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            try:
                stub.Predict(request, RPC_TIMEOUT)
            except grpc.RpcError as error:
                if "Servable" in (error.details() or ""):
                    return
        time.sleep(0.2)
    raise AssertionError(f"server never became ready:\n{server.log()[-3000:]}")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory):
    registry = Servers(tmp_path_factory.mktemp("servers"))
    yield registry
    registry.stop_all()


def grpc_address(server: ServerProcess) -> str:
    return f"localhost:{server.grpc_port}"


def rest_address(server: ServerProcess) -> str:
    return f"localhost:{server.rest_port}"


def model_version(model_path: Path) -> int:
    """_GetModelVersion: the one integer directory name under model_path."""
    return int(next(p.name for p in Path(model_path).iterdir() if p.name.isdigit()))


def verify_model_spec(spec, name: str, signature_name: str, version: int) -> None:
    assert spec.name == name
    assert spec.signature_name == signature_name
    assert spec.version.value == version


def verify_predict_request(
    address: str,
    expected_output: float,
    expected_version: int,
    model_name: str = "default",
    specify_output: bool = True,
    batch_input: bool = False,
    signature_name: str = "serving_default",
    rpc_timeout: float = RPC_TIMEOUT,
) -> None:
    """VerifyPredictRequest: x = [2.0] (shape [1], or [1,1] batched) -> y."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.append(2.0)
    request.inputs["x"].tensor_shape.dim.add().size = 1
    if batch_input:
        request.inputs["x"].tensor_shape.dim.add().size = 1
    if specify_output:
        request.output_filter.append("y")
    with grpc.insecure_channel(address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        result = stub.Predict(request, rpc_timeout)
    assert "y" in result.outputs
    assert result.outputs["y"].dtype == types_pb2.DT_FLOAT
    assert len(result.outputs["y"].float_val) == 1
    assert result.outputs["y"].float_val[0] == expected_output
    verify_model_spec(result.model_spec, model_name, signature_name, expected_version)


def call_rest(url: str, req: dict | None) -> bytes:
    """CallREST: POST the JSON body if given, else GET; the body of a 200."""
    if req is None:
        response = requests.get(url, timeout=30)
    else:
        response = requests.post(url, data=json.dumps(req).encode(), timeout=30)
    assert response.status_code == 200, response.text
    return response.content


# --- gRPC ----------------------------------------------------------------------


def test_get_model_status(servers, testdata):
    server = servers.run("default", testdata.half_plus_two)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "default"
    with grpc.insecure_channel(grpc_address(server)) as channel:
        result = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            request, RPC_TIMEOUT
        )
    assert len(result.model_version_status) == 1
    assert result.model_version_status[0].version == 123
    assert result.model_version_status[0].status.error_code == 0


def test_get_model_metadata(servers, testdata):
    server = servers.run("default", testdata.half_plus_two)
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "default"
    request.metadata_field.append("signature_def")
    with grpc.insecure_channel(grpc_address(server)) as channel:
        result = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(
            request, RPC_TIMEOUT
        )
    assert result.model_spec.name == "default"
    assert result.model_spec.version.value == model_version(testdata.half_plus_two)
    assert len(result.metadata) == 1
    assert "signature_def" in result.metadata


def _classify(servers, model_path: Path) -> None:
    server = servers.run("default", model_path)
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "classify_x_to_y"
    request.input.example_list.examples.add().features.feature["x"].float_list.value.extend([2.0])
    with grpc.insecure_channel(grpc_address(server)) as channel:
        result = prediction_service_pb2_grpc.PredictionServiceStub(channel).Classify(
            request, RPC_TIMEOUT
        )
    assert len(result.result.classifications) == 1
    assert len(result.result.classifications[0].classes) == 1
    assert result.result.classifications[0].classes[0].score == 3.0
    verify_model_spec(result.model_spec, "default", "classify_x_to_y", model_version(model_path))


def test_classify(servers, testdata):
    _classify(servers, testdata.half_plus_two)


def test_classify_tf2(servers, testdata):
    _classify(servers, testdata.half_plus_two_tf2)


def _regress(servers, model_path: Path) -> None:
    server = servers.run("default", model_path)
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "regress_x_to_y"
    request.input.example_list.examples.add().features.feature["x"].float_list.value.extend([2.0])
    with grpc.insecure_channel(grpc_address(server)) as channel:
        result = prediction_service_pb2_grpc.PredictionServiceStub(channel).Regress(
            request, RPC_TIMEOUT
        )
    assert len(result.result.regressions) == 1
    assert result.result.regressions[0].value == 3.0
    verify_model_spec(result.model_spec, "default", "regress_x_to_y", model_version(model_path))


def test_regress(servers, testdata):
    _regress(servers, testdata.half_plus_two)


def test_regress_tf2(servers, testdata):
    _regress(servers, testdata.half_plus_two_tf2)


def _multi_inference(servers, model_path: Path) -> None:
    server = servers.run("default", model_path)
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (
        ("regress_x_to_y", "tensorflow/serving/regress"),
        ("classify_x_to_y", "tensorflow/serving/classify"),
    ):
        task = request.tasks.add()
        task.model_spec.name = "default"
        task.model_spec.signature_name = signature
        task.method_name = method
    request.input.example_list.examples.add().features.feature["x"].float_list.value.extend([2.0])
    with grpc.insecure_channel(grpc_address(server)) as channel:
        result = prediction_service_pb2_grpc.PredictionServiceStub(channel).MultiInference(
            request, RPC_TIMEOUT
        )
    assert len(result.results) == 2
    assert result.results[0].regression_result.regressions[0].value == 3.0
    assert result.results[1].classification_result.classifications[0].classes[0].score == 3.0
    for i in range(2):
        verify_model_spec(
            result.results[i].model_spec,
            request.tasks[i].model_spec.name,
            request.tasks[i].model_spec.signature_name,
            model_version(model_path),
        )


def test_multi_inference(servers, testdata):
    _multi_inference(servers, testdata.half_plus_two)


def test_multi_inference_tf2(servers, testdata):
    _multi_inference(servers, testdata.half_plus_two_tf2)


def test_predict_saved_model(servers, testdata):
    """_TestPredict: with and without output_filter."""
    server = servers.run("default", testdata.half_plus_two)
    version = model_version(testdata.half_plus_two)
    verify_predict_request(grpc_address(server), 3.0, version)
    verify_predict_request(grpc_address(server), 3.0, version, specify_output=False)


def test_good_model_config(servers, testdata):
    server = servers.run(None, None, model_config_file=testdata.good_model_config)
    address = grpc_address(server)
    two = model_version(testdata.half_plus_two)
    three = model_version(testdata.half_plus_three)
    verify_predict_request(address, 3.0, two, model_name="half_plus_two")
    verify_predict_request(address, 3.0, two, model_name="half_plus_two", specify_output=False)
    verify_predict_request(address, 4.0, three, model_name="half_plus_three")
    verify_predict_request(address, 4.0, three, model_name="half_plus_three", specify_output=False)


def test_bad_model_config(servers, testdata):
    """The server reports the text-format parse error on stderr (and exits)."""
    server = servers.run(
        None, None, model_config_file=testdata.bad_model_config, wait_for_server_ready=False
    )
    assert server.proc is not None
    server.proc.wait(60)
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in server.log()


_BASE_CONFIG = """
    model_config_list: {{
      config: {{
        name: "{name}",
        base_path: "{model_path}",
        model_platform: "tensorflow"
      }}
    }}
"""


def test_model_config_reload(servers, testdata, tmp_path):
    config_path = tmp_path / "model_config.txt"
    config_path.write_text(
        _BASE_CONFIG.format(name="half_plus_two", model_path=testdata.half_plus_two)
    )
    poll_period = 1
    server = servers.run(
        None, None, model_config_file=config_path, model_config_file_poll_period=poll_period
    )
    address = grpc_address(server)
    verify_predict_request(
        address,
        3.0,
        model_version(testdata.half_plus_two),
        model_name="half_plus_two",
        specify_output=False,
    )
    config_path.write_text(
        _BASE_CONFIG.format(name="half_plus_three", model_path=testdata.half_plus_three)
    )
    # Upstream sleeps poll_period + 1 s and then asserts once; waiting for the
    # model to appear is the same check without a timing assumption.
    server.wait_versions("half_plus_three", {VERSION: "AVAILABLE"}, timeout=60)
    verify_predict_request(
        address,
        4.0,
        model_version(testdata.half_plus_three),
        model_name="half_plus_three",
        specify_output=False,
    )


def test_model_config_reload_with_zero_poll_period(servers, testdata, tmp_path):
    config_path = tmp_path / "model_config.txt"
    config_path.write_text(
        _BASE_CONFIG.format(name="half_plus_two", model_path=testdata.half_plus_two)
    )
    poll_period = 0
    server = servers.run(
        None, None, model_config_file=config_path, model_config_file_poll_period=poll_period
    )
    address = grpc_address(server)
    verify_predict_request(
        address,
        3.0,
        model_version(testdata.half_plus_two),
        model_name="half_plus_two",
        specify_output=False,
    )
    config_path.write_text(
        _BASE_CONFIG.format(name="half_plus_three", model_path=testdata.half_plus_three)
    )
    time.sleep(poll_period + 1)  # upstream's wait: nothing may change during it
    verify_predict_request(
        address,
        3.0,
        model_version(testdata.half_plus_three),
        model_name="half_plus_two",
        specify_output=False,
    )
    assert server.version_states("half_plus_three") == {}


def test_good_grpc_channel_args(servers, testdata):
    server = servers.run(
        "default",
        testdata.half_plus_two,
        grpc_channel_arguments="grpc.max_connection_age_ms=2000,grpc.lb_policy_name=grpclb",
    )
    verify_predict_request(
        grpc_address(server),
        3.0,
        model_version(testdata.half_plus_three),
        specify_output=False,
    )


def test_predict_uds(servers, testdata):
    server = servers.run("default", testdata.half_plus_two)
    verify_predict_request(
        f"unix:{server.socket_path}",
        3.0,
        model_version(testdata.half_plus_three),
        specify_output=False,
    )


# --- REST ----------------------------------------------------------------------


def test_classify_rest(servers, testdata):
    server = servers.run("default", testdata.half_plus_two)
    url = f"http://{rest_address(server)}/v1/models/default:classify"
    body = call_rest(url, {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]})
    assert json.loads(body.decode()) == {"results": [[["", 3.0]]]}


def test_regress_rest(servers, testdata):
    server = servers.run("default", testdata.half_plus_two)
    url = f"http://{rest_address(server)}/v1/models/default:regress"
    body = call_rest(url, {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]})
    assert json.loads(body.decode()) == {"results": [3.0]}


def test_predict_rest(servers, testdata):
    server = servers.run("default", testdata.half_plus_two)
    url = f"http://{rest_address(server)}/v1/models/default:predict"
    body = call_rest(url, {"instances": [2.0, 3.0, 4.0]})
    assert json.loads(body.decode()) == {"predictions": [3.0, 3.5, 4.0]}


def test_predict_columnar_rest(servers, testdata):
    server = servers.run("default", testdata.half_plus_two)
    url = f"http://{rest_address(server)}/v1/models/default:predict"
    body = call_rest(url, {"inputs": [2.0, 3.0, 4.0]})
    assert json.loads(body.decode()) == {"outputs": [3.0, 3.5, 4.0]}


def test_get_status_rest(servers, testdata):
    server = servers.run("default", testdata.half_plus_two)
    body = call_rest(f"http://{rest_address(server)}/v1/models/default", None)
    assert json.loads(body.decode()) == {
        "model_version_status": [
            {
                "version": "123",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }


def _shape(*sizes: int) -> dict:
    return {"dim": [{"size": str(s), "name": ""} for s in sizes], "unknown_rank": False}


_UNKNOWN_RANK = {"dim": [], "unknown_rank": True}


def _sig(inputs: dict, outputs: dict, method: str) -> dict:
    # "defaults" (SignatureDef field 4, empty here) is printed as {} by current TF
    # Serving, as its newer saved_model_half_plus_two_tf2_2_versions_metadata.json
    # shows; the TF1 file predates the field.
    return {
        "inputs": inputs,
        "outputs": outputs,
        "method_name": f"tensorflow/serving/{method}",
        "defaults": {},
    }


def _info(dtype: str, shape: dict, name: str) -> dict:
    return {"dtype": dtype, "tensor_shape": shape, "name": name}


def half_plus_two_model_metadata() -> dict:
    """TF Serving's testdata/half_plus_two_model_metadata.json, value for value."""
    on_example = _info("DT_STRING", _UNKNOWN_RANK, "tf_example:0")
    return {
        "model_spec": {"name": "default", "signature_name": "", "version": "123"},
        "metadata": {
            "signature_def": {
                "signature_def": {
                    "regress_x2_to_y3": _sig(
                        {"inputs": _info("DT_FLOAT", _shape(-1, 1), "x2:0")},
                        {"outputs": _info("DT_FLOAT", _shape(-1, 1), "y3:0")},
                        "regress",
                    ),
                    "serving_default": _sig(
                        {"x": _info("DT_FLOAT", _shape(-1, 1), "x:0")},
                        {"y": _info("DT_FLOAT", _shape(-1, 1), "y:0")},
                        "predict",
                    ),
                    "classify_x_to_y": _sig(
                        {"inputs": on_example},
                        {"scores": _info("DT_FLOAT", _shape(-1, 1), "y:0")},
                        "classify",
                    ),
                    "regress_x_to_y2": _sig(
                        {"inputs": on_example},
                        {"outputs": _info("DT_FLOAT", _shape(-1, 1), "y2:0")},
                        "regress",
                    ),
                    "regress_x_to_y": _sig(
                        {"inputs": on_example},
                        {"outputs": _info("DT_FLOAT", _shape(-1, 1), "y:0")},
                        "regress",
                    ),
                }
            }
        },
    }


def sorted_object(obj):
    """SortedObject: nested lists and dicts in a canonical order."""
    if isinstance(obj, dict):
        return sorted((k, sorted_object(v)) for k, v in obj.items())
    if isinstance(obj, list | tuple):
        return sorted(sorted_object(x) for x in obj)
    return obj


def test_get_model_metadata_rest(servers, testdata):
    server = servers.run("default", testdata.half_plus_two)
    body = call_rest(f"http://{rest_address(server)}/v1/models/default/metadata", None)
    assert sorted_object(json.loads(body.decode())) == sorted_object(half_plus_two_model_metadata())


def test_prometheus_endpoint(servers, testdata):
    server = servers.run(
        "default", testdata.half_plus_two, monitoring_config_file=testdata.monitoring_config
    )
    body = call_rest(f"http://{rest_address(server)}/monitoring/prometheus/metrics", None)
    assert "# TYPE" in body.decode("utf-8")


# --- models saved by the test itself ------------------------------------------


def _save_in_subprocess(script: str, export_path: Path, legacy_keras: bool = False) -> None:
    """Save in a child process: its own TF settings (Keras 2, virtual CPUs)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if legacy_keras:
        env["TF_USE_LEGACY_KERAS"] = "1"
    subprocess.run(
        [sys.executable, "-c", script, str(export_path)],
        check=True,
        capture_output=True,
        timeout=300,
        env=env,
    )


_TF_SAVED_MODEL_SAVE = """
import sys, tensorflow as tf
root = tf.train.Checkpoint()
root.v1 = tf.Variable(3.)
root.v2 = tf.Variable(2.)
root.f = tf.function(lambda x: {'y': root.v1 * root.v2 * x})
to_save = root.f.get_concrete_function(tf.TensorSpec(None, tf.float32))
tf.saved_model.save(root, sys.argv[1], to_save)
"""

_TF_SAVED_MODEL_SAVE_MULTIPLE = """
import sys, tensorflow as tf
root = tf.train.Checkpoint()
root.f = tf.function(lambda x: {'y': 1.}, input_signature=[tf.TensorSpec(None, tf.float32)])
root.g = tf.function(lambda x: {'y': 2.}, input_signature=[tf.TensorSpec(None, tf.float32)])
tf.saved_model.save(root, sys.argv[1],
                    signatures={'serving_default': root.f, 'custom_signature_key': root.g})
"""


def test_predict_on_tf_lite(servers, testdata):
    server = servers.run("default", testdata.tflite, model_type="tflite")
    verify_predict_request(
        grpc_address(server), 3.0, model_version(testdata.tflite), specify_output=False
    )


def test_predict_with_signature_def_on_tf_lite(servers, testdata):
    server = servers.run("default", testdata.tflite_with_sigdef, model_type="tflite")
    verify_predict_request(
        grpc_address(server), 3.0, model_version(testdata.tflite), specify_output=False
    )


def test_tf_saved_model_save(servers, tmp_path):
    base_path = tmp_path / "tf_saved_model_save"
    _save_in_subprocess(_TF_SAVED_MODEL_SAVE, base_path / "00000123")
    server = servers.run("default", base_path)
    verify_predict_request(
        grpc_address(server), 12.0, model_version(base_path), specify_output=False
    )


def test_tf_saved_model_save_multiple_signatures(servers, tmp_path):
    base_path = tmp_path / "tf_saved_model_save"
    _save_in_subprocess(_TF_SAVED_MODEL_SAVE_MULTIPLE, base_path / "00000123")
    server = servers.run("default", base_path)
    version = model_version(base_path)
    verify_predict_request(
        grpc_address(server), 2.0, version, signature_name="custom_signature_key"
    )
    verify_predict_request(grpc_address(server), 1.0, version)


# Keras 2 (tf-keras) as tf.keras: Keras 3 names the signature's tensors
# inputs/output_0, the upstream tests (written for tf.keras 2) expect x/y.
_KERAS_SEQUENTIAL = """
import sys, tensorflow as tf
model = tf.keras.models.Sequential()
model.add(tf.keras.layers.Input(dtype='float32', shape=(1,), name='x'))
model.add(tf.keras.layers.Lambda(lambda x: x, name='y'))
tf.saved_model.save(model, sys.argv[1])
"""

_KERAS_DISTRIBUTED = """
import sys, tensorflow as tf
cpu = tf.config.experimental.list_physical_devices('CPU')[0]
tf.config.experimental.set_virtual_device_configuration(
    cpu, [tf.config.experimental.VirtualDeviceConfiguration() for _ in range(2)])
strategy = tf.distribute.MirroredStrategy(devices=('/cpu:0', '/cpu:1'))
with strategy.scope():
    model = tf.keras.models.Sequential()
    model.add(tf.keras.layers.Input(dtype='float32', shape=(1,), name='x'))
    model.add(tf.keras.layers.Dense(1, kernel_initializer='ones', bias_initializer='zeros'))
    model.add(tf.keras.layers.Lambda(lambda x: x, name='y'))
tf.saved_model.save(model, sys.argv[1])
"""


def test_sequential_keras_saved_model_save(servers, tmp_path):
    base_path = tmp_path / "keras_sequential_saved_model_save"
    _save_in_subprocess(_KERAS_SEQUENTIAL, base_path / "00000123", legacy_keras=True)
    server = servers.run("default", base_path)
    verify_predict_request(
        grpc_address(server),
        2.0,
        model_version(base_path),
        batch_input=True,
        specify_output=False,
    )


def test_distrat_sequential_keras_saved_model_save(servers, tmp_path):
    base_path = tmp_path / "keras_sequential_saved_model_save"
    _save_in_subprocess(_KERAS_DISTRIBUTED, base_path / "00000123", legacy_keras=True)
    server = servers.run("default", base_path)
    verify_predict_request(
        grpc_address(server),
        2.0,
        model_version(base_path),
        batch_input=True,
        specify_output=False,
    )


def test_profiler_service_with_valid_trace_request(servers, testdata, tmp_path):
    """profiler_client.trace against the gRPC port while REST predicts run."""
    import threading

    from tensorflow.python.profiler import profiler_client

    server = servers.run("default", testdata.half_plus_two)
    url = f"http://{rest_address(server)}/v1/models/default:predict"
    answers: list[int] = []

    def send_predicts() -> None:
        for _ in range(3):
            answers.append(
                requests.post(url, data='{"instances": [2.0, 3.0, 4.0]}', timeout=30).status_code
            )
            time.sleep(0.3)

    sender = threading.Thread(target=send_predicts)
    sender.start()
    logdir = tmp_path / "logs"
    logdir.mkdir()
    profiler_client.trace(grpc_address(server), str(logdir), 1000, "", 10)
    sender.join()
    assert answers == [200, 200, 200]
    # tsl's layout: logdir/plugins/profile/<session>/<host>.xplane.pb
    assert list(logdir.glob("plugins/profile/*/*.xplane.pb"))


@pytest.fixture(scope="module")
def tf_text_regression(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TF Text's save_models.py model (tests/server/tf_text_model.py), in a child process."""
    model_path = tmp_path_factory.mktemp("tf_text") / "tf_text_regression"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    subprocess.run(
        [sys.executable, "-m", "tests.server.tf_text_model", str(model_path / "01")],
        check=True,
        capture_output=True,
        timeout=600,
        env=env,
        cwd=Path(__file__).parents[2],
    )
    return model_path


def test_tf_text(servers, tf_text_regression):
    server = servers.run("default", tf_text_regression)
    verify_predict_request(
        grpc_address(server), 3.0, model_version(tf_text_regression), rpc_timeout=600
    )
