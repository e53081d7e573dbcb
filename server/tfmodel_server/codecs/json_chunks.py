"""Large numeric REST tensors decoded piece by piece: the parsed JSON never exists whole.

orjson makes one Python float (24 B) in one list slot (8 B) per number and holds its
own document tree meanwhile: 15-19x the body for short numbers
(bench/rest_decode_memory.py). When a big body's "instances"/"inputs" value is an
array of plain numbers, it is left unparsed, then cut at its top-level element
boundaries into ~1 MB pieces; each piece goes through orjson and the usual fast path
and only its numpy result is kept. Any surprise returns None and the caller parses
the whole body the usual way, so errors keep their exact messages.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import orjson

MIN_BODY_BYTES = 4 << 20
_PIECE_BYTES = 256 << 10  # a piece costs ~16x its size while parsed, and holds the GIL
# A regex search holds the GIL for its whole run: over a 30 MB body that stalls the
# event loop (which waits for the GIL) for tens of ms. Scanned in windows, the
# interpreter can hand the GIL over between them.
_SCAN_BYTES = 256 << 10
_PLACEHOLDER = 7208425364218934172  # stands in for the array while the rest is parsed

_KEY = re.compile(rb'"(instances|inputs)"\s*:\s*\[')
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_NUMERIC = re.compile(rb"[^-0-9.eE+\[\],\s]")
_NUMERIC_BYTES = b"-0123456789.eE+[], \t\n\r\f\v"  # the complement of _NOT_NUMERIC
_WHITESPACE = b" \t\r\n"


@dataclass(frozen=True)
class NumericValue:
    """A top-level array of numbers still unparsed in `body[start:end]`."""

    body: bytes
    start: int
    end: int
    rank: int


def split_numeric(body: bytes) -> dict | None:
    """The body's document with its numeric "instances"/"inputs" array as a NumericValue."""
    m = _KEY.search(body)
    if m is None or not _is_string_start(body, m.start()):
        return None
    start = m.end() - 1
    end = body.rfind(b"]", start, _first_not_numeric(body, start)) + 1
    if end <= start:
        return None
    try:
        doc = orjson.loads(body[:start] + str(_PLACEHOLDER).encode() + body[end:])
    except orjson.JSONDecodeError:
        return None
    key = m.group(1).decode()
    # Also rejects a match nested in another object: the top-level key would differ.
    if type(doc) is not dict or type(doc.get(key)) is not int or doc[key] != _PLACEHOLDER:
        return None
    rank = 0
    pos = start
    while pos < end and body[pos] in b"[ \t\r\n":
        rank += body[pos] == ord("[")
        pos += 1
    doc[key] = NumericValue(body, start, end, rank)
    return doc


def _first_not_numeric(body: bytes, pos: int) -> int:
    """Offset of the first byte from `pos` that cannot be in a numeric array, or len(body).

    bytes.translate deletes the numeric bytes at memory speed; the regex (~10x slower
    over a negated class: 300 ms of a 30 MB body, all of it holding the GIL) only
    locates the byte in the one window that has one.
    """
    while pos < len(body):
        window = body[pos : pos + _SCAN_BYTES]
        if window.translate(None, _NUMERIC_BYTES):
            bad = _NOT_NUMERIC.search(window)  # one-byte class: no match spans windows
            assert bad is not None
            return pos + bad.start()
        pos += _SCAN_BYTES
    return len(body)


def _is_string_start(body: bytes, pos: int) -> bool:
    """Whether a JSON string token starts at `pos` (and it is not text inside another)."""
    for s in _STRING.finditer(body):
        if s.end() > pos:
            return s.start() == pos
    return False


def _pieces(value: NumericValue):
    """JSON arrays of consecutive top-level elements, each about _PIECE_BYTES."""
    # A top-level boundary: rank-1 closing brackets, then the comma.
    boundary = re.compile(rb"\]\s*" * (value.rank - 1) + rb",")
    body, pos, end = value.body, value.start + 1, value.end - 1
    while pos < end:
        cut = end
        if pos + _PIECE_BYTES < end:
            m = boundary.search(body, pos + _PIECE_BYTES, end)
            if m is not None:
                cut = m.end() - 1
        yield b"[" + body[pos:cut] + b"]"
        pos = cut + 1


def decode(value: NumericValue, fast: Callable[[list], np.ndarray | None]) -> np.ndarray | None:
    """The array, built with `fast` (json_request's fast path) piece by piece, or None."""
    if value.rank < 1:
        return None
    parts: list[np.ndarray] = []
    for piece in _pieces(value):
        try:
            elements = orjson.loads(piece)
        except orjson.JSONDecodeError:
            return None
        if not elements:
            return None
        arr = fast(elements)
        del elements  # this piece's Python floats go now, not at the end
        if arr is None or (parts and arr.shape[1:] != parts[0].shape[1:]):
            return None
        parts.append(arr)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
