"""The life of one servable version: TF Serving's LoaderHarness::State.

    START -> LOADING -> AVAILABLE -> UNLOADING -> END
      |         |                                 ^
      +---------+---------------------------------+   (cancelled or failed)

END is not final here: a failed version is retried (END -> START) and a
version whose files changed on disk is loaded again. Every state change goes
through `check_transition`, so an illegal one is a bug caught where it happens.
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
    LOADING: frozenset({AVAILABLE, END}),  # END: the load failed
    AVAILABLE: frozenset({UNLOADING}),
    UNLOADING: frozenset({END}),
    END: frozenset({START}),  # retry, or files changed on disk
}


class IllegalTransition(RuntimeError):
    """A state change the harness does not allow (a manager bug, not a user error)."""


def check_transition(current: VersionState, new: VersionState) -> VersionState:
    if new not in LEGAL_TRANSITIONS[current]:
        raise IllegalTransition(f"version state {current.value} -> {new.value} is not allowed")
    return new
