"""Cost of encoding a PredictResponse output both ways, side by side in one run.

    .venv/bin/python -m bench.response_encoding

TF Serving's default (--enable_serialization_as_tensor_content=false) puts numbers in
the typed `float_val` field. A packed repeated float is, on the wire, the raw
little-endian bytes behind a tag and a length, so tfmodel writes it from the numpy
buffer (codecs/tensor_proto.py); this compares that with tensor_content and with the
per-element `float_val.extend(array.tolist())` a straightforward encoder would do.
Reported: microseconds per encode+serialize (best of 5 repeats) and the ratios.
"""

from __future__ import annotations

import timeit

import numpy as np
from tensorflow.core.framework import tensor_pb2, types_pb2
from tfmodel_server.codecs.tensor_proto import to_tensor_proto

SIZES = (10, 1_000, 100_000)


def _naive_typed(array: np.ndarray) -> bytes:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    for d in array.shape:
        proto.tensor_shape.dim.add(size=d)
    proto.float_val.extend(array.ravel().tolist())
    return proto.SerializeToString()


def _micros(fn, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def main() -> None:
    print(
        "| floats | tensor_content µs | float_val (tfmodel) µs | float_val (naive) µs |"
        " typed/content | naive/typed |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in SIZES:
        array = np.random.default_rng(0).random((1, n), dtype=np.float32)
        typed = to_tensor_proto(array, as_tensor_content=False)
        assert list(typed.float_val) == _naive_proto_values(array)
        number = max(10, 200_000 // n)
        content_us = _micros(
            lambda a=array: to_tensor_proto(a, as_tensor_content=True).SerializeToString(), number
        )
        typed_us = _micros(
            lambda a=array: to_tensor_proto(a, as_tensor_content=False).SerializeToString(), number
        )
        naive_us = _micros(lambda a=array: _naive_typed(a), number)
        print(
            f"| {n} | {content_us:.1f} | {typed_us:.1f} | {naive_us:.1f} |"
            f" {typed_us / content_us:.2f} | {naive_us / typed_us:.1f} |"
        )


def _naive_proto_values(array: np.ndarray) -> list[float]:
    proto = tensor_pb2.TensorProto()
    proto.ParseFromString(_naive_typed(array))
    return list(proto.float_val)


if __name__ == "__main__":
    main()
