"""REST responses as TF Serving's util/json_tensor.cc writes them.

Predict outputs, ClassificationResult and RegressionResult become JSON bytes. Floats are
written with 6 significant digits unless that does not round-trip, whole numbers keep
".0", NaN/Infinity are bare tokens, and string outputs whose alias ends in "_bytes" are
{"b64": ...}. Split from json_tensor.py (request parsing) to keep one concept a module.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping

import numpy as np
import orjson
from tensorflow_serving.apis import classification_pb2, regression_pb2

from tfmodel_server.codecs import tensor_proto as tc
from tfmodel_server.codecs.json_request import JsonFormat, _decimal_text
from tfmodel_server.errors import ServingError, invalid_argument

# ---------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------

_FLOAT_FORMATS_F32 = ("%g", "%.9g", "%g.0", "%.9g.0")
_FLOAT_FORMATS_F64 = ("%g", "%.17g", "%g.0", "%.17g.0")
_POW10_OFFSET = 400
# Correctly rounded powers of ten 1e-400 .. 1e399 (0 and inf at the ends), for lookups.
_POW10 = np.array([float(f"1e{k}") for k in range(-_POW10_OFFSET, _POW10_OFFSET)])
_SMALL = 64  # below this many elements, per-element Python beats numpy call overhead
_ITEM_SEP = "\x00"  # never appears in rendered JSON (strings escape it)


def _roundtrips_six_digits_f32(x: np.ndarray, d: np.ndarray, finite: np.ndarray) -> np.ndarray:
    """Whether "%g" (6 significant digits) of each float32 parses back to the same float.

    Rounds to 6 significant digits numerically instead of formatting and parsing text;
    float32 has at most one 6-digit decimal in its rounding interval, so this agrees
    with the text round trip TF Serving does.
    """
    ad = np.abs(d)
    nonzero = finite & (ad > 0)
    safe = np.where(nonzero, ad, 1.0)
    with np.errstate(all="ignore"):
        e = np.floor(np.log10(safe)).astype(np.intp) + _POW10_OFFSET
        e -= safe < _POW10[e]
        e += safe >= _POW10[e + 1]
        q = _POW10[e - 5]
        back = (np.rint(safe / q) * q).astype(np.float32)
    return ~nonzero | (back == np.abs(x))


def _float_formats(x: np.ndarray) -> tuple[list[str], tuple[float, ...]]:
    """Per-element %-formats (or NaN/Infinity literals) and their arguments, in C order.

    Together they give WriteDecimal()'s text: 6 significant digits when that parses back
    to the same value, else max_digits10; ".0" on whole numbers not in exponent form.
    """
    flat = np.ascontiguousarray(x).ravel()
    single = flat.dtype == np.float32
    with np.errstate(invalid="ignore"):  # signalling NaN payloads
        d = flat.astype(np.float64)
    finite = np.isfinite(d)
    all_finite = bool(finite.all())
    finite_vals = d if all_finite else d[finite]
    if single:
        ok6 = _roundtrips_six_digits_f32(flat, d, finite)
        formats, whole_limit = _FLOAT_FORMATS_F32, 1e9
    else:
        values = finite_vals.tolist()
        six = ("%g\x00" * len(values) % tuple(values)).split("\x00")[:-1]
        ok6 = np.ones(flat.size, dtype=bool)
        ok6[finite] = np.array(list(map(float, six)), dtype=np.float64) == finite_vals
        formats, whole_limit = _FLOAT_FORMATS_F64, 1e17
    with np.errstate(invalid="ignore"):
        whole = finite & (d == np.trunc(d)) & (np.abs(d) < np.where(ok6, 1e6, whole_limit))
    code = (~ok6).astype(np.intp) + 2 * whole
    table = np.array(formats + ("NaN", "Infinity", "-Infinity"), dtype=object)
    if not all_finite:
        code[np.isnan(d)] = 4
        code[np.isposinf(d)] = 5
        code[np.isneginf(d)] = 6
    return table[code].tolist(), tuple(finite_vals.tolist())


def _float_texts(x: np.ndarray) -> list[str]:
    """WriteDecimal text for every element of a float32/float64 array (C order)."""
    if x.size <= _SMALL:
        single = x.dtype == np.float32
        return [_decimal_text(v, single) for v in x.ravel().tolist()]
    fmts, args = _float_formats(x)
    return ("\x00".join(fmts) % args).split("\x00")


def _empty_item_text(shape: tuple[int, ...]) -> str:
    """Text of a zero-element tensor of `shape` (rank >= 1)."""
    if not shape[0]:
        return "[]"
    return "[" + ",".join([_empty_item_text(shape[1:])] * shape[0]) + "]"


def _compose(elems: list[str], shape: tuple[int, ...], split_items: bool) -> str:
    """Nested-list text from element texts (rank >= 1, no zero dims).

    With split_items, top-level items are separated by _ITEM_SEP and not bracketed.
    """
    rank = len(shape)
    if rank == 1:
        return _ITEM_SEP.join(elems) if split_items else "[" + ",".join(elems) + "]"
    n = len(elems)
    boundary = np.arange(1, n)
    depth = np.zeros(n - 1, dtype=np.intp)
    stride = 1
    for size in reversed(shape[1:]):
        stride *= size
        depth += boundary % stride == 0
    seps = ["]" * k + "," + "[" * k for k in range(rank)]
    outer = rank
    if split_items:
        seps[rank - 1] = "]" * (rank - 1) + _ITEM_SEP + "[" * (rank - 1)
        outer = rank - 1
    pieces = np.empty(2 * n - 1, dtype=object)
    pieces[0::2] = elems
    pieces[1::2] = np.array(seps, dtype=object)[depth]
    return "[" * outer + "".join(pieces.tolist()) + "]" * outer


class _Raw:
    """A tensor pre-rendered as element texts, or as %-formats plus their arguments."""

    __slots__ = ("elems", "args", "shape")

    def __init__(self, elems: list[str], shape: tuple[int, ...], args: tuple | None = None) -> None:
        self.elems = elems
        self.args = args
        self.shape = shape

    def _apply(self, text: str) -> str:
        return text % self.args if self.args is not None else text

    def whole(self) -> str:
        if not self.shape:
            return self._apply(self.elems[0])
        if 0 in self.shape:
            return _empty_item_text(self.shape)
        return self._apply(_compose(self.elems, self.shape, split_items=False))

    def items(self) -> list[str]:
        if 0 in self.shape:
            return [_empty_item_text(self.shape[1:])] * self.shape[0] if len(self.shape) > 1 else []
        return self._apply(_compose(self.elems, self.shape, split_items=True)).split(_ITEM_SEP)


def _float_raw(x: np.ndarray) -> _Raw:
    if x.size <= _SMALL:
        return _Raw(_float_texts(x), x.shape)
    fmts, args = _float_formats(x)
    return _Raw(fmts, x.shape, args)


def _bytes_text(b: bytes, as_b64: bool) -> str:
    if as_b64:
        return '{"b64":"' + base64.b64encode(b).decode("ascii") + '"}'
    # TF Serving copies string bytes as-is (RapidJSON does not validate UTF-8);
    # surrogateescape carries invalid bytes through to the final encode.
    return json.dumps(b.decode("utf-8", "surrogateescape"), ensure_ascii=False)


def _string_texts(x: np.ndarray, as_b64: bool) -> list[str]:
    return [
        _bytes_text(v if isinstance(v, bytes) else str(v).encode("utf-8"), as_b64)
        for v in x.ravel().tolist()
    ]


def _render(alias: str, x: np.ndarray) -> np.ndarray | _Raw:
    """numpy array orjson can write directly, or pre-rendered text."""
    kind = x.dtype.kind
    if kind == "f":
        if x.dtype != np.float64 and x.dtype != np.float32:
            x = x.astype(np.float32)  # half, bfloat16
        return _float_raw(x)
    if x.dtype == tc.BFLOAT16:
        return _float_raw(x.astype(np.float32))
    if kind in "iub":
        return np.ascontiguousarray(x)
    if kind in "OSU":
        return _Raw(_string_texts(x, alias.endswith("_bytes")), x.shape)
    try:
        name = tc.dtype_string(tc.numpy_to_dtype(x.dtype))
    except ServingError:
        name = str(x.dtype)
    raise invalid_argument(f"Failed to write JSON value for tensor type: {name}")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _whole_fragment(r: np.ndarray | _Raw) -> object:
    return orjson.Fragment(_encode(r.whole())) if isinstance(r, _Raw) else r


def _dumps(doc: object) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def format_predict_response(outputs: Mapping[str, np.ndarray], fmt: JsonFormat) -> bytes:
    """{"predictions": ...} (row) or {"outputs": ...} (columnar), as MakeJsonFromTensors."""
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    arrays = {alias: np.asarray(x) for alias, x in outputs.items()}
    if fmt == JsonFormat.COLUMNAR:
        rendered = {alias: _whole_fragment(_render(alias, x)) for alias, x in arrays.items()}
        if len(rendered) == 1:
            return _dumps({"outputs": next(iter(rendered.values()))})
        return _dumps({"outputs": rendered})
    if fmt != JsonFormat.ROW:
        raise invalid_argument("Invalid request format")

    batch_size = -1
    for alias, x in arrays.items():
        if x.ndim == 0:
            raise invalid_argument(f"Tensor name: {alias} has no shape information ")
        if batch_size >= 0 and x.shape[0] != batch_size:
            raise invalid_argument(
                f"Tensor name: {alias} has inconsistent batch size: {x.shape[0]} "
                f"expecting: {batch_size}"
            )
        batch_size = x.shape[0]
    if batch_size == 0:
        return b'{"predictions":[]}'
    rendered_all = {alias: _render(alias, x) for alias, x in arrays.items()}
    if len(rendered_all) == 1:
        return _dumps({"predictions": _whole_fragment(next(iter(rendered_all.values())))})
    columns = {}
    for alias, r in rendered_all.items():
        if isinstance(r, _Raw):
            columns[alias] = [orjson.Fragment(_encode(t)) for t in r.items()]
        else:
            columns[alias] = list(r)  # numpy rows / scalars, written by orjson
    rows = [{alias: col[i] for alias, col in columns.items()} for i in range(batch_size)]
    return _dumps({"predictions": rows})


def format_classify_response(result: classification_pb2.ClassificationResult) -> bytes:
    """{"results": [[[label, score], ...], ...]} (MakeJsonFromClassificationResult)."""
    if not result.classifications:
        raise invalid_argument("Cannot convert empty ClassificationResults to JSON")
    scores = np.array(
        [c.score for cl in result.classifications for c in cl.classes], dtype=np.float32
    )
    score_texts = iter(_float_texts(scores))
    rows = []
    for cl in result.classifications:
        pairs = [
            "[" + json.dumps(c.label, ensure_ascii=False) + "," + next(score_texts) + "]"
            for c in cl.classes
        ]
        rows.append("[" + ",".join(pairs) + "]")
    return _encode('{"results":[' + ",".join(rows) + "]}")


def format_regress_response(result: regression_pb2.RegressionResult) -> bytes:
    """{"results": [v, ...]} (MakeJsonFromRegressionResult)."""
    if not result.regressions:
        raise invalid_argument("Cannot convert empty RegressionResults to JSON")
    values = np.array([r.value for r in result.regressions], dtype=np.float32)
    return _encode('{"results":[' + ",".join(_float_texts(values)) + "]}")


def format_error(message: str) -> bytes:
    """{"error": message} (MakeJsonFromStatus)."""
    return _dumps({"error": message})
