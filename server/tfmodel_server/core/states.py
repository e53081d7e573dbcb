"""The life of one servable version: TF Serving's LoaderHarness::State.

    START -> LOADING -> AVAILABLE -> UNLOADING -> END
      |         |                                 ^
      +---------+---------------------------------+   (cancelled or failed)

LOADING covers every attempt of one load, as TF Serving's LoaderHarness::Load
loops inside kLoading: a failed attempt with a retry left stays LOADING, its
error kept unpublished; LOADING -> END only when no retry is left (or the load
was cancelled), with the last attempt's error. So a client polling the status
reads END as final and never sees END flap back to LOADING during retries.

END -> START is a new load, never a retry: a version re-aspired after its
unload, or a failed version whose files changed on disk (harness.py refuses
to load the same failed content again). Every state change goes through
`check_transition`, so an illegal one is a bug caught where it happens.
"""

from __future__ import annotations

import enum


class VersionState(str, enum.Enum):
    """str-valued so `state == "AVAILABLE"` and JSON output read as TF Serving's names."""

    START = "START"
    LOADING = "LOADING"
    AVAILABLE = "AVAILABLE"
    UNLOADING = "UNLOADING"
    END = "END"

    def __str__(self) -> str:
        return self.value


START = VersionState.START
LOADING = VersionState.LOADING
AVAILABLE = VersionState.AVAILABLE
UNLOADING = VersionState.UNLOADING
END = VersionState.END

LEGAL_TRANSITIONS: dict[VersionState, frozenset[VersionState]] = {
    START: frozenset({LOADING, END}),  # END: cancelled before the load began
    # END: the last attempt failed (no retry left) or the load was cancelled;
    # a failed attempt with a retry left is no transition: it stays LOADING.
    LOADING: frozenset({AVAILABLE, END}),
    AVAILABLE: frozenset({UNLOADING}),
    UNLOADING: frozenset({END}),
    END: frozenset({START}),  # a new load: re-aspired, or new files on disk
}


class IllegalTransition(RuntimeError):
    """A state change the harness does not allow (a manager bug, not a user error)."""


def check_transition(current: VersionState, new: VersionState) -> VersionState:
    if new not in LEGAL_TRANSITIONS[current]:
        raise IllegalTransition(f"version state {current.value} -> {new.value} is not allowed")
    return new
