"""tensor_codec against TensorFlow's own tf.make_tensor_proto / tf.make_ndarray."""

from __future__ import annotations

import grpc
import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tfmodel_server.codecs import tensor_proto as tc
from tfmodel_server.errors import ServingError

# (DataType, numpy dtype, sample values of shape [2, 3])
_rng = np.random.default_rng(7)
CASES = [
    (types_pb2.DT_FLOAT, np.float32, _rng.standard_normal((2, 3)).astype(np.float32)),
    (types_pb2.DT_DOUBLE, np.float64, _rng.standard_normal((2, 3))),
    (types_pb2.DT_HALF, np.float16, np.array([[0.5, -1.25, 65504], [1e-4, 0, -0.0]], np.float16)),
    (
        types_pb2.DT_BFLOAT16,
        ml_dtypes.bfloat16,
        np.array([[0.5, -1.25, 3e38], [1e-4, 0, 7]], dtype=ml_dtypes.bfloat16),
    ),
    (types_pb2.DT_INT8, np.int8, np.array([[-128, 0, 127], [1, -1, 5]], np.int8)),
    (types_pb2.DT_INT16, np.int16, np.array([[-32768, 0, 32767], [1, -1, 5]], np.int16)),
    (types_pb2.DT_INT32, np.int32, np.array([[-(2**31), 0, 2**31 - 1], [1, -1, 5]], np.int32)),
    (types_pb2.DT_INT64, np.int64, np.array([[-(2**63), 0, 2**63 - 1], [1, -1, 5]], np.int64)),
    (types_pb2.DT_UINT8, np.uint8, np.array([[0, 255, 7], [1, 2, 3]], np.uint8)),
    (types_pb2.DT_UINT16, np.uint16, np.array([[0, 65535, 7], [1, 2, 3]], np.uint16)),
    (types_pb2.DT_UINT32, np.uint32, np.array([[0, 2**32 - 1, 7], [1, 2, 3]], np.uint32)),
    (types_pb2.DT_UINT64, np.uint64, np.array([[0, 2**64 - 1, 7], [1, 2, 3]], np.uint64)),
    (types_pb2.DT_BOOL, np.bool_, np.array([[True, False, True], [False, False, True]])),
    (
        types_pb2.DT_COMPLEX64,
        np.complex64,
        np.array([[1 + 2j, -3j, 0], [4, 5.5 - 1j, 2j]], np.complex64),
    ),
    (
        types_pb2.DT_COMPLEX128,
        np.complex128,
        np.array([[1 + 2j, -3j, 0], [4, 5.5 - 1j, 2j]], np.complex128),
    ),
]
IDS = [tc.dtype_name(c[0]) for c in CASES]


def _assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    assert actual.tobytes() == expected.tobytes()


def _typed_field_proto(dtype: int, values: np.ndarray) -> tensor_pb2.TensorProto:
    """A proto using the *_val field, built by TensorFlow itself (the oracle)."""
    proto = tf.make_tensor_proto(values, dtype=tf.dtypes.as_dtype(dtype))
    if proto.tensor_content:
        # make_tensor_proto prefers tensor_content for big arrays; rebuild via *_val.
        flat = values.ravel()
        proto.ClearField("tensor_content")
        field, _ = tc._FIELD[dtype]
        if dtype in (types_pb2.DT_HALF, types_pb2.DT_BFLOAT16):
            getattr(proto, field).extend(flat.view(np.uint16).tolist())
        elif dtype in (types_pb2.DT_COMPLEX64, types_pb2.DT_COMPLEX128):
            getattr(proto, field).extend(np.stack([flat.real, flat.imag], 1).ravel().tolist())
        else:
            getattr(proto, field).extend(flat.tolist())
    return proto


@pytest.mark.parametrize("dtype,np_dtype,values", CASES, ids=IDS)
def test_tensor_content_roundtrip_matches_tensorflow(dtype, np_dtype, values):
    proto = tc.to_tensor_proto(values)
    assert proto.dtype == dtype
    assert [d.size for d in proto.tensor_shape.dim] == [2, 3]
    assert proto.tensor_content  # numbers go to tensor_content
    _assert_same(tc.to_ndarray(proto), values)
    _assert_same(tf.make_ndarray(proto), values)  # TF reads what we wrote


@pytest.mark.parametrize("dtype,np_dtype,values", CASES, ids=IDS)
def test_typed_val_fields_match_tensorflow(dtype, np_dtype, values):
    proto = _typed_field_proto(dtype, values)
    assert not proto.tensor_content
    _assert_same(tc.to_ndarray(proto), values)
    _assert_same(tc.to_ndarray(proto), tf.make_ndarray(proto))


@pytest.mark.parametrize("dtype,np_dtype,values", CASES, ids=IDS)
def test_reads_tensorflow_tensor_content(dtype, np_dtype, values):
    big = np.resize(values, (40, 30))  # large enough that TF uses tensor_content
    proto = tf.make_tensor_proto(big)  # TF keeps bool/uint16/complex in *_val fields
    _assert_same(tc.to_ndarray(proto), big)


def test_half_val_holds_bit_patterns():
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_HALF)
    proto.tensor_shape.dim.add(size=3)
    proto.half_val.extend([0x3C00, 0xC000, 0x7C00])  # 1.0, -2.0, +inf
    out = tc.to_ndarray(proto)
    assert out.dtype == np.float16
    assert out.tolist() == [1.0, -2.0, float("inf")]
    np.testing.assert_array_equal(out, tf.make_ndarray(proto))


def test_bfloat16_half_val_bit_patterns():
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_BFLOAT16)
    proto.tensor_shape.dim.add(size=2)
    proto.half_val.extend([0x3F80, 0xC040])  # 1.0, -3.0
    out = tc.to_ndarray(proto)
    assert out.dtype == ml_dtypes.bfloat16
    assert out.astype(np.float32).tolist() == [1.0, -3.0]


def test_strings_roundtrip_via_string_val():
    values = np.array([[b"a", b"\xff\x00b"], ["caf\u00e9".encode(), b""]], dtype=object)
    proto = tc.to_tensor_proto(values)
    assert proto.dtype == types_pb2.DT_STRING
    assert list(proto.string_val) == [b"a", b"\xff\x00b", "caf\u00e9".encode(), b""]
    out = tc.to_ndarray(proto)
    assert out.dtype == object and out.shape == (2, 2)
    assert out.tolist() == values.tolist()
    assert tf.make_ndarray(proto).tolist() == values.tolist()
    tf_proto = tf.make_tensor_proto(values)
    assert tc.to_ndarray(tf_proto).tolist() == values.tolist()


def test_str_and_bytes_arrays_become_string_tensors():
    assert list(tc.to_tensor_proto(np.array(["x", "é"])).string_val) == [b"x", "é".encode()]
    assert list(tc.to_tensor_proto(np.array([b"x", b"yz"])).string_val) == [b"x", b"yz"]


def test_string_tensor_content_encoding():
    # TF's EncodeStringList layout: varint lengths then bytes.
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)
    proto.tensor_shape.dim.add(size=2)
    proto.tensor_content = bytes([2, 3]) + b"hi" + b"abc"
    assert tc.to_ndarray(proto).tolist() == [b"hi", b"abc"]
    proto.tensor_content = bytes([2, 9]) + b"hiabc"
    with pytest.raises(ServingError, match="malformed string tensor_content"):
        tc.to_ndarray(proto)


def test_scalar():
    proto = tc.to_tensor_proto(np.float32(2.5))
    assert len(proto.tensor_shape.dim) == 0
    out = tc.to_ndarray(proto)
    assert out.shape == () and out.dtype == np.float32 and float(out) == 2.5
    assert tc.to_ndarray(tf.make_tensor_proto(7)).tolist() == 7
    assert tc.to_ndarray(tf.make_tensor_proto(b"s")).tolist() == b"s"


def test_zero_size():
    for arr in (np.zeros((0, 3), np.float32), np.zeros((2, 0), np.int64)):
        proto = tc.to_tensor_proto(arr)
        out = tc.to_ndarray(proto)
        assert out.shape == arr.shape and out.dtype == arr.dtype
        _assert_same(tf.make_ndarray(proto), out)
    proto = tc.to_tensor_proto(np.zeros((0,), object))
    assert proto.dtype == types_pb2.DT_STRING
    assert tc.to_ndarray(proto).shape == (0,)


def test_empty_values_mean_zeros():
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    proto.tensor_shape.dim.add(size=2)
    proto.tensor_shape.dim.add(size=2)
    out = tc.to_ndarray(proto)
    np.testing.assert_array_equal(out, np.zeros((2, 2), np.float32))
    proto.dtype = types_pb2.DT_STRING
    assert tc.to_ndarray(proto).tolist() == [[b"", b""], [b"", b""]]


def test_fewer_values_repeat_the_last_one():
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32)
    proto.tensor_shape.dim.add(size=5)
    proto.int_val.extend([1, 2])
    assert tc.to_ndarray(proto).tolist() == [1, 2, 2, 2, 2]
    np.testing.assert_array_equal(tc.to_ndarray(proto), tf.make_ndarray(proto))
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)
    proto.tensor_shape.dim.add(size=3)
    proto.string_val.append(b"z")
    assert tc.to_ndarray(proto).tolist() == [b"z", b"z", b"z"]


def test_int_val_narrowing_wraps_like_static_cast():
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_UINT8)
    proto.tensor_shape.dim.add(size=2)
    proto.int_val.extend([300, -1])
    assert tc.to_ndarray(proto).tolist() == [44, 255]


def _err(proto, name=""):
    with pytest.raises(ServingError) as info:
        tc.to_ndarray(proto, name)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    return info.value.message


def test_error_more_values_than_elements():
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    proto.tensor_shape.dim.add(size=2)
    proto.float_val.extend([1, 2, 3])
    msg = _err(proto, "x")
    assert msg.startswith("tensor parsing error: x")
    assert "3 values given for a tensor of 2 elements" in msg


def test_error_bad_tensor_content_size():
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    proto.tensor_shape.dim.add(size=2)
    proto.tensor_content = b"\x00" * 7
    assert "tensor_content has 7 bytes but shape [2] of float needs 8" in _err(proto)


def test_error_unsupported_and_invalid_dtype():
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_INVALID)
    assert "unsupported dtype DT_INVALID" in _err(proto)
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_QINT8)
    assert "unsupported dtype DT_QINT8" in _err(proto)
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_RESOURCE)
    assert "unsupported dtype DT_RESOURCE" in _err(proto)


def test_error_negative_dims_and_unknown_rank():
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    proto.tensor_shape.dim.add(size=-1)
    assert "negative dimension" in _err(proto, "in")
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    proto.tensor_shape.unknown_rank = True
    assert "unknown rank" in _err(proto)


def test_error_odd_complex_values():
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_COMPLEX64)
    proto.tensor_shape.dim.add(size=1)
    proto.scomplex_val.extend([1.0, 2.0, 3.0])
    assert "odd number" in _err(proto)


def test_to_tensor_proto_casts_to_requested_dtype():
    proto = tc.to_tensor_proto(np.array([1, 2, 3]), types_pb2.DT_FLOAT)
    assert proto.dtype == types_pb2.DT_FLOAT
    assert tf.make_ndarray(proto).tolist() == [1.0, 2.0, 3.0]


def test_non_contiguous_input():
    base = np.arange(12, dtype=np.int32).reshape(3, 4)
    view = base[:, ::2].T
    _assert_same(tc.to_ndarray(tc.to_tensor_proto(view)), np.ascontiguousarray(view))


def test_dtype_helpers():
    assert tc.dtype_to_numpy(types_pb2.DT_FLOAT) == np.float32
    assert tc.dtype_to_numpy(types_pb2.DT_STRING) == np.dtype(object)
    assert tc.numpy_to_dtype(np.dtype(np.int16)) == types_pb2.DT_INT16
    assert tc.numpy_to_dtype(np.dtype(">f4")) == types_pb2.DT_FLOAT
    assert tc.numpy_to_dtype(np.dtype("U3")) == types_pb2.DT_STRING
    assert tc.numpy_to_dtype(np.dtype(ml_dtypes.bfloat16)) == types_pb2.DT_BFLOAT16
    assert tc.dtype_name(types_pb2.DT_FLOAT) == "DT_FLOAT"
    assert tc.dtype_string(types_pb2.DT_FLOAT) == "float"
    for dtype, np_dtype, _ in CASES:
        assert tc.dtype_to_numpy(dtype) == np.dtype(np_dtype)
        assert tc.numpy_to_dtype(np.dtype(np_dtype)) == dtype
    with pytest.raises(ServingError):
        tc.dtype_to_numpy(types_pb2.DT_VARIANT)
    with pytest.raises(ServingError):
        tc.numpy_to_dtype(np.dtype("M8[s]"))


@pytest.mark.parametrize("dtype,np_dtype,values", CASES, ids=IDS)
def test_typed_field_output_matches_tensorflow(dtype, np_dtype, values):
    # TF Serving's default response encoding (AsProtoField): typed *_val fields.
    proto = tc.to_tensor_proto(values, as_tensor_content=False)
    assert not proto.tensor_content
    field, _ = tc._FIELD[dtype]
    assert len(getattr(proto, field)) == values.size * (2 if values.dtype.kind == "c" else 1)
    _assert_same(tf.make_ndarray(proto), values)
    _assert_same(tc.to_ndarray(proto), values)


def test_typed_field_output_float_val_is_what_clients_read():
    x = np.arange(100_000, dtype=np.float32) / 7
    proto = tc.to_tensor_proto(x, as_tensor_content=False)
    np.testing.assert_array_equal(np.array(proto.float_val, np.float32), x)
    assert tc.to_tensor_proto(np.zeros((0, 2), np.float32), as_tensor_content=False).float_val == []
    strings = tc.to_tensor_proto(np.array([b"a"], object), as_tensor_content=False)
    assert list(strings.string_val) == [b"a"]


@pytest.mark.parametrize("np_dtype", [np.float32, np.float64, np.complex64, np.complex128])
def test_typed_field_output_large_fixed_width(np_dtype):
    rng = np.random.default_rng(2)
    x = (
        rng.standard_normal((30, 20))
        + (1j * rng.standard_normal((30, 20)) if np.dtype(np_dtype).kind == "c" else 0)
    ).astype(np_dtype)
    proto = tc.to_tensor_proto(x, as_tensor_content=False)
    assert not proto.tensor_content
    _assert_same(tf.make_ndarray(proto), x)
