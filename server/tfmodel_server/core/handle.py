"""ServableHandle: a request's reference on one loaded version (TF Serving's ServableHandle)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic

from tfmodel_server.core.interfaces import S


class ServableHandle(Generic[S]):
    """Holds a reference so the version cannot unload while a request uses it.

    `release` (or leaving the `with` block) drops the reference exactly once.
    """

    def __init__(self, name: str, version: int, servable: S, release: Callable[[], None]) -> None:
        self.name = name
        self.version = version
        self.servable = servable
        self._release = release
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._release()

    def __enter__(self) -> ServableHandle[S]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"ServableHandle({self.name!r}, {self.version})"
