"""The callback the API layers report each request through (metrics plug in here)."""

from __future__ import annotations

from collections.abc import Callable

import grpc

# (model_name, api, status_code, latency_seconds)
RequestObserver = Callable[[str, str, grpc.StatusCode, float], None]


def noop_observer(model: str, api: str, code: grpc.StatusCode, seconds: float) -> None:
    return None
