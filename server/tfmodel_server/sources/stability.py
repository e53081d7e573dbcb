"""The stability rule both sources apply to each version they see in one poll.

A version is offered only when it is complete and its fingerprint (every file's
relative path and size, plus mtimes for a directory or ETags for a listing) is
the same as at the previous poll, so a version still being copied or uploaded is
never loaded. An offered version that is being rewritten keeps being offered
with its last stable content; one that is no longer complete is withdrawn with
a warning. FileSystemSource (directories) and ObjectStoreSource (listings) walk
their versions differently and share this one step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from tfmodel_server.core.interfaces import Fingerprint, ModelSourceState, VersionDir

log = logging.getLogger(__name__)


class StabilityRound:
    """One poll of one model: feed each version to observe(), then read seen/offered."""

    def __init__(
        self,
        state: ModelSourceState,
        last_seen: Mapping[int, Fingerprint],
        offered: Mapping[int, VersionDir],
    ) -> None:
        self.state = state
        self.last_seen = last_seen
        self.previously_offered = offered
        self.seen: dict[int, Fingerprint] = {}  # this poll's fingerprints: the next one's last_seen
        self.offered: dict[int, VersionDir] = {}  # what this poll offers

    def __contains__(self, version: int) -> bool:
        return version in self.seen

    def keep(self, version: int) -> VersionDir:
        """An offered version known unchanged by a cheaper check than a fingerprint."""
        kept = self.previously_offered[version]
        self.seen[version] = kept.fingerprint
        self.offered[version] = kept
        return kept

    def observe(
        self,
        version: int,
        path: str,
        incomplete: str | None,
        fingerprint: Callable[[], Fingerprint],
    ) -> VersionDir | None:
        """Apply the rule to `version` at `path`; returns its VersionDir when it becomes (or
        stays) offered with a fingerprint taken now, None when pending or kept as before.
        `incomplete`: why the version is not a complete model yet, or None."""
        if incomplete is not None:
            if version in self.previously_offered:
                log.warning(
                    "Servable %s version %d is no longer complete: %s",
                    self.state.name,
                    version,
                    incomplete,
                )
            self.state.pending.add(version)
            self.seen[version] = ()
            return None
        fp = fingerprint()
        self.seen[version] = fp
        if self.last_seen.get(version) == fp:
            offered = VersionDir(version, path, fp)
            self.offered[version] = offered
            return offered
        if version in self.previously_offered:
            # Being rewritten: keep offering the last stable content meanwhile.
            self.offered[version] = self.previously_offered[version]
        else:
            self.state.pending.add(version)
        return None

    def finish(self) -> None:
        self.state.complete = dict(self.offered)
