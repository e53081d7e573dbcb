"""What decoding one request may allocate, checked from declared shapes before allocating.

Every decoder (TensorProto, REST JSON, tf.Example inputs) asks a per-request
`DecodeBudget` for the bytes a tensor will take *before* building it, so a 27-byte
request declaring 2^40 floats is refused instead of faulting TensorFlow or eating
the host's memory. TF Serving answers a tensor it cannot build with INVALID_ARGUMENT
"tensor parsing error" (predict_util.cc); so do we.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tfmodel_server.errors import ServingError, invalid_argument

# numpy's NPY_MAXDIMS. TF allows 254 (TensorShape::kMaxDimensions), but every tensor
# here is a numpy array first.
MAX_RANK = 64

# 1 GiB: a batch of 256 RGB 512x512 float32 images is 805 MB, so real models fit,
# and a few such requests in flight stay well inside a pod with several GiB.
DEFAULT_MAX_REQUEST_DECODED_BYTES = 1 << 30

# A string element costs its bytes plus a numpy object pointer (8) and TF's tstring (24).
STRING_ELEMENT_BYTES = 32

_INT64_MAX = 2**63 - 1
FLAG = "--max_request_decoded_bytes"


def tensor_error(name: str, detail: str) -> ServingError:
    """TF Serving's wording for a tensor that cannot be built."""
    prefix = f"tensor parsing error: {name}: " if name else "tensor parsing error: "
    return invalid_argument(prefix + detail)


def shape_string(shape: Sequence[int]) -> str:
    """TensorShape::DebugString format: "[2,3]"."""
    return "[" + ",".join(str(d) for d in shape) + "]"


def element_count(dims: Sequence[int], name: str = "", itemsize: int = 1) -> int:
    """Elements of a declared shape; INVALID_ARGUMENT for a rank, dim or size numpy can't hold.

    Python ints do not overflow, so the product is exact; the caller compares it with the
    budget before any allocation.
    """
    if len(dims) > MAX_RANK:
        raise tensor_error(name, f"shape has rank {len(dims)}, more than the {MAX_RANK} supported")
    n = 1
    nonzero = 1
    for d in dims:
        if d < 0:
            raise tensor_error(name, f"shape {shape_string(dims)} has a negative dimension")
        n *= d
        if d:
            nonzero *= d
    # numpy refuses such shapes even with a zero dimension ("array is too big").
    if nonzero * itemsize > _INT64_MAX:
        raise tensor_error(
            name, f"shape {_short_shape(dims)} is too large for an array (over 2**63 - 1 bytes)"
        )
    return n


def _short_shape(dims: Sequence[int]) -> str:
    text = shape_string(dims)
    return text if len(text) <= 200 else text[:200] + "...]"


class DecodeBudget:
    """The decoded bytes one request may still allocate; one per request, shared by its tensors."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_REQUEST_DECODED_BYTES) -> None:
        self.max_bytes = max_bytes
        self.used = 0

    def charge(self, nbytes: int, name: str, what: str) -> None:
        """Reserve `nbytes` for tensor `name` (`what` describes it), or INVALID_ARGUMENT."""
        if self.used + nbytes > self.max_bytes:
            raise tensor_error(
                name,
                f"{what} needs {nbytes} bytes; with the {self.used} bytes already decoded that "
                f"is over this server's limit of {self.max_bytes} bytes a request ({FLAG})",
            )
        self.used += nbytes

    def charge_tensor(
        self, dims: Sequence[int], np_dtype: np.dtype, name: str, string_bytes: int = 0
    ) -> int:
        """Check and reserve a dense tensor of `dims`; returns its element count.

        `string_bytes`: for string tensors, the payload bytes beyond the per-element cost.
        """
        n = element_count(dims, name, np_dtype.itemsize)
        per_element = STRING_ELEMENT_BYTES if np_dtype.kind == "O" else np_dtype.itemsize
        self.charge(n * per_element + string_bytes, name, f"shape {_short_shape(dims)}")
        return n
