"""REST JSON <-> numpy, following TF Serving's util/json_tensor.cc.

Requests: predict bodies ("instances" row format or "inputs" columnar format) become
numpy arrays; classify/regress bodies become a tensorflow_serving Input proto.
Responses: numpy outputs, ClassificationResult and RegressionResult become JSON bytes.

Error messages are TF Serving's. Two deliberate differences: responses are written
compactly (TF Serving pretty-prints; same JSON values), and numbers too large for a double
(1e400) parse as +/-Infinity where RapidJSON rejects the document.

Speed: a fast path validates and converts whole tensors with C-level loops (map/set/
chain, numpy); only when it sees something wrong does the exact element-by-element
replica of TF Serving's walk run, to raise the right message.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import math
import re
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
import orjson

if TYPE_CHECKING:
    from tensorflow.core.example import example_pb2, feature_pb2
    from tensorflow_serving.apis import input_pb2

from tfmodel_server.codecs import dtypes as dt
from tfmodel_server.codecs import json_chunks
from tfmodel_server.codecs.limits import MAX_RANK, DecodeBudget, shape_string
from tfmodel_server.errors import ServingError, invalid_argument

# input alias -> (DataType enum, shape or None); shape is not needed for parsing.
InputSpecs = Mapping[str, tuple[int, "tuple[int, ...] | None"]]


class JsonFormat(enum.Enum):
    ROW = "row"  # {"instances": [...]} -> {"predictions": [...]}
    COLUMNAR = "columnar"  # {"inputs": ...} -> {"outputs": ...}


@dataclass(frozen=True)
class PredictRequestJson:
    signature_name: str  # "" when the body has none
    inputs: dict[str, np.ndarray]
    format: JsonFormat


@dataclass(frozen=True)
class ExamplesRequestJson:
    signature_name: str
    input: input_pb2.Input


_FLT_MAX = float(np.finfo(np.float32).max)
_MAX_ERROR_VALUE_CHARS = 4096  # TF Serving never truncates (its TODO); we cap huge dumps.

_INT_RANGES: dict[int, tuple[int, int]] = {
    dt.DT_INT8: (-(2**7), 2**7 - 1),
    dt.DT_INT16: (-(2**15), 2**15 - 1),
    dt.DT_INT32: (-(2**31), 2**31 - 1),
    dt.DT_INT64: (-(2**63), 2**63 - 1),
    dt.DT_UINT8: (0, 2**8 - 1),
    dt.DT_UINT16: (0, 2**16 - 1),
    dt.DT_UINT32: (0, 2**32 - 1),
    dt.DT_UINT64: (0, 2**64 - 1),
}
# Largest integer each float type holds exactly (IsLosslessDecimal's kMaxInt).
_FLOAT_MAX_INT: dict[int, int] = {
    dt.DT_FLOAT: 2**24 - 1,
    dt.DT_HALF: 2**24 - 1,  # half/bfloat16 are an extension: checked like float
    dt.DT_BFLOAT16: 2**24 - 1,
    dt.DT_DOUBLE: 2**53 - 1,
}


# ---------------------------------------------------------------------------
# JSON values as RapidJSON sees them (for messages and number rules)
# ---------------------------------------------------------------------------


# Parsed JSON. The decoders test exact types (`type(v) is list`, as RapidJSON's
# IsArray), which mypy does not narrow; `object` would need a cast at every step.
JsonValue = Any


def _is_json_int(v: object) -> bool:
    """An integer token RapidJSON keeps as an integer (it turns bigger ones into doubles)."""
    return type(v) is int and -(2**63) <= v < 2**64


def _as_double(v: int | float) -> float:
    """The double RapidJSON would hold; integers beyond a double's range become +/-inf."""
    try:
        return float(v)
    except OverflowError:  # v is a huge int: copysign(inf, v) would overflow again
        return math.inf if v > 0 else -math.inf


def _json_type_string(v: object) -> str:
    t = type(v)
    if v is None:
        return "Null"
    if t is bool:
        return "True" if v else "False"
    if t is dict:
        return "Object"
    if t is list:
        return "Array"
    if t is str:
        return "String"
    return "Number"


_F32 = struct.Struct("<f")


def _round_f32(v: float) -> float:
    """v rounded to float32 (inf when out of range)."""
    try:
        return _F32.unpack(_F32.pack(v))[0]
    except OverflowError:
        return math.copysign(math.inf, v)


def _decimal_text(v: float, single: bool) -> str:
    """WriteDecimal(): %g when it round-trips, else max_digits10, ".0" for whole numbers."""
    if v != v:
        return "NaN"
    if v in (math.inf, -math.inf):
        return "-Infinity" if v < 0 else "Infinity"
    text = f"{v:g}"
    if (_round_f32(float(text)) != v) if single else (float(text) != v):
        text = f"{v:.9g}" if single else f"{v:.17g}"
    if "." not in text and "e" not in text:
        text += ".0"
    return text


# Values nested deeper than this print as "..." (the walk is recursive).
_MAX_PRINT_DEPTH = 64


def _quoted(text: str) -> str:
    # Escaping is per character, so a prefix's text is a prefix of the whole text's.
    return json.dumps(text[: _MAX_ERROR_VALUE_CHARS + 1], ensure_ascii=False)


def _pretty(v: JsonValue, indent: int, out: list[str]) -> None:
    # RapidJSON PrettyWriter layout (4 spaces), as TF Serving's JsonValueToString.
    t = type(v)
    if indent > _MAX_PRINT_DEPTH and (t is dict or t is list):
        out.append("...")
        return
    if t is dict:
        if not v:
            out.append("{}")
            return
        out.append("{\n")
        pad = "    " * (indent + 1)
        for i, (k, item) in enumerate(v.items()):
            if len(out) > _MAX_ERROR_VALUE_CHARS:
                break  # past what json_value_to_string keeps: stop walking
            if i:
                out.append(",\n")
            out.append(pad + _quoted(k) + ": ")
            _pretty(item, indent + 1, out)
        out.append("\n" + "    " * indent + "}")
    elif t is list:
        if not v:
            out.append("[]")
            return
        out.append("[\n")
        pad = "    " * (indent + 1)
        for i, item in enumerate(v):
            if len(out) > _MAX_ERROR_VALUE_CHARS:
                break
            if i:
                out.append(",\n")
            out.append(pad)
            _pretty(item, indent + 1, out)
        out.append("\n" + "    " * indent + "]")
    elif t is str:
        out.append(_quoted(v))
    elif v is None:
        out.append("null")
    elif t is bool:
        out.append("true" if v else "false")
    elif t is int and _is_json_int(v):
        out.append(str(v))
    else:
        d = _as_double(v)
        # RapidJSON's IsFloat(): the double converts to float losslessly.
        single = abs(d) <= _FLT_MAX and _round_f32(d) == d
        out.append(_decimal_text(d, single))


def json_value_to_string(v: object) -> str:
    """TF Serving's JsonValueToString (pretty-printed), capped for huge values."""
    out: list[str] = []
    _pretty(v, 0, out)
    text = "".join(out)
    if len(text) > _MAX_ERROR_VALUE_CHARS:
        text = text[:_MAX_ERROR_VALUE_CHARS] + "...(truncated)"
    return text


def _type_error(v: object, dtype: int) -> ServingError:
    return invalid_argument(
        f"JSON Value: {json_value_to_string(v)} Type: {_json_type_string(v)} "
        f"is not of expected type: {dt.dtype_string(dtype)}"
    )


def _lossy_error(v: object, target: str) -> ServingError:
    return invalid_argument(
        f"Cannot convert JSON value: {json_value_to_string(v)} to {target} without loss of precision."
    )


def _format_error(v: object, *parts: str) -> ServingError:
    return invalid_argument(f"JSON Value: {json_value_to_string(v)} " + "".join(parts))


def _status_string(err: ServingError) -> str:
    # Status::ToString() of a nested error, as TF Serving embeds it.
    return f"{err.code.name}: {err.message}"


# ---------------------------------------------------------------------------
# Body parsing
# ---------------------------------------------------------------------------


# A JSON string (skipped) or one of RapidJSON's kParseNanAndInfFlag tokens.
_NON_FINITE = re.compile(rb'"(?:[^"\\]|\\.)*"|-?(?:NaN|Infinity|Inf)')


def _normalize_non_finite(match: re.Match) -> bytes:
    """Spell NaN, Inf, -Inf and -NaN the way Python's json module accepts."""
    token = match.group(0)
    if token.startswith(b'"'):
        return token
    if token.endswith(b"NaN"):
        return b"NaN"
    return b"-Infinity" if token.startswith(b"-") else b"Infinity"


def decode_body(body: bytes | str, split_numbers: bool = False) -> dict:
    """Parse a request body; INVALID_ARGUMENT unless it is a JSON object.

    orjson is the fast path; bodies it rejects go through the stdlib parser, which also
    accepts the non-finite tokens TF Serving allows (NaN, Infinity, Inf, with a sign).
    `split_numbers` (predict bodies): a big numeric "instances"/"inputs" array may be
    left as a json_chunks.NumericValue for inputs_from_doc to decode in pieces.
    """
    if not body:
        raise invalid_argument("JSON Parse error: The document is empty")
    if split_numbers and isinstance(body, bytes) and len(body) >= json_chunks.MIN_BODY_BYTES:
        doc = json_chunks.split_numeric(body)
        if doc is not None:
            return doc
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        if isinstance(body, str):
            body = body.encode("utf-8", "surrogatepass")
        if b"Inf" in body or b"NaN" in body:
            body = _NON_FINITE.sub(_normalize_non_finite, body)
        try:
            doc = json.loads(body)
        except json.JSONDecodeError as e:
            raise invalid_argument(f"JSON Parse error: {e.msg} at offset: {e.pos}") from None
        except UnicodeDecodeError as e:
            raise invalid_argument(
                f"JSON Parse error: Invalid encoding in string. at offset: {e.start}"
            ) from None
        except RecursionError:
            raise invalid_argument("JSON Parse error: document nested too deeply") from None
        except ValueError as e:  # e.g. an integer past Python's 4300-digit conversion limit
            raise invalid_argument(f"JSON Parse error: {e}") from None
    if type(doc) is not dict:
        raise _format_error(doc, "Is not object")
    return doc


def signature_name_of(doc: dict) -> str:
    """The optional "signature_name" ("" when absent)."""
    name = doc.get("signature_name")
    if name is None and "signature_name" not in doc:
        return ""
    if type(name) is not str:
        for value in doc.values():  # the message quotes the whole body: parse it all
            if type(value) is json_chunks.NumericValue:
                doc = decode_body(value.body)
                break
        raise _format_error(
            doc, "not formatted correctly. 'signature_name' key must be a string value."
        )
    return name


# ---------------------------------------------------------------------------
# JSON value -> tensor: exact replica of FillTensorProto (slow path, right messages)
# ---------------------------------------------------------------------------


def _dense_shape(v: JsonValue) -> list[int]:
    """GetDenseTensorShape: follow the first element of each nested list."""
    shape: list[int] = []
    while type(v) is list:
        if len(shape) == MAX_RANK:
            raise invalid_argument(
                f"JSON value nested too deeply: a tensor has at most {MAX_RANK} dimensions"
            )
        shape.append(len(v))
        if not v:
            break
        v = v[0]
    return shape


def _is_b64_object(v: object) -> bool:
    return type(v) is dict and len(v) == 1 and type(v.get("b64")) is str


def _b64_decode(text: str) -> bytes | None:
    # absl::Base64Unescape: standard alphabet, whitespace skipped, padding optional.
    compact = "".join(text.split())
    if len(compact) % 4:
        compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None


def _decode_b64_object(v: JsonValue) -> bytes:
    if not _is_b64_object(v):
        raise invalid_argument(
            f"JSON Value: {json_value_to_string(v)} not formatted correctly for base64 data"
        )
    decoded = _b64_decode(v["b64"])
    if decoded is None:
        raise invalid_argument("Unable to base64 decode")
    return decoded


def _convert_value(v: JsonValue, dtype: int) -> object:
    """AddValueToTensor for one scalar JSON value."""
    t = type(v)
    if dtype in _FLOAT_MAX_INT:
        if t is not int and t is not float:
            raise _type_error(v, dtype)
        if t is int and _is_json_int(v):
            if abs(v) > _FLOAT_MAX_INT[dtype]:
                raise _lossy_error(v, "double" if dtype == dt.DT_DOUBLE else "float")
            return float(v)
        d = _as_double(v)
        if dtype != dt.DT_DOUBLE and math.isfinite(d) and abs(d) > _FLT_MAX:
            raise _lossy_error(v, "float")
        return d
    if dtype in _INT_RANGES:
        lo, hi = _INT_RANGES[dtype]
        if t is not int or not lo <= v <= hi:
            raise _type_error(v, dtype)
        return v
    if dtype == dt.DT_BOOL:
        if t is not bool:
            raise _type_error(v, dtype)
        return v
    if dtype == dt.DT_STRING:
        if t is not str:
            raise _type_error(v, dtype)
        return v.encode("utf-8", "surrogatepass")
    raise ServingError(
        grpc.StatusCode.UNIMPLEMENTED,
        f"Conversion of JSON Value: {json_value_to_string(v)} to type: {dt.dtype_string(dtype)}",
    )


def _fill(v: object, level: int, dtype: int, shape: list[int], out: list) -> None:
    rank = len(shape)
    if type(v) is not list:
        if level != rank:
            raise invalid_argument(
                f"JSON Value: {json_value_to_string(v)} found at incorrect level: {level + 1} "
                f"in the JSON DOM. Expected at level: {rank}"
            )
        if type(v) is dict:
            if dtype != dt.DT_STRING:
                raise _type_error(v, dtype)
            out.append(_decode_b64_object(v))
        else:
            out.append(_convert_value(v, dtype))
        return
    if level >= rank:
        raise invalid_argument(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(v) != shape[level]:
        raise invalid_argument(
            f"Encountered list at unexpected size: {len(v)} at level: {level} "
            f"expected size: {shape[level]}"
        )
    for item in v:
        _fill(item, level + 1, dtype, shape, out)


def _values_to_array(values: list, shape: list[int], dtype: int) -> np.ndarray:
    np_dtype = dt.dtype_to_numpy(dtype)
    if dtype == dt.DT_STRING:
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
        return arr.reshape(shape)
    if dtype in _FLOAT_MAX_INT:
        arr = np.array(values, dtype=np.float64)
        return arr.astype(np_dtype).reshape(shape) if arr.size else np.zeros(shape, np_dtype)
    return np.array(values, dtype=np_dtype).reshape(shape)


def _slow_tensor(
    v: object, dtype: int, budget: DecodeBudget | None = None, name: str = ""
) -> tuple[np.ndarray, int]:
    """FillTensorProto over one JSON value: (array, element count) or the exact error.

    `budget` is charged before the array is built (None: only validating).
    """
    shape = _dense_shape(v)
    values: list = []
    _fill(v, 0, dtype, shape, values)
    if budget is not None:
        _charge(budget, shape, dtype, name, values)
    return _values_to_array(values, shape, dtype), len(values)


def _payload_len(x: object) -> int:
    # str/bytes leaves, or the text of a {"b64": ...} object (unvalidated on the fast path).
    if type(x) is str or type(x) is bytes:
        return len(x)
    if type(x) is dict and type(b64 := x.get("b64")) is str:
        return len(b64)
    return 0


def _charge(
    budget: DecodeBudget, shape: list[int], dtype: int, name: str, leaves: Iterable
) -> None:
    np_dtype = dt.dtype_to_numpy(dtype)
    payload = sum(map(_payload_len, leaves)) if dtype == dt.DT_STRING else 0
    budget.charge_tensor(shape, np_dtype, name, payload)


# ---------------------------------------------------------------------------
# Fast path: whole-tensor checks with C-level loops; None means "ask the slow path"
# ---------------------------------------------------------------------------


def _fast_rows(v: object, shape: list[int]) -> list | None:
    """The innermost lists of a dense nested list of `shape` (their concatenation is the
    leaves, which are never copied into one flat list), or None if it is not dense."""
    if not shape:
        return [[v]]
    level: list = [v]
    for i, size in enumerate(shape):
        if set(map(type, level)) - {list}:
            return None
        lengths = set(map(len, level))
        if lengths and lengths != {size}:
            return None
        if i == len(shape) - 1:
            return level
        level = list(chain.from_iterable(level))
    return level


def _fast_array(v: object, dtype: int, budget: DecodeBudget, name: str) -> np.ndarray | None:
    shape = _dense_shape(v)
    rows = _fast_rows(v, shape)
    if rows is None:
        return None
    np_dtype = dt.NUMPY_DTYPES.get(dtype)
    if np_dtype is None:
        return None
    _charge(budget, shape, dtype, name, chain.from_iterable(rows))
    if not any(rows):
        return np.zeros(shape, dtype=np_dtype) if dtype != dt.DT_STRING else np.empty(shape, object)
    types = set(map(type, chain.from_iterable(rows)))
    if dtype in _FLOAT_MAX_INT:
        return _fast_float_array(v, rows, types, dtype, np_dtype)
    if dtype in _INT_RANGES:
        if types != {int}:
            return None
        lo, hi = _INT_RANGES[dtype]
        if min(map(min, rows)) < lo or max(map(max, rows)) > hi:
            return None
        return np.array(v, dtype=np_dtype)
    leaves = list(chain.from_iterable(rows))
    if dtype == dt.DT_BOOL:
        if types != {bool}:
            return None
        return np.array(leaves, dtype=np.bool_).reshape(shape)
    if dtype == dt.DT_STRING:
        if types == {str}:
            values = [s.encode("utf-8", "surrogatepass") for s in leaves]
        elif types <= {str, dict}:
            values = []
            for x in leaves:
                if type(x) is str:
                    values.append(x.encode("utf-8", "surrogatepass"))
                elif _is_b64_object(x) and (decoded := _b64_decode(x["b64"])) is not None:
                    values.append(decoded)
                else:
                    return None
        else:
            return None
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
        return arr.reshape(shape)
    return None


def _fast_float_array(
    v: object, rows: list, types: set, dtype: int, np_dtype: np.dtype
) -> np.ndarray | None:
    """float/double/half/bfloat16 straight from the nested lists: numpy walks them in C
    and allocates only the result (no flat list, no float64 copy for float32)."""
    if not types <= {int, float}:
        return None
    if int in types:
        limit = _FLOAT_MAX_INT[dtype]
        if float in types:
            ints = [x for x in chain.from_iterable(rows) if type(x) is int]
            lo, hi = min(ints), max(ints)
        else:  # C-level min/max over the rows, no copy
            lo, hi = min(map(min, rows)), max(map(max, rows))
        if lo < -limit or hi > limit:
            return None
    if dtype not in (dt.DT_FLOAT, dt.DT_DOUBLE):  # no direct Python-float conversion
        return np.array(v, dtype=np.float64).astype(np_dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        arr = np.array(v, dtype=np_dtype)
    if dtype == dt.DT_FLOAT and float in types:
        bad = np.flatnonzero(~np.isfinite(arr))
        width = len(rows[0]) if rows else 1
        for i in bad.tolist():
            if math.isfinite(_as_double(rows[i // width][i % width])):
                return None  # a finite double beyond float's range: the exact error
    return arr


def _tensor(v: object, dtype: int, budget: DecodeBudget, name: str) -> np.ndarray:
    """One dense tensor (columnar input / whole row column) from a JSON value."""
    used = budget.used
    arr = _fast_array(v, dtype, budget, name)
    if arr is None:
        budget.used = used  # the fast path may have charged before giving up
        arr, _ = _slow_tensor(v, dtype, budget, name)
    return arr


# ---------------------------------------------------------------------------
# Predict requests
# ---------------------------------------------------------------------------


def _row_slow(instances: list, specs: InputSpecs, elements_are_objects: bool) -> None:
    """FillTensorMapFromInstancesList item by item; raises TF Serving's error."""
    names = sorted(specs)
    first_name = next(iter(specs))
    sizes: dict[str, int] = {}
    shapes: dict[str, list[int]] = {}

    def add_item(item: object, name: str) -> None:
        if name not in specs:
            raise invalid_argument(f"JSON object: does not have named input: {name}")
        _, size = _slow_tensor(item, specs[name][0])
        shape = _dense_shape(item)
        if name not in sizes:
            sizes[name], shapes[name] = size, shape
        elif sizes[name] != size:
            raise invalid_argument(f"Expecting tensor size: {sizes[name]} but got: {size}")
        elif shapes[name] != shape:
            raise invalid_argument(
                f"Expecting shape {shape_string(shapes[name])} but got: {shape_string(shape)}"
            )

    for i, elem in enumerate(instances):
        is_object = type(elem) is dict and not _is_b64_object(elem)
        if elements_are_objects:
            if not is_object:
                raise invalid_argument(f"Expecting object but got list at item {i} of input list")
            for key, item in elem.items():
                try:
                    add_item(item, key)
                except ServingError as e:
                    raise invalid_argument(
                        f"Failed to process element: {i} key: {key} of 'instances' list. "
                        f"Error: {_status_string(e)}"
                    ) from None
            if set(elem) != set(names):
                raise invalid_argument(
                    f"Failed to process element: {i} of 'instances' list. JSON object: "
                    f"{json_value_to_string(elem)} keys must be equal to: {','.join(names)}"
                )
        else:
            if is_object:
                raise invalid_argument(
                    f"Expecting value/list but got object at item {i} of input list"
                )
            try:
                add_item(elem, first_name)
            except ServingError as e:
                raise invalid_argument(
                    f"Failed to process element: {i} of 'instances' list. "
                    f"Error: {_status_string(e)}"
                ) from None


def _row_inputs(instances: list, specs: InputSpecs, budget: DecodeBudget) -> dict[str, np.ndarray]:
    first = instances[0]
    if type(first) is not dict and len(specs) > 1:
        raise invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple input "
            "tensors required as per tensorinfo_map"
        )
    elements_are_objects = type(first) is dict and not _is_b64_object(first)
    result: dict[str, np.ndarray] = {}
    used = budget.used
    if not elements_are_objects:
        name = next(iter(specs))
        if not any(map(_is_plain_object, instances)):
            arr = _fast_array(instances, specs[name][0], budget, name)
            if arr is not None:
                return {name: arr}
    else:
        names = set(specs)
        if all(type(e) is dict and e.keys() == names for e in instances):
            for name, (dtype, _) in specs.items():
                arr = _fast_array([e[name] for e in instances], dtype, budget, name)
                if arr is None:
                    break
                result[name] = arr
            else:
                return result
    budget.used = used  # the fast path gave up: its charges are void
    result.clear()
    _row_slow(instances, specs, elements_are_objects)
    # The replica found nothing wrong: build the tensors the slow way.
    if not elements_are_objects:
        name = next(iter(specs))
        arr, _ = _slow_tensor(instances, specs[name][0], budget, name)
        return {name: arr}
    return {
        name: _slow_tensor([e[name] for e in instances], dtype, budget, name)[0]
        for name, (dtype, _) in specs.items()
    }


def _is_plain_object(v: object) -> bool:
    return type(v) is dict and not _is_b64_object(v)


def _columnar_inputs(
    value: object, specs: InputSpecs, budget: DecodeBudget
) -> dict[str, np.ndarray]:
    if type(value) is not dict or _is_b64_object(value):
        if len(specs) > 1:
            raise invalid_argument(
                "inputs is a plain value/list, but expecting an object as multiple input "
                "tensors required as per tensorinfo_map"
            )
        name, (dtype, _) = next(iter(specs.items()))
        return {name: _tensor(value, dtype, budget, name)}
    result = {}
    for name, (dtype, _) in specs.items():
        if name not in value:
            raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        result[name] = _tensor(value[name], dtype, budget, name)
    return result


def inputs_from_doc(
    doc: dict, input_specs: InputSpecs, budget: DecodeBudget | None = None
) -> tuple[dict[str, np.ndarray], JsonFormat]:
    """Input arrays (keyed by alias) and the request format from a decoded predict body.

    The tensors are charged to `budget` (a default-sized one if None) before allocation.
    """
    try:
        return _inputs_from_doc(doc, input_specs, budget or DecodeBudget())
    except RecursionError:  # decoded fine, but too deep for the element walk
        raise invalid_argument("JSON value nested too deeply") from None


def _numeric_value_inputs(
    doc: dict, input_specs: InputSpecs, budget: DecodeBudget
) -> tuple[dict[str, np.ndarray], JsonFormat] | None:
    """A json_chunks.NumericValue decoded in pieces; otherwise `doc` is parsed in full."""
    key = "instances" if "instances" in doc else "inputs"
    value = doc[key]
    if len(input_specs) == 1 and not ("instances" in doc and "inputs" in doc):
        name, (dtype, _) = next(iter(input_specs.items()))
        used = budget.used
        arr = json_chunks.decode(value, lambda v: _fast_array(v, dtype, budget, name))
        if arr is not None:
            return {name: arr}, JsonFormat.ROW if key == "instances" else JsonFormat.COLUMNAR
        budget.used = used
    full = decode_body(value.body)  # anything unusual: the exact path and its messages
    doc.clear()
    doc.update(full)
    return None


def _inputs_from_doc(
    doc: dict, input_specs: InputSpecs, budget: DecodeBudget
) -> tuple[dict[str, np.ndarray], JsonFormat]:
    if any(type(v) is json_chunks.NumericValue for v in doc.values()) and input_specs:
        if (done := _numeric_value_inputs(doc, input_specs, budget)) is not None:
            return done
    if not input_specs:
        name = doc.get("signature_name") or "DEFAULT"
        raise invalid_argument(f"Failed to get input map for signature: {name}")
    has_instances = "instances" in doc
    has_inputs = "inputs" in doc
    if has_instances and has_inputs:
        raise _format_error(
            doc,
            "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist ",
        )
    if has_instances:
        instances = doc["instances"]
        if type(instances) is not list:
            raise _format_error(doc, "Excepting 'instances' to be an list/array")
        if not instances:
            raise _format_error(doc, "No values in 'instances' array")
        return _row_inputs(instances, input_specs, budget), JsonFormat.ROW
    if has_inputs:
        return _columnar_inputs(doc["inputs"], input_specs, budget), JsonFormat.COLUMNAR
    raise invalid_argument("Missing 'inputs' or 'instances' key")


def parse_predict_request(
    body: bytes | str,
    input_specs: InputSpecs | Callable[[str], InputSpecs],
    budget: DecodeBudget | None = None,
) -> PredictRequestJson:
    """Parse a predict body once.

    `input_specs` is the signature's inputs, or a function from the body's signature_name
    ("" if absent) to them (TF Serving's get_tensorinfo_map; it may raise ServingError).
    """
    doc = decode_body(body, split_numbers=True)
    signature_name = signature_name_of(doc)
    specs = input_specs(signature_name) if callable(input_specs) else input_specs
    inputs, fmt = inputs_from_doc(doc, specs, budget)
    return PredictRequestJson(signature_name=signature_name, inputs=inputs, format=fmt)


# ---------------------------------------------------------------------------
# Classify / regress requests
# ---------------------------------------------------------------------------

_KIND_NAMES = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64", None: "UNKNOWN"}


def _feature_from_json(name: str, content: JsonValue, feature: feature_pb2.Feature) -> None:
    kind: str | None = None
    ints: list[int] = []
    floats: list[float] = []
    strings: list[bytes] = []

    def want(k: str) -> None:
        nonlocal kind
        if kind is None:
            kind = k
        elif kind != k:
            raise invalid_argument(
                f"Unexpected element type in feature: {name} expecting type: {_KIND_NAMES[kind]}"
            )

    for v in content if type(content) is list else (content,):
        t = type(v)
        if t is bool:
            want("int64_list")
            ints.append(1 if v else 0)
        elif t is str:
            want("bytes_list")
            strings.append(v.encode("utf-8", "surrogatepass"))
        elif t is dict:
            if not _is_b64_object(v):
                raise invalid_argument(
                    f"Feature: {name} has element with unexpected JSON type: Object"
                )
            want("bytes_list")
            strings.append(_decode_b64_object(v))
        elif t is int and _is_json_int(v):
            want("int64_list")
            if v >= 2**63:
                raise invalid_argument(
                    f"Feature: {name} has uint64 element. Only int64 is supported."
                )
            ints.append(v)
        elif t is int or t is float:
            want("float_list")
            d = _as_double(v)
            if math.isfinite(d) and abs(d) > _FLT_MAX:
                raise _lossy_error(v, "float")
            floats.append(d)
        else:  # null or a nested list
            raise invalid_argument(
                f"Feature: {name} has element with unexpected JSON type: {_json_type_string(v)}"
            )
    if kind == "int64_list":
        feature.int64_list.value.extend(ints)
    elif kind == "float_list":
        feature.float_list.value.extend(floats)
    elif kind == "bytes_list":
        feature.bytes_list.value.extend(strings)


def _example_from_json(v: object, example: example_pb2.Example) -> None:
    from tensorflow.core.example import feature_pb2

    if type(v) is not dict:
        raise invalid_argument(f"Example must be JSON object but got JSON {_json_type_string(v)}")
    features = example.features.feature
    for name, content in v.items():
        feature = feature_pb2.Feature()
        _feature_from_json(name, content, feature)
        features[name].CopyFrom(feature)


def examples_input_from_doc(doc: dict) -> input_pb2.Input:
    """The Input proto of a decoded classify/regress body (FillClassifyRegressRequestFromJson)."""
    # Imported here: the predict path above must not import TensorFlow (the REST decode
    # processes run it without TF, codecs/decode_worker.py).
    from tensorflow_serving.apis import input_pb2

    result = input_pb2.Input()
    has_context = "context" in doc
    if has_context:
        _example_from_json(doc["context"], result.example_list_with_context.context)
    if "examples" not in doc:
        raise _format_error(
            doc, "When method is classify, key 'examples' is expected and was not found"
        )
    examples = doc["examples"]
    if type(examples) is not list:
        raise _format_error(doc, "Expecting 'examples' value to be an list/array")
    if not examples:
        raise _format_error(doc, "'examples' value is an empty array")
    target = result.example_list_with_context if has_context else result.example_list
    for v in examples:
        _example_from_json(v, target.examples.add())
    return result


def parse_examples_request(body: bytes | str) -> ExamplesRequestJson:
    """Parse a classify or regress body."""
    doc = decode_body(body)
    signature_name = signature_name_of(doc)
    try:
        examples = examples_input_from_doc(doc)
    except RecursionError:
        raise invalid_argument("JSON value nested too deeply") from None
    return ExamplesRequestJson(signature_name=signature_name, input=examples)
