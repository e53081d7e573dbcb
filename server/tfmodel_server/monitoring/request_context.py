"""What one request was served by, gathered while it runs, read when it ends.

The API layers open a RequestRecord per request (a ContextVar, so concurrent
requests on one event loop never mix); the inference layer notes which
version and signature served it and how long the TensorFlow run took. The
metrics observer reads it at the end, so every request counter and histogram
carries model, version and signature from real traffic.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class RequestRecord:
    version: int | None = None
    signature: str = ""
    runtime_seconds: float | None = None


_CURRENT: ContextVar[RequestRecord | None] = ContextVar("tfmodel_request", default=None)


def begin() -> RequestRecord:
    """Start the record of the request running in this task."""
    record = RequestRecord()
    _CURRENT.set(record)
    return record


def current() -> RequestRecord | None:
    return _CURRENT.get()


def note_served(version: int, signature: str) -> None:
    record = _CURRENT.get()
    if record is not None:
        record.version, record.signature = version, signature


def note_runtime(seconds: float) -> None:
    record = _CURRENT.get()
    if record is not None:
        record.runtime_seconds = (record.runtime_seconds or 0.0) + seconds
