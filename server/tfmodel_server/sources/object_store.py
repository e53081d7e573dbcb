"""ObjectStoreSource: the version prefixes of s3:// base paths, and a router.

The same rules as the file system source, on listings: versions are numeric
prefixes (`models/resnet/7/`), and a version is offered only when its listing
names a complete SavedModel and the listing (every key, size and ETag) is
unchanged across two consecutive polls, so a version whose upload is still in
progress is never loaded. The VersionDir path of an offered version is its
s3:// URL: the CachingLoader (model_cache.py) downloads it when the version
policy picks it, so versions the policy never picks are never fetched.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Mapping
from functools import partial

from tfmodel_server.core.interfaces import Fingerprint, ModelSourceState, Source, VersionDir
from tfmodel_server.servables.tensorflow.saved_model_files import listing_incomplete_reason
from tfmodel_server.sources import s3
from tfmodel_server.sources.stability import StabilityRound

log = logging.getLogger(__name__)


def listing_fingerprint(objects: list[s3.ObjectInfo]) -> Fingerprint:
    """(relpath, size, ETag digest) per object: the Fingerprint shape the manager compares."""
    return tuple(
        (o.relpath, o.size, int.from_bytes(hashlib.sha256(o.etag.encode()).digest()[:7], "big"))
        for o in objects
    )


class ObjectStoreSource:
    """Polls s3:// base paths; poll() blocks (network): the manager runs it in a thread."""

    def __init__(self, settings: s3.S3Settings, prefer_tflite_model: bool = False) -> None:
        self.settings = settings
        # As for a directory: with --prefer_tflite_model, model.tflite alone is a version.
        self.prefer_tflite_model = prefer_tflite_model
        self._lock = threading.Lock()
        self._models: dict[str, str] = {}
        self._last_seen: dict[str, dict[int, Fingerprint]] = {}
        self._offered: dict[str, dict[int, VersionDir]] = {}
        self._last_error: dict[str, str | None] = {}
        self._warned_empty: set[str] = set()

    def set_models(self, models: Mapping[str, str]) -> None:
        with self._lock:
            for name in list(self._models):
                if models.get(name) != self._models[name]:
                    self._last_seen.pop(name, None)
                    self._offered.pop(name, None)
                    self._last_error.pop(name, None)
                    self._warned_empty.discard(name)
            self._models = dict(models)

    def poll(self) -> dict[str, ModelSourceState]:
        with self._lock:
            return {name: self._poll_model(name, base) for name, base in self._models.items()}

    def _poll_model(self, name: str, base_path: str) -> ModelSourceState:
        state = ModelSourceState(name=name, base_path=base_path)
        try:
            loc = s3.parse_s3_url(base_path)
            cli = s3.client(self.settings)
            groups = s3.group_by_version(s3.list_objects(cli, loc))
        except (ValueError, s3.ObjectStoreError) as e:
            state.error = f"Could not list base path {base_path} for servable {name}: {e}"
            if self._last_error.get(name) != state.error:
                log.error("%s", state.error)
            self._last_error[name] = state.error
            # As for a directory: a failed poll changes nothing, loaded versions keep serving.
            state.complete = dict(self._offered.get(name, {}))
            return state
        if self._last_error.get(name):
            log.info("Servable %s: base path %s is listed again", name, base_path)
        self._last_error[name] = None

        round_ = StabilityRound(state, self._last_seen.get(name, {}), self._offered.get(name, {}))
        for child, objects in sorted(groups.items()):
            version = int(child)
            if version in round_:
                log.warning("Servable %s: two prefixes for version %d", name, version)
                continue
            unsafe = [o.relpath for o in objects if not s3.safe_relpath(o.relpath)]
            reason = (
                f"key {unsafe[0]!r} cannot be stored as a file"
                if unsafe
                else listing_incomplete_reason(
                    {o.relpath for o in objects}, self.prefer_tflite_model
                )
            )
            url = loc.child(child).url
            round_.observe(version, url, reason, partial(listing_fingerprint, objects))
        self._last_seen[name] = seen = round_.seen
        self._offered[name] = round_.offered
        round_.finish()
        if not seen and name not in self._warned_empty:
            self._warned_empty.add(name)
            log.warning(
                "No versions of servable %s found under base path %s (versions are numeric "
                "prefixes, e.g. %s/1/saved_model.pb)",
                name,
                base_path,
                base_path.rstrip("/"),
            )
        elif seen:
            self._warned_empty.discard(name)
        return state


class RoutingSource:
    """s3:// base paths to the object-store source, everything else to the local one."""

    def __init__(self, local: Source, remote: Source) -> None:
        self.local = local
        self.remote = remote

    def set_models(self, models: Mapping[str, str]) -> None:
        self.local.set_models({n: p for n, p in models.items() if not s3.is_s3_url(p)})
        self.remote.set_models({n: p for n, p in models.items() if s3.is_s3_url(p)})

    def poll(self) -> dict[str, ModelSourceState]:
        states = self.local.poll()
        states.update(self.remote.poll())
        return states
