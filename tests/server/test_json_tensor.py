"""Conformance tests for json_tensor, ported from TF Serving's util/json_tensor_test.cc.

Tests named test_<OriginalName> port the C++ test of that name; the rest cover rules
from json_tensor.cc that the C++ file does not test, speed-path equivalence, and float
formatting against an element-by-element oracle of TF Serving's WriteDecimal().
"""

from __future__ import annotations

import base64
import json
import math

import grpc
import numpy as np
import orjson
import pytest
from google.protobuf import text_format
from tensorflow.core.framework import types_pb2 as t
from tensorflow_serving.apis import classification_pb2, input_pb2, regression_pb2
from tfmodel_server.codecs import json_request as jt
from tfmodel_server.codecs import json_response as jr
from tfmodel_server.codecs.limits import DecodeBudget
from tfmodel_server.errors import ServingError

ROW = jt.JsonFormat.ROW
COLUMNAR = jt.JsonFormat.COLUMNAR


def specs(**dtypes: int) -> dict[str, tuple[int, None]]:
    return {name: (dtype, None) for name, dtype in dtypes.items()}


def parse(body: str | bytes, **dtypes: int) -> jt.PredictRequestJson:
    return jt.parse_predict_request(body, specs(**dtypes))


def parse_error(body: str | bytes, **dtypes: int) -> str:
    with pytest.raises(ServingError) as info:
        parse(body, **dtypes)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    return info.value.message


def assert_array(actual: np.ndarray, expected: list | object, dtype: np.dtype | type) -> None:
    expected_arr = np.array(expected, dtype=dtype)
    assert actual.dtype == expected_arr.dtype
    assert actual.shape == expected_arr.shape
    if actual.dtype.kind == "f":
        np.testing.assert_array_equal(actual, expected_arr)  # NaN == NaN here
    else:
        assert actual.tolist() == expected_arr.tolist()


def as_strings(text: bytes | str) -> object:
    """Parse JSON keeping number tokens as text (CompareJsonAllValuesAsStrings)."""
    return json.loads(text, parse_float=str, parse_int=str, parse_constant=str)


def compare_json(actual: bytes, expected: str) -> None:
    assert json.loads(actual) == json.loads(expected)


def compare_json_as_strings(actual: bytes, expected: str) -> None:
    assert as_strings(actual) == as_strings(expected)


# ---------------------------------------------------------------------------
# Predict requests (FillPredictRequestFromJson)
# ---------------------------------------------------------------------------


def test_SingleUnnamedTensor():
    req = parse('{"instances": [[1,2],[3,4],[5,6]]}', default=t.DT_INT32)
    assert req.format == ROW
    assert list(req.inputs) == ["default"]
    assert_array(req.inputs["default"], [[1, 2], [3, 4], [5, 6]], np.int32)


def test_MixedInputForFloatTensor():
    req = parse('{"instances": [1, 2.0, 3, 4, 5.003, 0.007, 0.0]}', default=t.DT_FLOAT)
    assert req.format == ROW
    assert_array(req.inputs["default"], [1, 2.0, 3, 4, 5.003, 0.007, 0.0], np.float32)


def test_MixedInputForDoubleTensor():
    req = parse('{"instances": [1.0, 2, 3, 4, 0.662, 0, 0.0]}', default=t.DT_DOUBLE)
    assert_array(req.inputs["default"], [1.0, 2, 3, 4, 0.662, 0, 0.0], np.float64)


def test_SingleUnnamedTensorWithSignature():
    req = parse('{"signature_name": "predict_images", "instances": [[1,2]]}', default=t.DT_INT32)
    assert req.signature_name == "predict_images"
    assert_array(req.inputs["default"], [[1, 2]], np.int32)


def test_TensorFromNonNullTerminatedBuffer():
    body = b'{"instances": [[1,2],[3,4],[5,6]]}X'
    req = parse(memoryview(body)[:-1].tobytes(), default=t.DT_INT32)
    assert_array(req.inputs["default"], [[1, 2], [3, 4], [5, 6]], np.int32)


def test_SingleUnnamedTensorBase64Scalars():
    req = parse(
        '{"instances": [ { "b64" : "aGVsbG8=" }, { "b64": "d29ybGQ=" } ]}', default=t.DT_STRING
    )
    assert req.format == ROW
    assert_array(req.inputs["default"], [b"hello", b"world"], object)


def test_SingleUnnamedTensorBase64Lists():
    req = parse(
        '{"instances": [ [{ "b64" : "aGVsbG8=" }], [{ "b64": "d29ybGQ=" }] ]}',
        default=t.DT_STRING,
    )
    assert_array(req.inputs["default"], [[b"hello"], [b"world"]], object)


def test_SingleNamedTensorBase64():
    req = parse(
        '{"instances": [{"default": [ [{ "b64" : "aGVsbG8=" }], [{ "b64": "d29ybGQ=" }] ]}]}',
        default=t.DT_STRING,
    )
    assert_array(req.inputs["default"], [[[b"hello"], [b"world"]]], object)


def test_MultipleNamedTensor():
    body = """
    {
      "instances": [
        {
          "int_tensor": [[1,2],[3,4],[5,6]],
          "str_tensor": ["foo", "bar"],
          "float_tensor": [1.0, NaN],
          "dbl_tensor": [NaN]
        },
        {
          "int_tensor": [[7,8],[9,0],[1,2]],
          "str_tensor": ["baz", "bat"],
          "float_tensor": [2.0, Infinity],
          "dbl_tensor": [2.0]
        }
      ]
    }"""
    req = parse(
        body,
        int_tensor=t.DT_INT32,
        str_tensor=t.DT_STRING,
        float_tensor=t.DT_FLOAT,
        dbl_tensor=t.DT_DOUBLE,
    )
    assert req.format == ROW
    assert len(req.inputs) == 4
    assert_array(
        req.inputs["int_tensor"],
        [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]],
        np.int32,
    )
    assert_array(req.inputs["str_tensor"], [[b"foo", b"bar"], [b"baz", b"bat"]], object)
    assert_array(req.inputs["float_tensor"], [[1.0, math.nan], [2.0, math.inf]], np.float32)
    assert_array(req.inputs["dbl_tensor"], [[math.nan], [2.0]], np.float64)


def test_SingleUnnamedTensorColumnarFormat():
    req = parse('{"inputs": {"int_tensor": [[[1,2],[3,4],[5,6]]]}}', int_tensor=t.DT_INT32)
    assert req.format == COLUMNAR
    assert_array(req.inputs["int_tensor"], [[[1, 2], [3, 4], [5, 6]]], np.int32)
    # Skip explicitly specifying named input.
    req = parse('{"inputs": [[[1,2],[3,4],[5,6]]]}', int_tensor=t.DT_INT32)
    assert req.format == COLUMNAR
    assert_array(req.inputs["int_tensor"], [[[1, 2], [3, 4], [5, 6]]], np.int32)


def test_MultipleNamedTensorColumnarFormat():
    body = """
    {
      "inputs": {
        "int_tensor": [[[1,2],[3,4],[5,6]]],
        "str_tensor": ["foo", "bar"],
        "bin_tensor": { "b64" : "aGVsbG8=" }
      }
    }"""
    req = parse(body, int_tensor=t.DT_INT32, str_tensor=t.DT_STRING, bin_tensor=t.DT_STRING)
    assert req.format == COLUMNAR
    assert len(req.inputs) == 3
    assert_array(req.inputs["int_tensor"], [[[1, 2], [3, 4], [5, 6]]], np.int32)
    assert_array(req.inputs["str_tensor"], [b"foo", b"bar"], object)
    bin_tensor = req.inputs["bin_tensor"]
    assert bin_tensor.shape == () and bin_tensor.dtype == object
    assert bin_tensor.item() == b"hello"


def test_SingleUnnamedTensorErrors():
    assert "document is empty" in parse_error("", default=t.DT_INT32)
    assert "must be a string value" in parse_error(
        '{"signature_name": 5, "instances": [[1,2],[3,4],[5,6,7]]}', default=t.DT_INT32
    )
    assert "Not formatted correctly" in parse_error(
        '{"instances": [[1,2],[3,4],[5,6,7]], "inputs": [[1,2],[3,4],[5,6,7]]}',
        default=t.DT_INT32,
    )
    assert "Expecting tensor size" in parse_error(
        '{"instances": [[1,2],[3,4],[5,6,7]]}', default=t.DT_INT32
    )
    assert "Expecting shape" in parse_error(
        '{"instances": [[1,2],[3,4],[[5,6]]]}', default=t.DT_INT32
    )
    assert "Expecting shape" in parse_error('{"instances": [1, [1]]}', default=t.DT_INT32)
    assert "not of expected type" in parse_error(
        '{"instances": [[1,2],["a", "b"]]}', default=t.DT_INT32
    )
    dbl_max = repr(float(np.finfo(np.float64).max))
    assert "loss of precision" in parse_error(f'{{ "instances": [{dbl_max}] }}', default=t.DT_FLOAT)
    assert "loss of precision" in parse_error('{ "instances": [16777217] }', default=t.DT_FLOAT)
    assert "loss of precision" in parse_error(
        '{ "instances": [9007199254740993] }', default=t.DT_DOUBLE
    )


def test_MultipleNamedTensorErrors():
    two = dict(int_tensor=t.DT_INT32, str_tensor=t.DT_STRING)
    assert "Expecting shape" in parse_error(
        """{"instances": [
             {"int_tensor": [[1,2],[3,4],[5,6]], "str_tensor": ["foo", "bar"]},
             {"int_tensor": [[[7,8],[9,0],[1,2]]], "str_tensor": ["baz", "bat"]}]}""",
        **two,
    )
    assert "Expecting tensor size" in parse_error(
        """{"instances": [
             {"int_tensor": [[1,2],[3,4],[5,6],[7,8]], "str_tensor": ["foo", "bar"]},
             {"int_tensor": [[7,8],[9,0],[1,2]], "str_tensor": ["baz", "bat"]}]}""",
        **two,
    )
    assert "Expecting object but got list" in parse_error(
        """{"instances": [
             {"int_tensor": [[1,2],[3,4],[5,6]], "str_tensor": ["foo", "bar"]},
             [1, 20, 30],
             {"int_tensor": [[[7,8],[9,0],[1,2]]], "str_tensor": ["baz", "bat"]}]}""",
        **two,
    )
    assert "Expecting value/list but got object" in parse_error(
        '{"instances": [["baz", "bar"], {"str_tensor": ["baz", "bat"]}]}',
        str_tensor=t.DT_STRING,
    )


# ---------------------------------------------------------------------------
# Predict request rules beyond json_tensor_test.cc
# ---------------------------------------------------------------------------


def test_exact_messages_match_tf_serving():
    assert (
        parse_error('{"instances": [[1,2],[3,4],[5,6,7]]}', default=t.DT_INT32)
        == "Failed to process element: 2 of 'instances' list. Error: INVALID_ARGUMENT: "
        "Expecting tensor size: 2 but got: 3"
    )
    assert (
        parse_error('{"instances": [1, [1]]}', default=t.DT_INT32)
        == "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
        "Expecting shape [] but got: [1]"
    )
    assert (
        parse_error('{"instances": [[1,2],["a", "b"]]}', default=t.DT_INT32)
        == "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
        'JSON Value: "a" Type: String is not of expected type: int32'
    )
    assert (
        parse_error('{"instances": []}', default=t.DT_INT32)
        == "JSON Value: {\n    \"instances\": []\n} No values in 'instances' array"
    )
    assert parse_error('{"foo": 1}', default=t.DT_INT32) == "Missing 'inputs' or 'instances' key"
    assert (
        parse_error('{"instances": 5}', default=t.DT_INT32)
        == "JSON Value: {\n    \"instances\": 5\n} Excepting 'instances' to be an list/array"
    )
    assert (
        parse_error('{"inputs": {"a": 1}}', x=t.DT_INT32)
        == "Missing named input: x in 'inputs' object."
    )
    assert (
        parse_error('{"inputs": [1]}', x=t.DT_INT32, y=t.DT_INT32)
        == "inputs is a plain value/list, but expecting an object as multiple input tensors "
        "required as per tensorinfo_map"
    )
    assert (
        parse_error('{"instances": [1]}', x=t.DT_INT32, y=t.DT_INT32)
        == "instances is a plain list, but expecting list of objects as multiple input "
        "tensors required as per tensorinfo_map"
    )
    assert (
        parse_error('{"instances": [1.0]}', x=t.DT_INT32)
        == "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
        "JSON Value: 1.0 Type: Number is not of expected type: int32"
    )
    assert (
        parse_error('{"inputs": [[1], [1, 2]]}', x=t.DT_INT32)
        == "Encountered list at unexpected size: 2 at level: 1 expected size: 1"
    )
    assert (
        parse_error('{"inputs": [[1], [[2]]]}', x=t.DT_INT32)
        == "Encountered list at unexpected level: 2 expected < 2"
    )
    assert (
        parse_error('{"inputs": [[1], 2]}', x=t.DT_INT32)
        == "JSON Value: 2 found at incorrect level: 2 in the JSON DOM. Expected at level: 2"
    )
    assert parse_error("[1, 2]", x=t.DT_INT32) == "JSON Value: [\n    1,\n    2\n] Is not object"


def test_named_rows_keys_must_match_inputs():
    msg = parse_error('{"instances": [{"a": 1}]}', a=t.DT_INT32, b=t.DT_INT32)
    assert msg == (
        "Failed to process element: 0 of 'instances' list. JSON object: "
        '{\n    "a": 1\n} keys must be equal to: a,b'
    )
    msg = parse_error('{"instances": [{"a": 1, "c": 2}]}', a=t.DT_INT32, b=t.DT_INT32)
    assert msg == (
        "Failed to process element: 0 key: c of 'instances' list. Error: "
        "INVALID_ARGUMENT: JSON object: does not have named input: c"
    )


def test_integer_types_reject_decimals_and_out_of_range():
    for dtype in (t.DT_INT8, t.DT_INT16, t.DT_INT32, t.DT_INT64, t.DT_UINT8, t.DT_UINT32):
        assert "is not of expected type" in parse_error('{"inputs": [1.0]}', x=dtype)
        assert "is not of expected type" in parse_error('{"inputs": [true]}', x=dtype)
    assert "not of expected type: uint8" in parse_error('{"inputs": [256]}', x=t.DT_UINT8)
    assert "not of expected type: uint8" in parse_error('{"inputs": [-1]}', x=t.DT_UINT8)
    assert "not of expected type: int8" in parse_error('{"inputs": [128]}', x=t.DT_INT8)
    assert "not of expected type: int32" in parse_error('{"inputs": [2147483648]}', x=t.DT_INT32)
    assert "not of expected type: uint64" in parse_error('{"inputs": [-1]}', x=t.DT_UINT64)
    assert_array(parse('{"inputs": [0, 255]}', x=t.DT_UINT8).inputs["x"], [0, 255], np.uint8)
    assert_array(
        parse('{"inputs": [18446744073709551615]}', x=t.DT_UINT64).inputs["x"],
        [2**64 - 1],
        np.uint64,
    )
    assert_array(
        parse('{"inputs": [-9223372036854775808]}', x=t.DT_INT64).inputs["x"],
        [-(2**63)],
        np.int64,
    )


def test_bool_and_string_types():
    assert_array(parse('{"inputs": [true, false]}', x=t.DT_BOOL).inputs["x"], [1, 0], bool)
    assert "not of expected type: bool" in parse_error('{"inputs": [1]}', x=t.DT_BOOL)
    assert "not of expected type: string" in parse_error('{"inputs": [1]}', x=t.DT_STRING)
    req = parse('{"inputs": ["caf\\u00e9", "\\u0000x"]}', x=t.DT_STRING)
    assert req.inputs["x"].tolist() == ["café".encode(), b"\x00x"]


def test_float_types_accept_ints_and_nonfinite_tokens():
    req = parse('{"inputs": [1, -2, 0.5, NaN, Infinity, -Infinity]}', x=t.DT_FLOAT)
    assert_array(req.inputs["x"], [1, -2, 0.5, math.nan, math.inf, -math.inf], np.float32)
    assert_array(
        parse('{"inputs": [16777215, -16777215]}', x=t.DT_FLOAT).inputs["x"],
        [16777215, -16777215],
        np.float32,
    )
    assert "loss of precision" in parse_error('{"inputs": [-16777216]}', x=t.DT_FLOAT)
    assert "not of expected type: float" in parse_error('{"inputs": [true]}', x=t.DT_FLOAT)
    assert "not of expected type: double" in parse_error('{"inputs": ["1"]}', x=t.DT_DOUBLE)


def test_rapidjson_non_finite_spellings():
    # kParseNanAndInfFlag also takes Inf, -Inf and -NaN; strings are left alone.
    req = parse(
        '{"inputs": {"x": [Inf, -Inf, -NaN], "s": ["Inf \\" NaN"]}}', x=t.DT_DOUBLE, s=t.DT_STRING
    )
    assert_array(req.inputs["x"], [math.inf, -math.inf, math.nan], np.float64)
    assert req.inputs["s"].tolist() == [b'Inf " NaN']
    assert parse_error('{"inputs": [Infinit]}', x=t.DT_FLOAT).startswith("JSON Parse error")


def test_integers_beyond_uint64_are_doubles_like_rapidjson():
    # NaN sends the body through the stdlib parser, which keeps big integers exact;
    # RapidJSON stores integers beyond uint64 as doubles, so float inputs accept them.
    req = parse('{"instances": [NaN, 100000000000000000000000]}', x=t.DT_DOUBLE)
    assert_array(req.inputs["x"], [math.nan, 1e23], np.float64)
    req = parse(
        '{"instances": [{"x": NaN, "y": 100000000000000000000000}]}', x=t.DT_FLOAT, y=t.DT_FLOAT
    )
    assert_array(req.inputs["y"], [1e23], np.float32)
    assert "not of expected type: int64" in parse_error(
        '{"inputs": [NaN, 100000000000000000000000]}', x=t.DT_INT64
    )


def test_number_overflow_becomes_infinity():
    req = parse('{"inputs": [1e400, -1e400, 1.0]}', x=t.DT_FLOAT)
    assert_array(req.inputs["x"], [math.inf, -math.inf, 1.0], np.float32)
    req = parse('{"inputs": [1e400]}', x=t.DT_DOUBLE)
    assert_array(req.inputs["x"], [math.inf], np.float64)


def test_half_and_bfloat16_inputs():
    req = parse('{"inputs": [0.5, 2]}', x=t.DT_HALF)
    assert req.inputs["x"].dtype == np.float16
    assert req.inputs["x"].tolist() == [0.5, 2.0]
    req = parse('{"inputs": [[0.5, 2]]}', x=t.DT_BFLOAT16)
    assert req.inputs["x"].astype(np.float32).tolist() == [[0.5, 2.0]]


def test_unsupported_input_dtype_is_unimplemented():
    with pytest.raises(ServingError) as info:
        parse('{"inputs": [1]}', x=t.DT_COMPLEX64)
    assert info.value.code == grpc.StatusCode.UNIMPLEMENTED
    assert info.value.message == "Conversion of JSON Value: 1 to type: complex64"


def test_b64_rules():
    assert parse('{"inputs": {"b64": "aGk"}}', x=t.DT_STRING).inputs["x"].item() == b"hi"
    assert parse('{"inputs": {"b64": "aG Vs\\nbG8="}}', x=t.DT_STRING).inputs["x"].item() == (
        b"hello"
    )
    assert "Unable to base64 decode" in parse_error('{"inputs": [{"b64": "!!!"}]}', x=t.DT_STRING)
    # Only DT_STRING takes b64 objects.
    assert "Type: Object is not of expected type: int32" in parse_error(
        '{"inputs": [{"b64": "aGk="}]}', x=t.DT_INT32
    )
    # Exactly one key named b64 holding a string.
    msg = parse_error('{"inputs": [{"b64": "aGk=", "x": 1}]}', x=t.DT_STRING)
    assert "not formatted correctly for base64 data" in msg
    msg = parse_error('{"instances": [[{"b64": 1}]]}', x=t.DT_STRING)
    assert "not formatted correctly for base64 data" in msg


def test_columnar_scalars_and_empty_lists():
    req = parse(
        '{"inputs": {"a": 3, "b": [], "c": [[], []]}}', a=t.DT_INT64, b=t.DT_FLOAT, c=t.DT_STRING
    )
    assert req.inputs["a"].shape == () and req.inputs["a"].item() == 3
    assert req.inputs["b"].shape == (0,) and req.inputs["b"].dtype == np.float32
    assert req.inputs["c"].shape == (2, 0) and req.inputs["c"].dtype == object
    # Extra keys in "inputs" are ignored, as TF Serving does.
    assert list(parse('{"inputs": {"a": 1, "zzz": 2}}', a=t.DT_INT32).inputs) == ["a"]


def test_malformed_json():
    msg = parse_error('{"instances": [1,2', x=t.DT_INT32)
    assert msg.startswith("JSON Parse error: ") and "at offset: " in msg
    assert parse_error(b'{"inputs": ["\xff"]}', x=t.DT_STRING).startswith(
        "JSON Parse error: Invalid encoding in string."
    )
    deep = '{"inputs": ' + "[" * 5000 + "]" * 5000 + "}"
    assert parse_error(deep, x=t.DT_INT32).startswith("JSON Parse error")


def test_signature_name_selects_specs_with_one_parse():
    seen = []

    def lookup(name: str):
        seen.append(name)
        if name == "missing":
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, "no such signature")
        return specs(x=t.DT_FLOAT if name == "f" else t.DT_INT32)

    req = jt.parse_predict_request(b'{"signature_name": "f", "inputs": [1]}', lookup)
    assert req.signature_name == "f" and req.inputs["x"].dtype == np.float32
    req = jt.parse_predict_request(b'{"inputs": [1]}', lookup)
    assert req.signature_name == "" and req.inputs["x"].dtype == np.int32
    with pytest.raises(ServingError) as info:
        jt.parse_predict_request(b'{"signature_name": "missing", "inputs": [1]}', lookup)
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert seen == ["f", "", "missing"]
    assert "Failed to get input map for signature: DEFAULT" in parse_error('{"inputs": [1]}')
    # Split API: decode once, then read the name and the inputs.
    doc = jt.decode_body(b'{"signature_name": "s", "instances": [[1.5]]}')
    assert jt.signature_name_of(doc) == "s"
    inputs, fmt = jt.inputs_from_doc(doc, specs(x=t.DT_DOUBLE))
    assert fmt == ROW and inputs["x"].tolist() == [[1.5]]


def _random_json_value(rng: np.random.Generator, shape: tuple[int, ...], dtype: int) -> object:
    n = int(np.prod(shape))
    if dtype == t.DT_FLOAT:
        vals = [float(v) for v in rng.standard_normal(n).astype(np.float32)]
        vals[: n // 3] = [int(v) for v in rng.integers(-1000, 1000, n // 3)]
    elif dtype == t.DT_DOUBLE:
        vals = rng.standard_normal(n).tolist()
    elif dtype == t.DT_INT64:
        vals = rng.integers(-(2**62), 2**62, n).tolist()
    elif dtype == t.DT_BOOL:
        vals = [bool(v) for v in rng.integers(0, 2, n)]
    else:
        vals = [
            f"s{i}" if i % 2 else {"b64": base64.b64encode(b"%d" % i).decode()} for i in range(n)
        ]
    arr = np.empty(n, dtype=object)
    arr[:] = vals
    return arr.reshape(shape).tolist()


@pytest.mark.parametrize("dtype", [t.DT_FLOAT, t.DT_DOUBLE, t.DT_INT64, t.DT_BOOL, t.DT_STRING])
@pytest.mark.parametrize("shape", [(), (5,), (3, 4), (2, 3, 2), (2, 0)])
def test_fast_path_equals_exact_replica(dtype, shape):
    value = _random_json_value(np.random.default_rng(1), shape, dtype)
    fast = jt._fast_array(value, dtype, DecodeBudget(), "x")
    slow, _ = jt._slow_tensor(value, dtype)
    assert fast is not None
    assert fast.dtype == slow.dtype and fast.shape == slow.shape == shape
    assert (
        fast.tobytes() == slow.tobytes() if fast.dtype != object else fast.tolist() == slow.tolist()
    )


def test_row_and_columnar_agree():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, 3)).astype(np.float32)
    b = rng.integers(0, 100, (4,))
    rows = [{"a": a[i].tolist(), "b": int(b[i])} for i in range(4)]
    body_row = json.dumps({"instances": rows})
    body_col = json.dumps({"inputs": {"a": a.tolist(), "b": b.tolist()}})
    row = parse(body_row, a=t.DT_FLOAT, b=t.DT_INT32).inputs
    col = parse(body_col, a=t.DT_FLOAT, b=t.DT_INT32).inputs
    for name in ("a", "b"):
        assert row[name].tobytes() == col[name].tobytes()
    np.testing.assert_array_equal(row["a"], a)


# ---------------------------------------------------------------------------
# Predict responses (MakeJsonFromTensors)
# ---------------------------------------------------------------------------

INT_2x3x2 = np.array([[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]], np.int32)


def test_FromJsonSingleTensor():
    out = jr.format_predict_response({"int_tensor": INT_2x3x2}, ROW)
    compare_json(out, '{"predictions": [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]]}')
    out = jr.format_predict_response({"int_tensor": INT_2x3x2}, COLUMNAR)
    compare_json(out, '{"outputs": [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]]}')


def test_FromJsonSingleScalarTensor():
    x = np.array([1, 2, 3, 4, 5], np.int32)
    compare_json(
        jr.format_predict_response({"int_tensor": x}, ROW), '{"predictions": [1, 2, 3, 4, 5]}'
    )
    compare_json(
        jr.format_predict_response({"int_tensor": x}, COLUMNAR), '{"outputs": [1, 2, 3, 4, 5]}'
    )


def test_FromJsonSingleBytesTensor():
    x = np.array([[b"hello", b"world"], [b"tf", b"serving"]], dtype=object)
    out = jr.format_predict_response({"str_tensor_bytes": x}, ROW)
    compare_json(
        out,
        """{"predictions": [
          [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}],
          [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}]]}""",
    )


def test_FromJsonSingleFloatTensorSixDigitPrecision():
    x = np.array([[9000000, 999999, 0.50000], [0.0003, 0.00003, 555557.5]], np.float32)
    out = jr.format_predict_response({"float_tensor": x}, ROW)
    compare_json_as_strings(
        out, '{"predictions": [[9e+06, 999999.0, 0.5], [0.0003, 3e-05, 555557.5]]}'
    )


def test_FromJsonSingleFloatTensorNonFinite():
    x = np.array([[math.nan, math.inf], [3, -math.inf]], np.float32)
    out = jr.format_predict_response({"float_tensor": x}, ROW)
    compare_json_as_strings(out, '{"predictions": [[NaN, Infinity], [3.0, -Infinity]]}')


def format_error(outputs, fmt=ROW) -> str:
    with pytest.raises(ServingError) as info:
        jr.format_predict_response(outputs, fmt)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    return info.value.message


def test_FromJsonSingleTensorErrors():
    assert "empty tensor map" in format_error({})
    assert "tensor type: complex64" in format_error({"tensor": np.array([1, 2], np.complex64)})
    assert "no shape information" in format_error({"tensor": np.array(1, np.int32)})


def test_FromJsonMultipleNamedTensors():
    outputs = {
        "double_scalar_tensor": np.array([8.0, 9.0]),
        "float_tensor": np.array([[1.0], [2.0]], np.float32),
        "int_tensor": np.array([[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]], np.int32),
        "str_tensor": np.array([[b"foo", b"bar"], [b"baz", b"bat"]], dtype=object),
        "str_tensor_bytes": np.array([[b"hello", b"world"], [b"tf", b"serving"]], dtype=object),
    }
    compare_json(
        jr.format_predict_response(outputs, ROW),
        """{"predictions": [
          {"double_scalar_tensor": 8.0, "float_tensor": [1.0],
           "int_tensor": [[1, 2], [3, 4], [5, 6]], "str_tensor": ["foo", "bar"],
           "str_tensor_bytes": [ {"b64": "aGVsbG8="}, {"b64": "d29ybGQ="} ]},
          {"double_scalar_tensor": 9.0, "float_tensor": [2.0],
           "int_tensor": [[7, 8], [9, 0], [1, 2]], "str_tensor": ["baz", "bat"],
           "str_tensor_bytes": [ {"b64": "dGY="}, {"b64": "c2VydmluZw=="} ]}]}""",
    )
    compare_json(
        jr.format_predict_response(outputs, COLUMNAR),
        """{"outputs": {
          "double_scalar_tensor": [8.0, 9.0],
          "float_tensor": [[1.0], [2.0]],
          "int_tensor": [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]],
          "str_tensor": [["foo", "bar"], ["baz", "bat"]],
          "str_tensor_bytes": [[{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}],
                               [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}]]}}""",
    )


def test_FromJsonMultipleNamedTensorsErrors():
    outputs = {
        "int_tensor": np.array([[1, 2, 3], [4, 5, 6]], np.int32),
        "str_tensor": np.array([[b"foo", b"bar", b"baz"]], dtype=object),
    }
    msg = format_error(outputs)
    assert "inconsistent batch size" in msg
    assert msg == "Tensor name: str_tensor has inconsistent batch size: 1 expecting: 2"


def test_FromJsonSingleZeroBatchTensor():
    out = jr.format_predict_response({"int_tensor": np.zeros((0, 2), np.int32)}, ROW)
    compare_json(out, '{"predictions": []}')


def test_FromJsonMultipleZeroBatchTensors():
    outputs = {
        "str_tensor": np.zeros((0, 1, 2), dtype=object),
        "float_tensor": np.zeros((0, 3, 4), np.float32),
    }
    compare_json(jr.format_predict_response(outputs, ROW), '{"predictions": []}')


def test_FromJsonMultipleZeroBatchTensorsErrors():
    outputs = {
        "int_tensor": np.zeros((0, 2), np.int32),
        "str_tensor": np.array([[b"foo", b"bar"]], dtype=object),
    }
    assert "inconsistent batch size" in format_error(outputs)


# ---------------------------------------------------------------------------
# Response rules beyond json_tensor_test.cc
# ---------------------------------------------------------------------------


def write_decimal_oracle(v: float, single: bool) -> str:
    """TF Serving's WriteDecimal(), one element at a time (absl StrCat == %g)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    text = f"{v:g}"
    if single:
        if np.float32(text) != np.float32(v):
            text = f"{v:.9g}"
    elif float(text) != v:
        text = f"{v:.17g}"
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def _float_samples(dtype) -> np.ndarray:
    rng = np.random.default_rng(11)
    parts = [
        rng.standard_normal(2000),
        rng.uniform(0, 1, 2000),
        rng.standard_normal(2000) * 10.0 ** rng.integers(-45, 39, 2000),
        rng.integers(-(10**7), 10**7, 2000).astype(np.float64),
        rng.integers(-(2**31), 2**31, 500).astype(np.float64),
        np.array(
            [
                round(v, int(k))
                for v, k in zip(rng.uniform(-1e3, 1e3, 2000), rng.integers(0, 7, 2000), strict=True)
            ]
        ),
        np.array([0.0, -0.0, 1e6, 999999.0, 999999.5, 1e-4, 9.99999e-5, 1e-5, 0.1, 0.2, 1 / 3]),
        np.array([123456789.0, 1e9, 1e16, 1e17, 2.0**53, 2.0**24 + 2, 3.4028234663852886e38]),
        np.array([1e-45, 1.4e-45, 1.17549435e-38, 5e-324, math.nan, math.inf, -math.inf]),
    ]
    with np.errstate(over="ignore"):
        return np.concatenate(parts).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_text_matches_write_decimal_oracle(dtype):
    x = _float_samples(dtype)
    single = dtype == np.float32
    expected = [write_decimal_oracle(float(v), single) for v in x]
    assert jr._float_texts(x) == expected  # vectorized path
    for start in range(0, len(x), 5000):  # per-element path for small tensors
        chunk = x[start : start + 40]
        assert jr._float_texts(chunk) == expected[start : start + 40]
    # The text parses back to the same value.
    back = np.array(json.loads("[" + ",".join(expected) + "]"), dtype=dtype)
    np.testing.assert_array_equal(back, x)


def test_float_formatting_examples():
    x = np.array([0.1, 0.2, 1.0, 0.12345678, 1e-7, 16777216, 123456792, -0.0], np.float32)
    out = jr.format_predict_response({"y": x}, COLUMNAR)
    assert out == (b'{"outputs":[0.1,0.2,1.0,0.123456784,1e-07,16777216.0,123456792.0,-0.0]}')
    out = jr.format_predict_response({"y": np.array([0.1, 1 / 3, 2.0, 1e20])}, COLUMNAR)
    assert out == b'{"outputs":[0.1,0.33333333333333331,2.0,1e+20]}'


def test_half_bfloat16_uint16_and_int64_outputs():
    import ml_dtypes

    outputs = {
        "h": np.array([0.5, 1.0], np.float16),
        "bf": np.array([2.5, -1.0], ml_dtypes.bfloat16),
        "u16": np.array([65535, 0], np.uint16),
        "i64": np.array([2**63 - 1, -(2**63)], np.int64),
        "b": np.array([True, False]),
    }
    out = jr.format_predict_response(outputs, COLUMNAR)
    assert out == (
        b'{"outputs":{"h":[0.5,1.0],"bf":[2.5,-1.0],"u16":[65535,0],'
        b'"i64":[9223372036854775807,-9223372036854775808],"b":[true,false]}}'
    )


def test_string_outputs_text_and_invalid_utf8():
    x = np.array([b"caf\xc3\xa9", b'q"\\\n', b"\xff\xfe"], dtype=object)
    out = jr.format_predict_response({"s": x}, COLUMNAR)
    # Valid UTF-8 is JSON text; invalid bytes pass through unchanged like RapidJSON.
    assert out == b'{"outputs":["caf\xc3\xa9","q\\"\\\\\\n","\xff\xfe"]}'
    out = jr.format_predict_response({"s_bytes": x}, COLUMNAR)
    assert json.loads(out)["outputs"][2] == {"b64": base64.b64encode(b"\xff\xfe").decode()}


def test_scalar_and_shapes_with_zero_dims():
    assert jr.format_predict_response({"s": np.float32(1.5)}, COLUMNAR) == b'{"outputs":1.5}'
    assert jr.format_predict_response({"s": np.array(b"x", object)}, COLUMNAR) == b'{"outputs":"x"}'
    out = jr.format_predict_response({"a": np.zeros((2, 0, 3), np.float32)}, ROW)
    assert json.loads(out) == {"predictions": [[], []]}
    out = jr.format_predict_response(
        {"a": np.zeros((2, 3, 0), np.float32), "b": np.array([1, 2])}, ROW
    )
    assert json.loads(out) == {
        "predictions": [{"a": [[], [], []], "b": 1}, {"a": [[], [], []], "b": 2}]
    }


def test_row_output_matches_columnar_per_item():
    rng = np.random.default_rng(5)
    outputs = {
        "f": rng.standard_normal((3, 2, 2)).astype(np.float32),
        "d": rng.standard_normal(3),
        "i": rng.integers(0, 9, (3, 4)),
        "s": np.array([b"a", b"b", b"c"], dtype=object),
        "big": rng.standard_normal((3, 10, 4)).astype(np.float32),  # vectorized path
        "big64": rng.standard_normal((3, 5, 1, 9)),
    }
    rows = as_strings(jr.format_predict_response(outputs, ROW))["predictions"]
    cols = as_strings(jr.format_predict_response(outputs, COLUMNAR))["outputs"]
    for i in range(3):
        assert rows[i] == {k: v[i] for k, v in cols.items()}
    for name, single in (("big", True), ("big64", False)):
        x = outputs[name]
        texts = [write_decimal_oracle(float(v), single) for v in x.ravel()]
        expected = np.array(texts, dtype=object).reshape(x.shape).tolist()
        assert cols[name] == expected


def test_non_contiguous_outputs():
    x = np.arange(12, dtype=np.int32).reshape(3, 4)[:, ::2]
    y = np.arange(12, dtype=np.float32).reshape(3, 4).T
    out = json.loads(jr.format_predict_response({"x": x, "y": y[:3]}, ROW))
    assert out["predictions"][1] == {"x": [4, 6], "y": [1.0, 5.0, 9.0]}


# ---------------------------------------------------------------------------
# Classify / regress requests (FillClassificationRequestFromJson / Regression)
# ---------------------------------------------------------------------------


def examples_error(body: str) -> str:
    with pytest.raises(ServingError) as info:
        jt.parse_examples_request(body)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    return info.value.message


def expected_input(text: str) -> input_pb2.Input:
    return text_format.Parse(text, input_pb2.Input())


def test_RequestNoContext():
    req = jt.parse_examples_request(
        """{"examples": [
             {"names": [ "foo", "bar" ], "ratings": [ 8.0, 9.0 ], "age": 20},
             {"names": [ "baz" ], "ratings": 6.0}]}"""
    )
    assert req.signature_name == ""
    assert req.input == expected_input(
        """
        example_list {
          examples { features {
            feature { key: "names" value { bytes_list { value: "foo" value: "bar" } } }
            feature { key: "ratings" value { float_list { value: 8.0 value: 9.0 } } }
            feature { key: "age" value { int64_list { value: 20 } } }
          } }
          examples { features {
            feature { key: "names" value { bytes_list { value: "baz" } } }
            feature { key: "ratings" value { float_list { value: 6.0 } } }
          } }
        }"""
    )


def test_RequestWithContextAndSignature():
    req = jt.parse_examples_request(
        """{
          "signature_name": "custom_signture",
          "context": {"query": "pizza", "location": [ "sfo" ]},
          "examples": [
            {"names": [ "foo", "bar" ], "ratings": [ 8.0, 9.0, NaN, Infinity ], "age": 20},
            {"names": [ "baz", { "b64": "aGVsbG8=" } ], "ratings": 6.0,
             "intboolmix": [ 1, true, false ]},
            {"names": "bar", "ratings": -Infinity}
          ]}"""
    )
    assert req.signature_name == "custom_signture"
    assert req.input.WhichOneof("kind") == "example_list_with_context"
    ctx = req.input.example_list_with_context
    assert (
        ctx.context
        == expected_input(
            """example_list_with_context { context { features {
             feature { key: "query" value { bytes_list { value: "pizza" } } }
             feature { key: "location" value { bytes_list { value: "sfo" } } }
           } } }"""
        ).example_list_with_context.context
    )
    ex = ctx.examples
    assert len(ex) == 3
    ratings = list(ex[0].features.feature["ratings"].float_list.value)
    assert ratings[:2] == [8.0, 9.0] and math.isnan(ratings[2]) and ratings[3] == math.inf
    assert list(ex[0].features.feature["age"].int64_list.value) == [20]
    assert list(ex[1].features.feature["names"].bytes_list.value) == [b"baz", b"hello"]
    assert list(ex[1].features.feature["intboolmix"].int64_list.value) == [1, 1, 0]
    assert list(ex[2].features.feature["names"].bytes_list.value) == [b"bar"]
    assert list(ex[2].features.feature["ratings"].float_list.value) == [-math.inf]


def test_JsonErrors():
    assert "'signature_name' key must be a string" in examples_error(
        '{"signature_name": [ "hello" ], "examples": [ { "names": [ "foo", "bar" ] } ]}'
    )
    assert "Example must be JSON object" in examples_error(
        '{"context": [ { "names": [ "foo", "bar" ] } ]}'
    )
    assert "list/array" in examples_error('{"examples": { "names": [ "foo", "bar" ] }}')
    assert "Example must be JSON object" in examples_error(
        '{"examples": [ [ { "names": [ "foo", "bar" ] } ] ]}'
    )
    assert "names has element with unexpected JSON type: Null" in examples_error(
        '{"examples": [ { "names": [ 10, null ] } ]}'
    )
    assert "feature: names expecting type: int64" in examples_error(
        '{"examples": [ { "names": [ 10, 10.0 ] } ]}'
    )
    assert "names has element with unexpected JSON type: Object" in examples_error(
        '{"examples": [ { "names": [ 10, { "test": 10 } ] } ]}'
    )
    assert "names has element with unexpected JSON type: Array" in examples_error(
        '{"examples": [ { "names": [ [10], 20 ] } ]}'
    )
    assert "Only int64 is supported" in examples_error(
        '{"examples": [ { "names": [ 20, 18446744073709551603 ] } ]}'
    )
    assert "loss of precision" in examples_error(
        f'{{ "examples": [ {{ "names": {float(np.finfo(np.float64).max)!r} }} ] }}'
    )


def test_examples_request_more_rules():
    assert examples_error('{"examples": []}') == (
        "JSON Value: {\n    \"examples\": []\n} 'examples' value is an empty array"
    )
    assert "key 'examples' is expected and was not found" in examples_error('{"context": {}}')
    assert "expecting type: bytes" in examples_error('{"examples": [{"f": ["a", 1]}]}')
    assert "expecting type: float" in examples_error('{"examples": [{"f": [1.5, "a"]}]}')
    req = jt.parse_examples_request('{"examples": [{"empty": [], "big": 18446744073709551616}]}')
    feats = req.input.example_list.examples[0].features.feature
    assert feats["empty"].WhichOneof("kind") is None and "empty" in feats
    assert list(feats["big"].float_list.value) == [float(2**64)]


# ---------------------------------------------------------------------------
# Classify / regress responses
# ---------------------------------------------------------------------------


def test_JsonFromClassificationResult():
    result = text_format.Parse(
        """
        classifications {
          classes { label: "car" score: 0.2 }
          classes { label: "bike" score: 0.7 }
          classes { label: "bus" score: 0.1 }
        }
        classifications {
          classes { label: "car" score: 0.7 }
          classes { label: "bike" score: 0.1 }
          classes { label: "bus" score: 0.2 }
        }""",
        classification_pb2.ClassificationResult(),
    )
    out = jr.format_classify_response(result)
    compare_json(
        out,
        """{"results": [
             [ ["car", 0.2], ["bike", 0.7], ["bus", 0.1] ],
             [ ["car", 0.7], ["bike", 0.1], ["bus", 0.2] ]]}""",
    )
    assert out == (
        b'{"results":[[["car",0.2],["bike",0.7],["bus",0.1]],[["car",0.7],["bike",0.1],["bus",0.2]]]}'
    )


def test_JsonFromRegressionResult():
    result = text_format.Parse(
        "regressions { value: 0.2 } regressions { value: 0.9 } regressions { value: 1.0 }",
        regression_pb2.RegressionResult(),
    )
    out = jr.format_regress_response(result)
    compare_json(out, '{ "results": [ 0.2, 0.9, 1.0 ] }')
    assert out == b'{"results":[0.2,0.9,1.0]}'


def test_JsonFromRegressionResultWithNonFinite():
    result = text_format.Parse(
        """regressions { value: 0.2 } regressions { value: Infinity }
           regressions { value: 1.0 } regressions { value: -Infinity } regressions { value: NaN }""",
        regression_pb2.RegressionResult(),
    )
    compare_json_as_strings(
        jr.format_regress_response(result),
        '{ "results": [ 0.2, Infinity, 1.0, -Infinity, NaN ] }',
    )


def test_JsonFromResultErrors():
    with pytest.raises(ServingError, match="empty ClassificationResults"):
        jr.format_classify_response(classification_pb2.ClassificationResult())
    with pytest.raises(ServingError, match="empty RegressionResults"):
        jr.format_regress_response(regression_pb2.RegressionResult())


def test_StatusError():
    compare_json(jr.format_error('Bad key: "key"'), '{ "error": "Bad key: \\"key\\"" }')
    compare_json(jr.format_error("Bad key: 'key'"), """{ "error": "Bad key: 'key'" }""")


def test_classify_labels_are_json_escaped():
    result = classification_pb2.ClassificationResult()
    c = result.classifications.add().classes.add()
    c.label, c.score = 'a"b%s', 0.5
    assert orjson.loads(jr.format_classify_response(result)) == {"results": [[['a"b%s', 0.5]]]}
