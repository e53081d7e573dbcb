"""FileSystemSource: the version dirs of each model's base path.

Like TF Serving's file_system_storage_path_source, versions are numeric
subdirectories (`00000123` is version 123). Unlike it (issue #631), a version
is only offered once its files look complete (saved_model_files.py) and its fingerprint
(relative paths, sizes and mtimes of every file) is unchanged across two
consecutive polls, so a half-copied dir is never loaded.

Once offered, a version is not walked again: each poll compares its stamp
(the version dir's listing with sizes and mtimes, and variables.index) with
the stamp it had when offered, a few stats whatever the number of files. A
changed stamp sends it through the full check again. So a poll costs one
listing per version, not a stat of every file of every version forever.

Polls run in a worker thread; `set_models` (called on the event loop) never
waits for a poll in progress: it only swaps the model map under a short lock.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from functools import partial

from tfmodel_server.core.interfaces import Fingerprint, ModelSourceState, VersionDir
from tfmodel_server.servables.tensorflow.saved_model_files import incomplete_reason
from tfmodel_server.sources.stability import StabilityRound

__all__ = ["FileSystemSource", "ModelSourceState", "VersionDir", "fingerprint_dir", "parse_version"]

log = logging.getLogger(__name__)


def parse_version(name: str) -> int | None:
    """'00000123' -> 123; None for anything that is not a plain decimal number."""
    if not name or not name.isascii() or not name.isdigit():
        return None
    return int(name)


def fingerprint_dir(path: str) -> Fingerprint:
    """Relative path, size and mtime_ns of every file under path (sorted)."""
    entries: list[tuple[str, int, int]] = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in files:
            full = os.path.join(root, name)
            try:
                st = os.stat(full)
            except OSError:
                continue  # vanished mid-walk: the next poll sees a different fingerprint
            entries.append((os.path.relpath(full, path), st.st_size, st.st_mtime_ns))
    entries.sort()
    return tuple(entries)


Stamp = tuple[object, ...]


def version_stamp(path: str) -> Stamp | None:
    """What a cheap poll compares: the top-level entries of the version dir (names,
    sizes, mtimes: a new or replaced file, or a variables/ whose listing changed,
    shows) and variables/variables.index. None if the dir cannot be read."""
    try:
        with os.scandir(path) as it:
            entries = []
            for entry in it:
                st = entry.stat()
                entries.append((entry.name, st.st_size, st.st_mtime_ns))
        entries.sort()
        index: tuple[int, int] | None = None
        try:
            st = os.stat(os.path.join(path, "variables", "variables.index"))
            index = (st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            pass
        return (os.stat(path).st_mtime_ns, tuple(entries), index)
    except OSError:
        return None


class FileSystemSource:
    """Polls base paths; remembers fingerprints between polls. poll() blocks: use a thread."""

    def __init__(self, prefer_tflite_model: bool = False) -> None:
        self._prefer_tflite_model = prefer_tflite_model
        self._models_lock = threading.Lock()  # held for a dict swap only
        self._models: dict[str, str] = {}
        self._poll_lock = threading.Lock()  # one poll at a time; guards what follows
        self._polled_bases: dict[str, str] = {}
        self._last_seen: dict[str, dict[int, Fingerprint]] = {}
        self._offered: dict[str, dict[int, VersionDir]] = {}
        self._stamps: dict[str, dict[int, Stamp]] = {}  # of offered versions
        self._ignored_logged: dict[str, set[str]] = {}
        self._last_error: dict[str, str | None] = {}
        self._warned_empty: set[str] = set()

    def set_models(self, models: Mapping[str, str]) -> None:
        """name -> base_path. A model whose base path changes starts afresh (at the
        next poll; a poll in progress finishes with the old map and the manager
        drops its results for re-pointed models)."""
        with self._models_lock:
            self._models = dict(models)

    def _forget(self, name: str) -> None:
        self._last_seen.pop(name, None)
        self._offered.pop(name, None)
        self._stamps.pop(name, None)
        self._ignored_logged.pop(name, None)
        self._last_error.pop(name, None)
        self._warned_empty.discard(name)

    def poll(self) -> dict[str, ModelSourceState]:
        with self._poll_lock:
            with self._models_lock:
                models = dict(self._models)
            for name in list(self._polled_bases):
                if models.get(name) != self._polled_bases[name]:
                    self._forget(name)
                    del self._polled_bases[name]
            self._polled_bases.update(models)
            return {name: self._poll_model(name, base) for name, base in models.items()}

    def _poll_model(self, name: str, base_path: str) -> ModelSourceState:
        state = ModelSourceState(name=name, base_path=base_path)
        try:
            with os.scandir(base_path) as it:
                children = [(e.name, e.is_dir()) for e in it]
        except OSError as e:
            if isinstance(e, FileNotFoundError):
                state.error = f"Could not find base path {base_path} for servable {name}"
            else:
                state.error = (
                    f"Could not list base path {base_path} for servable {name}: {e.strerror or e}"
                )
            if self._last_error.get(name) != state.error:
                log.error("%s", state.error)
            self._last_error[name] = state.error
            # As TF Serving: a failed poll changes nothing, loaded versions keep serving.
            state.complete = dict(self._offered.get(name, {}))
            return state
        self._last_error[name] = None

        ignored = self._ignored_logged.setdefault(name, set())
        offered = self._offered.get(name, {})
        stamps = self._stamps.get(name, {})
        round_ = StabilityRound(state, self._last_seen.get(name, {}), offered)
        new_stamps: dict[int, Stamp] = {}
        for child, is_dir in sorted(children):
            version = parse_version(child) if is_dir else None
            if version is None:
                if child not in ignored:
                    ignored.add(child)
                    log.info(
                        "Ignoring %s under base path %s of servable %s: not a numeric "
                        "version directory",
                        child,
                        base_path,
                        name,
                    )
                continue
            path = os.path.join(base_path, child)
            if version in round_:
                log.warning("Servable %s: two directories for version %d", name, version)
                continue
            if version in offered and version in stamps:
                stamp = version_stamp(path)
                if stamp is not None and stamp == stamps[version]:
                    # Unchanged since it was offered: no walk, no completeness check.
                    round_.keep(version)
                    new_stamps[version] = stamp
                    continue
            reason = incomplete_reason(path, self._prefer_tflite_model)
            # The stamp before the walk: a change during it shows at the next poll.
            stamp = version_stamp(path) if reason is None else None
            if round_.observe(version, path, reason, partial(fingerprint_dir, path)) and stamp:
                new_stamps[version] = stamp
        self._last_seen[name] = seen = round_.seen
        self._offered[name] = round_.offered
        self._stamps[name] = new_stamps
        round_.finish()
        if not seen:
            if name not in self._warned_empty:
                self._warned_empty.add(name)
                log.warning(
                    "No versions of servable %s found under base path %s. Did you forget "
                    "to name your leaf directory as a number (eg. '/1/')?",
                    name,
                    base_path,
                )
        else:
            self._warned_empty.discard(name)
        return state
