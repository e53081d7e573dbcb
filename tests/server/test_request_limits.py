"""Requests never allocate what they did not send (issue 13, section 1).

A real server with a 4 MiB --max_request_decoded_bytes, real SavedModels, the
tensorflow-serving-api stubs and HTTP. Each case here crashed the process (SIGSEGV),
answered INTERNAL, or decoded past any bound before the decoded-bytes check.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import requests
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import classification_pb2, predict_pb2

from tests.server.savedmodels import export_image, export_linear, export_multi_input
from tests.server.serverproc import ServerProcess

CAP = 4 * 1024 * 1024
CONFIG = """
model_config_list {{
  config {{ name: "linear" base_path: "{root}/linear" model_platform: "tensorflow" }}
  config {{ name: "multi" base_path: "{root}/multi" model_platform: "tensorflow" }}
  config {{ name: "image" base_path: "{root}/image" model_platform: "tensorflow" }}
}}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("limits")
    export_linear(root / "linear", 1, 1.0, 0.0)
    export_multi_input(root / "multi", 1)
    export_image(root / "image", 1)
    config = root / "models.config"
    config.write_text(CONFIG.format(root=root))
    with ServerProcess(
        f"--model_config_file={config}", f"--max_request_decoded_bytes={CAP}"
    ) as proc:
        proc.wait_ready()
        yield proc


def _tensor(dtype: int, dims: list[int], **values) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=dtype, **values)
    for d in dims:
        proto.tensor_shape.dim.add(size=d)
    return proto


def _predict(server: ServerProcess, model: str, **inputs: tensor_pb2.TensorProto):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for alias, proto in inputs.items():
        request.inputs[alias].CopyFrom(proto)
    return server.prediction_stub().Predict(request, timeout=30)


def _rejected(server: ServerProcess, model: str, **inputs) -> str:
    with pytest.raises(grpc.RpcError) as info:
        _predict(server, model, **inputs)
    err = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
    assert server.proc is not None and server.proc.poll() is None, server.log()[-3000:]
    return err.details()


def _still_serves(server: ServerProcess) -> None:
    x = _tensor(types_pb2.DT_FLOAT, [2], float_val=[1.0, 2.0])
    y = _predict(server, "linear", x=x).outputs["y"]
    assert list(y.float_val) == [1.0, 2.0]  # TF Serving default: typed outputs


def test_the_27_byte_request_2_to_the_40_floats_no_values(server):
    x = _tensor(types_pb2.DT_FLOAT, [2**40])
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "linear"
    request.inputs["x"].CopyFrom(x)
    assert len(request.SerializeToString()) < 40
    details = _rejected(server, "linear", x=x)
    assert details.startswith("tensor parsing error: x: shape [1099511627776]"), details
    assert "--max_request_decoded_bytes" in details
    _still_serves(server)


def test_one_value_repeated_over_2_to_the_40_elements(server):
    details = _rejected(server, "linear", x=_tensor(types_pb2.DT_FLOAT, [2**40], float_val=[1.0]))
    assert "4398046511104 bytes" in details, details
    _still_serves(server)


@pytest.mark.parametrize("values", [{}, {"float_val": [1.0]}])
def test_image_model_2_to_the_32_by_784(server, values):
    images = _tensor(types_pb2.DT_FLOAT, [2**32, 784], **values)
    assert "tensor parsing error: images" in _rejected(server, "image", images=images)
    _still_serves(server)


@pytest.mark.parametrize("rank", [65, 254, 255])
def test_rank_above_numpys_limit(server, rank):
    details = _rejected(server, "linear", x=_tensor(types_pb2.DT_FLOAT, [1] * rank))
    assert f"rank {rank}, more than the 64 supported" in details, details
    _still_serves(server)


def test_dims_overflowing_int64_even_with_a_zero(server):
    x = _tensor(types_pb2.DT_FLOAT, [2**62, 2**62, 0])
    assert "too large for an array (over 2**63 - 1 bytes)" in _rejected(server, "linear", x=x)
    x = _tensor(types_pb2.DT_FLOAT, [0, 2**62])  # 2**62 floats: 2**64 bytes
    assert "too large for an array" in _rejected(server, "linear", x=x)


def test_over_the_cap_with_real_bytes_and_under_it(server):
    over = np.zeros(CAP // 4 + 1, np.float32)
    x = _tensor(types_pb2.DT_FLOAT, [over.size], tensor_content=over.tobytes())
    assert "over this server's limit of 4194304 bytes" in _rejected(server, "linear", x=x)
    under = np.ones(CAP // 8, np.float32)
    x = _tensor(types_pb2.DT_FLOAT, [under.size], tensor_content=under.tobytes())
    assert len(_predict(server, "linear", x=x).outputs["y"].float_val) == under.size


def test_cap_is_per_request_across_inputs(server):
    n = CAP // 16 + 1  # a: n*2 float32 = half the cap, b: n int64 = half the cap
    a = _tensor(types_pb2.DT_FLOAT, [n, 2], tensor_content=np.zeros((n, 2), np.float32).tobytes())
    b = _tensor(types_pb2.DT_INT64, [n], tensor_content=np.zeros(n, np.int64).tobytes())
    s = _tensor(types_pb2.DT_STRING, [n], string_val=[b"s"])
    assert "already decoded" in _rejected(server, "multi", a=a, b=b, s=s)


def test_repeated_string_value_counts_every_copy(server):
    a = _tensor(types_pb2.DT_FLOAT, [1, 2], float_val=[1.0, 2.0])
    b = _tensor(types_pb2.DT_INT64, [1], int64_val=[1])
    s = _tensor(types_pb2.DT_STRING, [2**20], string_val=[b"x" * 4096])
    assert "tensor parsing error: s" in _rejected(server, "multi", a=a, b=b, s=s)


def test_classify_context_copied_into_each_example(server):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "linear"
    request.model_spec.signature_name = "classify_x_to_y"
    with_context = request.input.example_list_with_context
    with_context.context.features.feature["pad"].bytes_list.value.append(b"p" * 100_000)
    for _ in range(100):  # 100 x 100 kB = 10 MB from a 100 kB request
        with_context.examples.add().features.feature["x"].float_list.value.append(1.0)
    with pytest.raises(grpc.RpcError) as info:
        server.prediction_stub().Classify(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "100 serialized tf.Examples" in info.value.details(), info.value.details()
    del with_context.examples[10:]
    result = server.prediction_stub().Classify(request, timeout=30).result
    assert len(result.classifications) == 10


def test_rest_instances_hit_the_same_cap(server):
    n = CAP // 4 + 1  # "0," per value: a 2-byte token decodes to a 4-byte float
    body = b'{"instances": [' + b"0," * (n - 1) + b"0]}"
    assert len(body) < CAP
    r = requests.post(f"{server.rest}/v1/models/linear:predict", data=body, timeout=60)
    assert r.status_code == 400, r.text
    assert "tensor parsing error: x" in r.json()["error"]
    assert "--max_request_decoded_bytes" in r.json()["error"]
    r = requests.post(
        f"{server.rest}/v1/models/linear:predict", json={"inputs": [0] * (CAP // 8)}, timeout=60
    )
    assert r.status_code == 200, r.text[:300]


def test_rest_body_over_the_cap_is_a_json_413(server):
    body = b'{"instances": [' + b"0" * CAP + b"]}"
    r = requests.post(f"{server.rest}/v1/models/linear:predict", data=body, timeout=60)
    assert r.status_code == 413
    assert "limit of 4194304 bytes" in r.json()["error"]


def test_rest_rank_65_is_400(server):
    value: object = 1.0
    for _ in range(65):
        value = [value]
    r = requests.post(f"{server.rest}/v1/models/linear:predict", json={"inputs": value}, timeout=10)
    assert r.status_code == 400, r.text
    assert "at most 64 dimensions" in r.json()["error"]
    _still_serves(server)
