"""What one request was served by, gathered while it runs, read when it ends.

The API layers open a RequestRecord per request (a ContextVar, so concurrent
requests on one event loop never mix); the inference layer notes which
version and signature served it and how long the TensorFlow run took. The
metrics observer reads it at the end, so every request counter and histogram
carries model, version and signature from real traffic.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class RequestRecord:
    version: int | None = None
    signature: str = ""
    runtime_seconds: float | None = None
    # Work the API layer starts once the reply has been sent (shadow traffic).
    after_reply: list[Callable[[], None]] = field(default_factory=list)


_CURRENT: ContextVar[RequestRecord | None] = ContextVar("tfmodel_request", default=None)


def begin() -> RequestRecord:
    """Start the record of the request running in this task."""
    record = RequestRecord()
    _CURRENT.set(record)
    return record


def current() -> RequestRecord | None:
    return _CURRENT.get()


def defer_after_reply(fn: Callable[[], None]) -> bool:
    """Have the API layer call `fn` after this request's reply is sent; False when no
    API layer opened a record (the caller drops the work: it is not client traffic)."""
    record = _CURRENT.get()
    if record is None:
        return False
    record.after_reply.append(fn)
    return True


def run_after_reply(record: RequestRecord | None) -> None:
    """The API layer: the reply is out; start what was deferred (each call is cheap)."""
    if record is None:
        return
    work, record.after_reply = record.after_reply, []
    for fn in work:
        fn()


def note_served(version: int, signature: str) -> None:
    record = _CURRENT.get()
    if record is not None:
        record.version, record.signature = version, signature


def note_runtime(seconds: float) -> None:
    record = _CURRENT.get()
    if record is not None:
        record.runtime_seconds = (record.runtime_seconds or 0.0) + seconds
