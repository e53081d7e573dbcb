"""Every bad request gets a 4xx / INVALID_ARGUMENT with a readable, bounded message.

Issue 13, section 2: the known cases one by one, then hypothesis property tests over
REST bodies, URL paths, raw gRPC bytes and structured gRPC requests, all against a
real server process. Bounded (fixed example counts, derandomized) so they fit the
normal run.
"""

from __future__ import annotations

import json
import os
from urllib.parse import quote

import grpc
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    predict_pb2,
    regression_pb2,
)

from tests.server.conftest import write_models
from tests.server.serverproc import ServerProcess

# What the server may answer to bad input: never UNKNOWN/INTERNAL, never a trailer the
# client drops (RESOURCE_EXHAUSTED), never UNAVAILABLE (a dead server).
BAD_GRPC = {
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}
MAX_GRPC_DETAILS = 2048 + 64
MAX_REST_BODY = 8192 + 256
# TFMODEL_FUZZ_EXAMPLES=N digs deeper with fresh random examples (the default run is fixed).
_DEEP = int(os.environ.get("TFMODEL_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=_DEEP or 150,
    deadline=None,
    derandomize=not _DEEP,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """Models linear (v1, v2, labels) and multi; reload RPC off, so fuzzed bytes that
    happen to parse as a ReloadConfigRequest cannot replace the config."""
    config = write_models(tmp_path_factory.mktemp("models"))
    with ServerProcess(
        f"--model_config_file={config}",
        "--enable_reload_config_rpc=false",
        "--max_request_decoded_bytes=16777216",
    ) as proc:
        proc.wait_ready()
        yield proc


def _alive(server: ServerProcess) -> None:
    assert server.proc is not None and server.proc.poll() is None, server.log()[-3000:]
    r = requests.post(
        f"{server.rest}/v1/models/linear:predict", json={"instances": [1.0]}, timeout=10
    )
    assert r.status_code == 200, r.text


def _check_rest(r: requests.Response) -> None:
    assert len(r.content) <= MAX_REST_BODY, (r.status_code, len(r.content))
    doc = r.json()  # always JSON, never aiohttp's text page
    if r.status_code == 200:
        return
    assert 400 <= r.status_code < 500 or r.status_code == 501, (r.status_code, r.text[:500])
    assert isinstance(doc, dict) and isinstance(doc.get("error"), str) and doc["error"], doc


def _check_grpc(call, request, timeout: float = 30) -> grpc.RpcError | None:
    try:
        call(request, timeout=timeout)
    except grpc.RpcError as e:
        assert e.code() not in BAD_GRPC, (e.code(), (e.details() or "")[:500])
        assert e.details() and len(e.details()) <= MAX_GRPC_DETAILS, len(e.details() or "")
        return e
    return None


def _post(server: ServerProcess, path: str, body: bytes | str) -> requests.Response:
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    return requests.post(f"{server.rest}{path}", data=data, timeout=30)


# ---------------------------------------------------------------------------
# The known cases (each answered 500 / UNKNOWN / RESOURCE_EXHAUSTED before)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1000, 5000, 100_000])
def test_json_nested_deeply(server, depth):
    r = _post(server, "/v1/models/linear:predict", "[" * depth + "]" * depth)
    _check_rest(r)
    assert r.status_code == 400
    r = _post(
        server, "/v1/models/linear:predict", '{"instances": ' + "[" * depth + "]" * depth + "}"
    )
    _check_rest(r)
    assert r.status_code == 400


@pytest.mark.parametrize("digits", [5000, 100_000])
def test_integer_with_thousands_of_digits(server, digits):
    r = _post(server, "/v1/models/linear:predict", '{"instances": [' + "9" * digits + "]}")
    _check_rest(r)
    assert r.status_code == 400


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    "suffix", ["/versions/99999999999999999999999", "/versions/9223372036854775808"]
)
def test_version_beyond_int64_in_the_url(server, method, suffix):
    path = f"/v1/models/linear{suffix}" + ("/metadata" if method == "GET" else ":predict")
    r = requests.request(method, f"{server.rest}{path}", json={"instances": [1.0]}, timeout=10)
    _check_rest(r)
    assert r.status_code == 400
    assert "Failed to convert version" in r.json()["error"]
    r = requests.get(f"{server.rest}/v1/models/linear{suffix}", timeout=10)
    assert r.status_code == 400


def test_version_with_leading_zeros_still_parses(server):
    r = requests.get(f"{server.rest}/v1/models/linear/versions/{'0' * 30}1", timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["model_version_status"][0]["version"] == "1"


@pytest.mark.parametrize(
    "body",
    [
        '{"instances": ["\\ud800"], "signature_name": 5}',
        '{"instances": [1.0], "signature_name": "\\udc00x"}',
        '{"instances": [{"\\ud800": 1}]}',
        '{"examples": [{"x": "\\ud83d"}], "context": 7}',
    ],
)
def test_lone_surrogate_in_a_string(server, body):
    for verb in ("predict", "classify"):
        r = _post(server, f"/v1/models/linear:{verb}", body)
        _check_rest(r)
        assert r.status_code in (400, 404), r.text


def test_unparseable_protobuf(server):
    for method in ("Predict", "Classify", "GetModelMetadata"):
        call = server.channel().unary_unary(f"/tensorflow.serving.PredictionService/{method}")
        err = _check_grpc(call, b"\xff\xff\xff\xff\x0f")
        assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Could not parse request as tensorflow.serving." in err.details()
    call = server.channel().unary_unary("/tensorflow.serving.ModelService/GetModelStatus")
    assert _check_grpc(call, b"\x0a\x05ab").code() == grpc.StatusCode.INVALID_ARGUMENT


def test_five_thousand_unknown_input_names(server):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "linear"
    for i in range(5000):
        request.inputs[f"no_such_input_{i:05d}"].dtype = 1
    err = _check_grpc(server.prediction_stub().Predict, request)
    assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "more bytes)" in err.details()
    body = {"inputs": {f"no_such_input_{i:05d}": [1.0] for i in range(5000)}}
    body["inputs"]["x"] = [1.0]
    r = requests.post(f"{server.rest}/v1/models/multi:predict", json=body, timeout=10)
    _check_rest(r)
    _alive(server)


# ---------------------------------------------------------------------------
# Property tests
# ---------------------------------------------------------------------------

_text = st.text(
    st.characters(codec=None, exclude_categories=()), max_size=8
)  # includes lone surrogates
_json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    _text,
    st.fixed_dictionaries({"b64": st.one_of(_text, st.just("AAAA"), st.integers())}),
)
_json_value = st.recursive(
    _json_scalar,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.sampled_from(["x", "a", "b", "s", "b64", "inputs", "instances", ""]) | _text,
            children,
            max_size=4,
        ),
    ),
    max_leaves=20,
)
_KEYS = ["instances", "inputs", "examples", "context", "signature_name"]


@st.composite
def _rest_body(draw) -> bytes:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.binary(max_size=64))
    if kind == 1:  # deep nesting, long numbers, odd tokens spliced into a body
        token = draw(st.sampled_from(["[", "{", "9", "-", "1e", "NaN", "\\ud800", '"', "0."]))
        n = draw(st.integers(1, 3000))
        where = draw(st.sampled_from(_KEYS))
        return f'{{"{where}": {token * n}'.encode() + draw(st.sampled_from([b"", b"]}", b"}"]))
    doc = draw(st.dictionaries(st.sampled_from(_KEYS) | _text, _json_value, max_size=3))
    text = json.dumps(doc)
    if kind == 2:
        text = text[: draw(st.integers(0, len(text)))]
    return text.encode("utf-8", "surrogatepass")


_PATHS = [
    "/v1/models/linear:predict",
    "/v1/models/multi:predict",
    "/v1/models/linear:classify",
    "/v1/models/linear:regress",
    "/v1/models/linear/labels/stable:predict",
    "/v1/models/linear/versions/2:regress",
]


@FUZZ
@given(path=st.sampled_from(_PATHS), body=_rest_body())
def test_rest_bodies(server, path, body):
    _check_rest(_post(server, path, body))


_segment = st.one_of(
    st.sampled_from(["linear", "multi", "", "..", "%2e", "%00", "%ff", "%ED%A0%80", "LINEAR"]),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FF), max_size=12).map(
        lambda s: quote(s, safe="")
    ),
)
_version = st.one_of(
    st.integers(-5, 2**70).map(str), st.text("0123456789", min_size=1, max_size=40)
)


@st.composite
def _url(draw) -> tuple[str, str]:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE"]))
    path = draw(st.sampled_from(["/v1/models/", "/V1/MODELS/", "/v1/", "/v1/models", "/"]))
    path += draw(_segment)
    extra = draw(st.integers(0, 3))
    if extra == 1:
        path += "/versions/" + draw(_version)
    elif extra == 2:
        path += "/labels/" + draw(_segment)
    path += draw(
        st.sampled_from(["", "/metadata", ":predict", ":classify", ":regress", ":nope", "/x"])
    )
    return method, path


@FUZZ
@given(url=_url())
def test_url_paths(server, url):
    method, path = url
    r = requests.request(method, f"{server.rest}{path}", data=b'{"instances": [1.0]}', timeout=30)
    if r.status_code == 404 and not path.lower().startswith("/v1/"):
        assert "error" in r.json()
        return
    _check_rest(r)


_METHODS = [
    "/tensorflow.serving.PredictionService/Predict",
    "/tensorflow.serving.PredictionService/Classify",
    "/tensorflow.serving.PredictionService/Regress",
    "/tensorflow.serving.PredictionService/MultiInference",
    "/tensorflow.serving.PredictionService/GetModelMetadata",
    "/tensorflow.serving.ModelService/GetModelStatus",
    "/tensorflow.serving.ModelService/HandleReloadConfigRequest",
]


@FUZZ
@given(method=st.sampled_from(_METHODS), raw=st.binary(max_size=200))
def test_grpc_raw_bytes(server, method, raw):
    _check_grpc(server.channel().unary_unary(method), raw)


_dim = st.sampled_from([-1, 0, 1, 2, 3, 7, 2**31, 2**32, 2**40, 2**62, 2**63 - 1])
_dims = st.lists(_dim, max_size=3) | st.lists(st.sampled_from([0, 1, 2]), min_size=60, max_size=70)
_name = st.sampled_from(["linear", "multi", "linear", "multi", "", "nope"]) | st.text(max_size=6)
# Mostly the dtypes the models take (float, int64, string), sometimes any enum value.
_dtype = st.sampled_from([1, 1, 1, 9, 7, 19, 3]) | st.integers(0, 30)


@st.composite
def _tensor(draw) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=draw(_dtype))
    for d in draw(_dims):
        proto.tensor_shape.dim.add(size=d)
    proto.tensor_shape.unknown_rank = draw(st.booleans()) and draw(st.booleans())
    fill = draw(st.integers(0, 5))
    if fill == 1:
        proto.tensor_content = draw(st.binary(max_size=64))
    elif fill == 2:
        proto.float_val.extend(draw(st.lists(st.floats(width=32), max_size=8)))
    elif fill == 3:
        proto.string_val.extend(draw(st.lists(st.binary(max_size=8), max_size=4)))
    elif fill == 4:
        proto.half_val.extend(draw(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=4)))
    elif fill == 5:
        proto.int64_val.extend(draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=4)))
    return proto


def _spec(draw, spec) -> None:
    spec.name = draw(_name)
    choice = draw(st.integers(0, 2))
    if choice == 1:
        spec.version.value = draw(st.integers(-(2**63), 2**63 - 1))
    elif choice == 2:
        spec.version_label = draw(st.sampled_from(["stable", "canary", "", "x"]))
    spec.signature_name = draw(
        st.sampled_from(["", "serving_default", "classify_x_to_y", "regress_x_to_y", "zz"])
    )


@st.composite
def _predict(draw) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    _spec(draw, request.model_spec)
    aliases = st.sampled_from(["x", "a", "b", "s"]) | _name
    for alias in draw(st.lists(aliases, min_size=1, max_size=4)):
        request.inputs[alias].CopyFrom(draw(_tensor()))
    request.output_filter.extend(draw(st.lists(st.sampled_from(["y", "sum", "zz"]), max_size=3)))
    return request


@st.composite
def _examples_input(draw, target) -> None:
    with_context = draw(st.booleans())
    holder = target.example_list_with_context if with_context else target.example_list
    for _ in range(draw(st.integers(0, 4))):
        example = holder.examples.add()
        for key in draw(st.lists(st.sampled_from(["x", "y", ""]), max_size=2)):
            feature = example.features.feature[key]
            kind = draw(st.integers(0, 2))
            if kind == 0:
                feature.float_list.value.extend(draw(st.lists(st.floats(width=32), max_size=3)))
            elif kind == 1:
                feature.int64_list.value.extend(
                    draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3))
                )
            else:
                feature.bytes_list.value.extend(draw(st.lists(st.binary(max_size=4), max_size=3)))
    if with_context and draw(st.booleans()):
        holder.context.features.feature["x"].float_list.value.append(1.0)


@st.composite
def _examples_request(draw):
    kind = draw(st.sampled_from(["classify", "regress", "multi"]))
    if kind == "multi":
        request = inference_pb2.MultiInferenceRequest()
        for _ in range(draw(st.integers(0, 3))):
            task = request.tasks.add()
            _spec(draw, task.model_spec)
            task.method_name = draw(
                st.sampled_from(
                    ["tensorflow/serving/classify", "tensorflow/serving/regress", "x", ""]
                )
            )
    else:
        request = (
            classification_pb2.ClassificationRequest()
            if kind == "classify"
            else regression_pb2.RegressionRequest()
        )
        _spec(draw, request.model_spec)
    draw(_examples_input(request.input))
    return kind, request


@FUZZ
@given(request=_predict())
def test_grpc_structured_predict(server, request):
    _check_grpc(server.prediction_stub().Predict, request)


@FUZZ
@given(pair=_examples_request())
def test_grpc_structured_examples(server, pair):
    kind, request = pair
    stub = server.prediction_stub()
    call = {"classify": stub.Classify, "regress": stub.Regress, "multi": stub.MultiInference}
    _check_grpc(call[kind], request)


def test_still_serving_after_the_fuzz(server):
    _alive(server)
    assert "Traceback" not in server.log(), server.log()[-5000:]
