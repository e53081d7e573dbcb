"""The one table of TensorFlow DataTypes: enum values, numpy dtypes and names.

Request decoding, response encoding and signature checks all read it.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
from tensorflow.core.framework import types_pb2

from tfmodel_server.errors import invalid_argument

DT_FLOAT = types_pb2.DT_FLOAT
DT_DOUBLE = types_pb2.DT_DOUBLE
DT_INT32 = types_pb2.DT_INT32
DT_UINT8 = types_pb2.DT_UINT8
DT_INT16 = types_pb2.DT_INT16
DT_INT8 = types_pb2.DT_INT8
DT_STRING = types_pb2.DT_STRING
DT_COMPLEX64 = types_pb2.DT_COMPLEX64
DT_INT64 = types_pb2.DT_INT64
DT_BOOL = types_pb2.DT_BOOL
DT_BFLOAT16 = types_pb2.DT_BFLOAT16
DT_UINT16 = types_pb2.DT_UINT16
DT_COMPLEX128 = types_pb2.DT_COMPLEX128
DT_HALF = types_pb2.DT_HALF
DT_UINT32 = types_pb2.DT_UINT32
DT_UINT64 = types_pb2.DT_UINT64

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
    types_pb2.DT_INVALID: "INVALID",
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
    types_pb2.DT_QINT8: "qint8",
    types_pb2.DT_QUINT8: "quint8",
    types_pb2.DT_QINT32: "qint32",
    DT_BFLOAT16: "bfloat16",
    types_pb2.DT_QINT16: "qint16",
    types_pb2.DT_QUINT16: "quint16",
    DT_UINT16: "uint16",
    DT_COMPLEX128: "complex128",
    DT_HALF: "half",
    types_pb2.DT_RESOURCE: "resource",
    types_pb2.DT_VARIANT: "variant",
    DT_UINT32: "uint32",
    DT_UINT64: "uint64",
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
    try:
        return types_pb2.DataType.Name(dtype)
    except ValueError:
        return f"DataType({dtype})"


def dtype_string(dtype: int) -> str:
    """TF's DataTypeString, e.g. "float" (used in JSON and tensor error messages)."""
    return _TF_NAMES.get(dtype, f"unknown dtype enum ({dtype})")
