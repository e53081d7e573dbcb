"""LoaderHarness: the manager's record of one version of one model.

Owns the version's state (states.py), its servable once loaded, the handle
refcount that defers an unload, and the retry bookkeeping for failed loads.
Not thread-safe by itself: the manager calls it under its lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic

import grpc

from tfmodel_server.core.interfaces import Fingerprint, S, VersionDir
from tfmodel_server.core.states import (
    AVAILABLE,
    END,
    LOADING,
    START,
    UNLOADING,
    VersionState,
    check_transition,
)
from tfmodel_server.errors import ServingError


@dataclass
class VersionStatus:
    version: int
    state: VersionState
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""


class LoaderHarness(Generic[S]):
    def __init__(self, model: str, version: int, path: str) -> None:
        self.model = model
        self.version = version
        self.path = path
        self.fingerprint: Fingerprint | None = None  # content of the last load attempt
        self.state: VersionState = START
        self.error: ServingError | None = None
        self.servable: S | None = None
        self.refcount = 0
        self.unload_pending = False  # UNLOADING, waiting for the last handle
        self.cancel_load = False  # un-aspired while its load is queued
        self.failures = 0  # consecutive failed attempts on the same content
        self.retry_at: float | None = None  # loop time of the next attempt
        self.generation = 0  # load attempts scheduled
        self.completed_generation = 0  # load attempts finished

    def _to(self, new: VersionState) -> None:
        self.state = check_transition(self.state, new)

    @property
    def loading(self) -> bool:
        """A load attempt is queued or running."""
        return self.state in (START, LOADING) and self.generation > self.completed_generation

    # --- load ---------------------------------------------------------------
    def schedule_load(self, version_dir: VersionDir) -> None:
        """A new attempt on version_dir's content (a new record, a retry, or new files)."""
        if self.state != START:
            self._to(START)
        self.path = version_dir.path
        self.fingerprint = version_dir.fingerprint
        self.error = None
        self.cancel_load = False
        self.retry_at = None
        self.generation += 1

    def begin_loading(self) -> None:
        self._to(LOADING)

    def load_succeeded(self, servable: S) -> None:
        self._to(AVAILABLE)
        self.servable = servable
        self.failures = 0
        self.completed_generation = self.generation

    def load_failed(self, error: ServingError) -> None:
        self._to(END)
        self.error = error
        self.failures += 1
        self.completed_generation = self.generation

    def load_cancelled(self) -> None:
        self._to(END)
        self.completed_generation = self.generation

    def may_retry(self, max_retries: int) -> bool:
        return self.failures <= max_retries

    # --- unload -------------------------------------------------------------
    def begin_unload(self) -> bool:
        """AVAILABLE -> UNLOADING; True when no handle is held and the unload can run now."""
        self._to(UNLOADING)
        if self.refcount > 0:
            self.unload_pending = True
            return False
        return True

    def unloaded(self) -> None:
        self._to(END)
        self.servable = None
        self.unload_pending = False

    # --- handles ------------------------------------------------------------
    def acquire(self) -> S:
        assert self.state == AVAILABLE and self.servable is not None
        self.refcount += 1
        return self.servable

    def release(self) -> bool:
        """Drop one reference; True when this was the last one an unload waited for."""
        self.refcount -= 1
        if self.refcount > 0 or not self.unload_pending:
            return False
        self.unload_pending = False
        return True

    def status(self) -> VersionStatus:
        if self.error is None:
            return VersionStatus(self.version, self.state)
        return VersionStatus(self.version, self.state, self.error.code, self.error.message)
