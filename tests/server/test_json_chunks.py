"""json_chunks: decoding a numeric array piece by piece gives exactly what the whole-body
path gives (same arrays, or the same error), on small pieces so bodies stay small."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tfmodel_server.codecs import json_chunks
from tfmodel_server.codecs import json_request as jt
from tfmodel_server.codecs.dtypes import DT_DOUBLE, DT_FLOAT, DT_INT32, DT_INT64, DT_STRING
from tfmodel_server.errors import ServingError


def _parse(body: bytes, specs) -> tuple[str, object]:
    try:
        request = jt.parse_predict_request(body, specs)
    except ServingError as e:
        return "error", (e.code, e.message)
    return "ok", {
        k: (v.dtype.str, v.shape, v.tobytes() if v.dtype != object else v.tolist())
        for k, v in request.inputs.items()
    } | {"format": request.format}


def _both(body: bytes, specs) -> tuple[tuple, tuple]:
    with pytest.MonkeyPatch.context() as m:
        m.setattr(json_chunks, "MIN_BODY_BYTES", 1)
        m.setattr(json_chunks, "_PIECE_BYTES", 7)
        split = _parse(body, specs)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(json_chunks, "MIN_BODY_BYTES", 1 << 62)
        whole = _parse(body, specs)
    return split, whole


_number = st.one_of(
    st.integers(-(2**25), 2**25),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.sampled_from([0, -0.0, 1e39, 3.4e38, 16777216, 16777217, 2**63, 1e-320]),
)


@st.composite
def _array(draw) -> object:
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    n = int(np.prod(shape))
    values = draw(st.lists(_number, min_size=n, max_size=n))
    nested = np.array(values, dtype=object).reshape(shape).tolist()
    if draw(st.integers(0, 5)) == 0 and len(nested) > 1:  # ragged
        nested[-1] = nested[-1][:-1] if isinstance(nested[-1], list) else [nested[-1]]
    return nested


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    value=_array(),
    key=st.sampled_from(["instances", "inputs"]),
    dtype=st.sampled_from([DT_FLOAT, DT_DOUBLE, DT_INT32, DT_INT64, DT_STRING]),
    compact=st.booleans(),
    extra=st.sampled_from(["", ', "signature_name": "s"', ', "signature_name": 5', ', "x": {}']),
    second_input=st.booleans(),
)
def test_pieces_equal_the_whole_body(value, key, dtype, compact, extra, second_input):
    text = json.dumps(value, separators=(",", ":") if compact else (", ", ": "))
    body = f'{{"{key}": {text}{extra}}}'.encode()
    specs = {"x": (dtype, None)}
    if second_input:
        specs["y"] = (DT_FLOAT, None)
    split, whole = _both(body, specs)
    assert split == whole


@pytest.mark.parametrize(
    "body",
    [
        b'{"signature_name": "\\"instances\\": [1, 2]", "instances": [1.0, 2.0]}',
        b'{"a": {"instances": [1, 2]}, "instances": [3.0]}',
        b'{"instances": [1, 2], "instances": [[3.0]]}',
        b'{"instances": [[1, 2], [3, 4]] ',
        b'{"instances": [[1, 2],, [3, 4]]}',
        b'{"instances": [1 2]}',
        b'{"instances": [], "inputs": [1]}',
        b'{"instances": [NaN, 1]}',
        b'{"inputs": [[[1]], [[2]], [[3, 4]]]}',
    ],
)
def test_tricky_bodies_match(body):
    split, whole = _both(body, {"x": (DT_FLOAT, None)})
    assert split == whole


def test_big_body_is_split_and_equal():
    rows = np.round(np.random.default_rng(0).random((2000, 784)), 2)
    body = json.dumps({"instances": rows.tolist()}).encode()
    assert len(body) > json_chunks.MIN_BODY_BYTES
    doc = jt.decode_body(body, split_numbers=True)
    assert type(doc["instances"]) is json_chunks.NumericValue
    inputs, fmt = jt.inputs_from_doc(doc, {"x": (DT_FLOAT, None)})
    np.testing.assert_array_equal(inputs["x"], rows.astype(np.float32))
    assert fmt == jt.JsonFormat.ROW


def test_peak_memory_of_a_big_body_stays_a_small_multiple(tmp_path):
    """bench/rest_decode_memory.py's decode measurement on an 8 MB body of short numbers
    (the worst case: 4 bytes a number). Whole-body parsing took about 18x the body."""
    from bench.rest_decode_memory import make_body, measure_decode

    body = tmp_path / "body.json"
    size = make_body(body, 8, decimals=1)
    ratio = measure_decode(body) / size
    assert ratio < 5, ratio
