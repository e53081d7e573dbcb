"""TensorProto <-> numpy without tf.make_tensor_proto / tf.make_ndarray.

Follows TensorFlow's Tensor::FromProto: `tensor_content` holds the raw little-endian
buffer; otherwise the typed `*_val` field is used, where no values mean zeros and fewer
values than elements repeat the last one. We are stricter in one place: more values than
elements (which TF silently truncates) is rejected as a malformed request.
"""

from __future__ import annotations

import sys

import numpy as np
from tensorflow.core.framework.tensor_pb2 import TensorProto

from tfmodel_server.codecs.dtypes import (  # noqa: F401  (re-exported: tc.DT_FLOAT etc.)
    BFLOAT16,
    DT_BFLOAT16,
    DT_BOOL,
    DT_COMPLEX64,
    DT_COMPLEX128,
    DT_DOUBLE,
    DT_FLOAT,
    DT_HALF,
    DT_INT8,
    DT_INT16,
    DT_INT32,
    DT_INT64,
    DT_STRING,
    DT_UINT8,
    DT_UINT16,
    DT_UINT32,
    DT_UINT64,
    NUMPY_DTYPES,
    dtype_name,
    dtype_string,
    dtype_to_numpy,
    numpy_to_dtype,
)
from tfmodel_server.codecs.limits import DecodeBudget, element_count, shape_string, tensor_error
from tfmodel_server.errors import ServingError, invalid_argument

# Typed value field per dtype (TF's ProtoHelper<T>). half and bfloat16 carry uint16 bit
# patterns in the int32 `half_val`; complex fields interleave real and imaginary parts.
_FIELD: dict[int, tuple[str, np.dtype]] = {
    DT_FLOAT: ("float_val", np.dtype(np.float32)),
    DT_DOUBLE: ("double_val", np.dtype(np.float64)),
    DT_INT32: ("int_val", np.dtype(np.int32)),
    DT_UINT8: ("int_val", np.dtype(np.int32)),
    DT_INT16: ("int_val", np.dtype(np.int32)),
    DT_INT8: ("int_val", np.dtype(np.int32)),
    DT_UINT16: ("int_val", np.dtype(np.int32)),
    DT_INT64: ("int64_val", np.dtype(np.int64)),
    DT_BOOL: ("bool_val", np.dtype(np.bool_)),
    DT_UINT32: ("uint32_val", np.dtype(np.uint32)),
    DT_UINT64: ("uint64_val", np.dtype(np.uint64)),
    DT_HALF: ("half_val", np.dtype(np.int32)),
    DT_BFLOAT16: ("half_val", np.dtype(np.int32)),
    DT_COMPLEX64: ("scomplex_val", np.dtype(np.float32)),
    DT_COMPLEX128: ("dcomplex_val", np.dtype(np.float64)),
}

_LITTLE_ENDIAN = sys.byteorder == "little"


def _parse_error(name: str, detail: str) -> ServingError:
    return tensor_error(name, detail)


def _shape_of(proto: TensorProto, name: str) -> tuple[int, ...]:
    shape_proto = proto.tensor_shape
    if shape_proto.unknown_rank:
        raise _parse_error(name, "tensor_shape has unknown rank")
    dims = tuple(d.size for d in shape_proto.dim)
    element_count(dims, name)  # rank, negative dims, int64 overflow: before anything else
    return dims


def _decode_string_list(content: bytes, n: int, name: str) -> list[bytes]:
    """TF's EncodeStringList format: n varint32 lengths, then the concatenated bytes."""
    lengths = []
    pos = 0
    size = len(content)
    for _ in range(n):
        value = 0
        shift = 0
        while True:
            if pos >= size or shift > 28:
                raise _parse_error(name, "malformed string tensor_content")
            byte = content[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        lengths.append(value)
    if pos + sum(lengths) != size:
        raise _parse_error(name, "malformed string tensor_content")
    out = []
    for length in lengths:
        out.append(content[pos : pos + length])
        pos += length
    return out


def _object_array(values: list[bytes], shape: tuple[int, ...]) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr.reshape(shape)


def to_ndarray(
    proto: TensorProto, name: str = "", budget: DecodeBudget | None = None
) -> np.ndarray:
    """numpy array holding the TensorProto's value; INVALID_ARGUMENT if malformed.

    The declared shape is charged to `budget` (the request's; a default-sized one if
    None) before anything is allocated. Numeric arrays decoded from tensor_content are
    read-only views of the proto bytes (no copy); `name` (the input alias) is only used
    in error messages.
    """
    dtype = proto.dtype
    np_dtype = NUMPY_DTYPES.get(dtype)
    if np_dtype is None:
        raise _parse_error(name, f"unsupported dtype {dtype_name(dtype)}")
    shape = _shape_of(proto, name)
    if budget is None:
        budget = DecodeBudget()

    content = proto.tensor_content
    if content:
        if dtype == DT_STRING:
            n = budget.charge_tensor(shape, np_dtype, name, len(content))
            return _object_array(_decode_string_list(content, n, name), shape)
        n = budget.charge_tensor(shape, np_dtype, name)
        expected = n * np_dtype.itemsize
        if len(content) != expected:
            raise _parse_error(
                name,
                f"tensor_content has {len(content)} bytes but shape {shape_string(shape)} "
                f"of {dtype_string(dtype)} needs {expected}",
            )
        arr = np.frombuffer(
            content, dtype=np_dtype if _LITTLE_ENDIAN else np_dtype.newbyteorder("<")
        )
        if not _LITTLE_ENDIAN:
            arr = arr.astype(np_dtype)
        return arr.reshape(shape)

    if dtype == DT_STRING:
        values = list(proto.string_val)
        n = element_count(shape, name)
        _check_count(len(values), n, name)
        # TF copies the repeated last value into every missing element.
        repeated = (n - len(values)) * (len(values[-1]) if values else 0)
        budget.charge_tensor(shape, np_dtype, name, sum(map(len, values)) + repeated)
        if len(values) < n:
            values = values + [values[-1] if values else b""] * (n - len(values))
        return _object_array(values, shape)

    n = budget.charge_tensor(shape, np_dtype, name)
    field, field_dtype = _FIELD[dtype]
    raw = np.array(getattr(proto, field), dtype=field_dtype)
    if dtype == DT_COMPLEX64 or dtype == DT_COMPLEX128:
        if raw.size % 2:
            raise _parse_error(name, f"{field} has an odd number of values")
        raw = raw.view(np_dtype)
    elif dtype == DT_HALF or dtype == DT_BFLOAT16:
        raw = raw.astype(np.uint16).view(np_dtype)
    elif raw.dtype != np_dtype:
        raw = raw.astype(np_dtype)  # int_val -> int8/16, uint8/16 wraps like TF's static_cast
    count = raw.size
    _check_count(count, n, name)
    if count == n:
        return raw.reshape(shape)
    if count == 0:
        return np.zeros(shape, dtype=np_dtype)
    out = np.empty(n, dtype=np_dtype)
    out[:count] = raw
    out[count:] = raw[-1]
    return out.reshape(shape)


def _check_count(count: int, n: int, name: str) -> None:
    if count > n:
        raise _parse_error(name, f"{count} values given for a tensor of {n} elements")


def _to_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytearray, memoryview, np.bytes_)):
        return bytes(value)
    raise invalid_argument(f"Cannot encode {type(value).__name__} value in a string tensor")


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Typed fields holding fixed-width values: filled from raw little-endian bytes by merging
# a packed field, which costs a memcpy instead of one Python float per element.
_FIXED_WIDTH = {
    DT_FLOAT: "float_val",
    DT_DOUBLE: "double_val",
    DT_COMPLEX64: "scomplex_val",
    DT_COMPLEX128: "dcomplex_val",
}


def _packed_field_bytes(field: str, raw: bytes) -> bytes:
    number = TensorProto.DESCRIPTOR.fields_by_name[field].number
    return _varint((number << 3) | 2) + _varint(len(raw)) + raw


def to_tensor_proto(
    array: np.ndarray, dtype: int | None = None, *, as_tensor_content: bool = True
) -> TensorProto:
    """TensorProto for `array`; `dtype` (a DataType enum) casts the array first when given.

    Numbers go to tensor_content (TF Serving's --enable_serialization_as_tensor_content),
    or with as_tensor_content=False to the typed *_val fields as TF's AsProtoField writes
    them (TF Serving's default, which clients reading e.g. `float_val` rely on).
    Strings always go to string_val.
    """
    array = np.asarray(array)
    if dtype is None:
        dtype = numpy_to_dtype(array.dtype)
    proto = TensorProto(dtype=dtype)
    dims = proto.tensor_shape.dim
    for d in array.shape:
        dims.add(size=d)
    if dtype == DT_STRING:
        if array.dtype.kind == "S":
            values = array.ravel().tolist()
        else:
            values = [_to_bytes(v) for v in array.ravel().tolist()]
        proto.string_val.extend(values)
        return proto
    np_dtype = dtype_to_numpy(dtype)
    if array.dtype != np_dtype:
        array = array.astype(np_dtype)
    if not _LITTLE_ENDIAN:
        array = array.astype(np_dtype.newbyteorder("<"))
    if as_tensor_content:
        proto.tensor_content = array.tobytes()
        return proto
    if array.size == 0:
        return proto
    if dtype in _FIXED_WIDTH and array.size > 64:
        proto.MergeFromString(_packed_field_bytes(_FIXED_WIDTH[dtype], array.tobytes()))
        return proto
    field, _ = _FIELD[dtype]
    if dtype == DT_HALF or dtype == DT_BFLOAT16:
        array = array.view(np.uint16)
    elif dtype == DT_COMPLEX64 or dtype == DT_COMPLEX128:
        array = array.view(np.float32 if dtype == DT_COMPLEX64 else np.float64)
    getattr(proto, field).extend(array.ravel().tolist())
    return proto
