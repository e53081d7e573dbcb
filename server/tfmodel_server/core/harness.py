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
    IllegalTransition,
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
        self.error: ServingError | None = None  # published: set only with END
        self.last_error: ServingError | None = None  # the last failed attempt's, while retrying
        self.servable: S | None = None
        self.refcount = 0
        self.unload_pending = False  # UNLOADING, waiting for the last handle
        self.cancel_load = False  # un-aspired while its load is queued or retrying
        self.attempting = False  # an attempt is queued in or running on the load pool
        self.failures = 0  # failed attempts of the current load
        self.retry_at: float | None = None  # loop time of the next attempt, while waiting
        self.generation = 0  # loads scheduled (a retry is not a new load)
        self.tried_generation = 0  # loads that have had at least one attempt finish
        # Failed, then un-aspired: aspired again it is a fresh load (TF Serving drops an
        # un-aspired errored harness), not a retry of the same files.
        self.unaspired_since_failure = False

    def _to(self, new: VersionState) -> None:
        self.state = check_transition(self.state, new)

    @property
    def loading(self) -> bool:
        """A load is under way: an attempt queued or running, or a retry to come."""
        return self.state in (START, LOADING)

    @property
    def retry_pending(self) -> bool:
        """LOADING between a failed attempt and the next one (nothing in flight)."""
        return self.state == LOADING and not self.attempting and self.retry_at is not None

    # --- load ---------------------------------------------------------------
    def schedule_load(self, version_dir: VersionDir) -> None:
        """A new load of version_dir's content: a new record, a version re-aspired
        after its unload, or a failed version's new files (never a retry)."""
        if (
            self.state == END
            and self.error is not None
            and version_dir.fingerprint == self.fingerprint
            and not self.unaspired_since_failure
        ):
            raise IllegalTransition(
                f"{self.model} version {self.version} failed on these files and has no "
                "retry left: only new files, or being aspired again, load it again"
            )
        if self.state != START:
            self._to(START)
        self._set_content(version_dir)
        self.error = None
        self.last_error = None
        self.failures = 0
        self.cancel_load = False
        self.unaspired_since_failure = False
        self.generation += 1
        self.attempting = True

    def schedule_retry(self, version_dir: VersionDir) -> None:
        """The next attempt of the current load; the state stays LOADING."""
        assert self.retry_pending, "a retry follows a failed attempt"
        self._set_content(version_dir)
        self.attempting = True

    def _set_content(self, version_dir: VersionDir) -> None:
        self.path = version_dir.path
        self.fingerprint = version_dir.fingerprint
        self.retry_at = None

    def begin_loading(self) -> None:
        """An attempt starts: START -> LOADING on the first, already LOADING on a retry."""
        if self.state != LOADING:
            self._to(LOADING)

    def load_succeeded(self, servable: S) -> None:
        self._to(AVAILABLE)
        self.servable = servable
        self.attempting = False
        self.failures = 0
        self.last_error = None
        self.tried_generation = self.generation

    def attempt_failed(self, error: ServingError) -> None:
        """One attempt failed. Nothing is published yet: the caller either waits
        for a retry (`wait_for_retry`) or ends the load (`give_up`)."""
        self.attempting = False
        self.failures += 1
        self.last_error = error
        self.tried_generation = self.generation

    def may_retry(self, max_retries: int) -> bool:
        """After a failed attempt: 1 attempt + max_retries retries, as TF Serving."""
        return self.failures <= max_retries

    def wait_for_retry(self, retry_at: float) -> None:
        self.begin_loading()  # an attempt that failed before it began leaves START
        self.retry_at = retry_at

    def give_up(self) -> None:
        """End the load: END with the last attempt's error (none if cancelled before
        any attempt ran); the only way a load that did not succeed reaches END."""
        self._to(END)
        self.error = self.last_error
        self.last_error = None
        self.attempting = False
        self.retry_at = None
        self.tried_generation = self.generation

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
