"""FileSystemSource: the version dirs of each model's base path.

Like TF Serving's file_system_storage_path_source, versions are numeric
subdirectories (`00000123` is version 123). Unlike it (issue #631), a version
is only offered once its files look complete (saved_model_files.py) and its fingerprint
(relative paths, sizes and mtimes of every file) is unchanged across two
consecutive polls, so a half-copied dir is never loaded.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping

from tfmodel_server.core.interfaces import Fingerprint, ModelSourceState, VersionDir
from tfmodel_server.servables.tensorflow.saved_model_files import incomplete_reason

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


class FileSystemSource:
    """Polls base paths; remembers fingerprints between polls. poll() blocks: use a thread."""

    def __init__(self, prefer_tflite_model: bool = False) -> None:
        self._prefer_tflite_model = prefer_tflite_model
        self._lock = threading.Lock()
        self._models: dict[str, str] = {}
        self._last_seen: dict[str, dict[int, Fingerprint]] = {}
        self._offered: dict[str, dict[int, VersionDir]] = {}
        self._ignored_logged: dict[str, set[str]] = {}
        self._last_error: dict[str, str | None] = {}
        self._warned_empty: set[str] = set()

    def set_models(self, models: Mapping[str, str]) -> None:
        """name -> base_path. A model whose base path changes starts afresh."""
        with self._lock:
            for name in list(self._models):
                if models.get(name) != self._models[name]:
                    self._forget(name)
            self._models = dict(models)

    def _forget(self, name: str) -> None:
        self._last_seen.pop(name, None)
        self._offered.pop(name, None)
        self._ignored_logged.pop(name, None)
        self._last_error.pop(name, None)
        self._warned_empty.discard(name)

    def poll(self) -> dict[str, ModelSourceState]:
        with self._lock:
            return {name: self._poll_model(name, base) for name, base in self._models.items()}

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
        last_seen = self._last_seen.get(name, {})
        offered = self._offered.get(name, {})
        seen: dict[int, Fingerprint] = {}
        new_offered: dict[int, VersionDir] = {}
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
            if version in seen:
                log.warning("Servable %s: two directories for version %d", name, version)
                continue
            reason = incomplete_reason(path, self._prefer_tflite_model)
            if reason is not None:
                if version in offered:
                    log.warning(
                        "Servable %s version %d is no longer complete: %s", name, version, reason
                    )
                state.pending.add(version)
                seen[version] = ()
                continue
            fp = fingerprint_dir(path)
            seen[version] = fp
            if last_seen.get(version) == fp:
                new_offered[version] = VersionDir(version, path, fp)
            elif version in offered:
                # Being rewritten: keep offering the last stable content meanwhile.
                new_offered[version] = offered[version]
            else:
                state.pending.add(version)
        self._last_seen[name] = seen
        self._offered[name] = new_offered
        state.complete = dict(new_offered)
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
