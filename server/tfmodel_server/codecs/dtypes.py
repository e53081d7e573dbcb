"""The one table of TensorFlow DataTypes: enum values, numpy dtypes and names.

Request decoding, response encoding and signature checks all read it. The enum values
are written out (they are part of TensorFlow's wire format, types.proto, and never
change) rather than read from types_pb2: importing any tensorflow.* module imports all of
TensorFlow, and the REST decode processes (codecs/decode_worker.py) must start without it.
tests/server/test_dtypes.py checks every value and name against types_pb2.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from tfmodel_server.errors import invalid_argument

DT_INVALID = 0
DT_FLOAT = 1
DT_DOUBLE = 2
DT_INT32 = 3
DT_UINT8 = 4
DT_INT16 = 5
DT_INT8 = 6
DT_STRING = 7
DT_COMPLEX64 = 8
DT_INT64 = 9
DT_BOOL = 10
DT_QINT8 = 11
DT_QUINT8 = 12
DT_QINT32 = 13
DT_BFLOAT16 = 14
DT_QINT16 = 15
DT_QUINT16 = 16
DT_UINT16 = 17
DT_COMPLEX128 = 18
DT_HALF = 19
DT_RESOURCE = 20
DT_VARIANT = 21
DT_UINT32 = 22
DT_UINT64 = 23

BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
_OBJECT = np.dtype(object)

# DataType -> numpy dtype of the resulting array (strings are object arrays of bytes).
NUMPY_DTYPES: dict[int, np.dtype] = {
    DT_FLOAT: np.dtype(np.float32),
    DT_DOUBLE: np.dtype(np.float64),
    DT_INT32: np.dtype(np.int32),
    DT_UINT8: np.dtype(np.uint8),
    DT_INT16: np.dtype(np.int16),
    DT_INT8: np.dtype(np.int8),
    DT_STRING: _OBJECT,
    DT_COMPLEX64: np.dtype(np.complex64),
    DT_INT64: np.dtype(np.int64),
    DT_BOOL: np.dtype(np.bool_),
    DT_BFLOAT16: BFLOAT16,
    DT_UINT16: np.dtype(np.uint16),
    DT_COMPLEX128: np.dtype(np.complex128),
    DT_HALF: np.dtype(np.float16),
    DT_UINT32: np.dtype(np.uint32),
    DT_UINT64: np.dtype(np.uint64),
}

_FROM_NUMPY: dict[np.dtype, int] = {v: k for k, v in NUMPY_DTYPES.items() if k != DT_STRING}

# TF's DataTypeString(): the lower-case names used in most TF/TF Serving messages.
_TF_NAMES: dict[int, str] = {
    DT_INVALID: "INVALID",
    DT_FLOAT: "float",
    DT_DOUBLE: "double",
    DT_INT32: "int32",
    DT_UINT8: "uint8",
    DT_INT16: "int16",
    DT_INT8: "int8",
    DT_STRING: "string",
    DT_COMPLEX64: "complex64",
    DT_INT64: "int64",
    DT_BOOL: "bool",
    DT_QINT8: "qint8",
    DT_QUINT8: "quint8",
    DT_QINT32: "qint32",
    DT_BFLOAT16: "bfloat16",
    DT_QINT16: "qint16",
    DT_QUINT16: "quint16",
    DT_UINT16: "uint16",
    DT_COMPLEX128: "complex128",
    DT_HALF: "half",
    DT_RESOURCE: "resource",
    DT_VARIANT: "variant",
    DT_UINT32: "uint32",
    DT_UINT64: "uint64",
}

_ENUM_NAMES: dict[int, str] = {
    value: name
    for name, value in globals().items()
    if name.startswith("DT_") and type(value) is int
}


def dtype_to_numpy(dtype: int) -> np.dtype:
    """numpy dtype for a DataType enum value; INVALID_ARGUMENT if unsupported."""
    try:
        return NUMPY_DTYPES[dtype]
    except KeyError:
        raise invalid_argument(f"Unsupported tensor dtype: {dtype_name(dtype)}") from None


def numpy_to_dtype(np_dtype: np.dtype) -> int:
    """DataType enum value for a numpy dtype (object / bytes / str -> DT_STRING)."""
    found = _FROM_NUMPY.get(np_dtype)
    if found is not None:
        return found
    np_dtype = np.dtype(np_dtype)
    if np_dtype.kind in "OSU":
        return DT_STRING
    try:
        return _FROM_NUMPY[np_dtype.newbyteorder("=") if np_dtype.byteorder != "|" else np_dtype]
    except KeyError:
        raise invalid_argument(f"Unsupported numpy dtype: {np_dtype}") from None


def dtype_name(dtype: int) -> str:
    """Enum name as TF Serving prints it (DataType_Name), e.g. "DT_FLOAT"."""
    name = _ENUM_NAMES.get(dtype)
    if name is not None:
        return name
    from tensorflow.core.framework import types_pb2  # the rest (_REF types, float8 ...)

    try:
        return types_pb2.DataType.Name(dtype)
    except ValueError:
        return f"DataType({dtype})"


def dtype_string(dtype: int) -> str:
    """TF's DataTypeString, e.g. "float" (used in JSON and tensor error messages)."""
    return _TF_NAMES.get(dtype, f"unknown dtype enum ({dtype})")
