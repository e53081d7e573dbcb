"""The local cache of object-store versions, and the loader that fills it.

A version the policy picks is downloaded object by object (streamed, verified
against the listing's sizes and MD5 ETags) into a temp dir next to its final
place, then renamed into place with a manifest of the listing, then loaded from
there. A cached dir whose manifest matches the store's listing is reused as is,
so a restarted container (the cache on a pod's emptyDir) downloads nothing. The
cache holds what the manager holds: server.py evicts a version once the manager
has dropped it, never while the server is shutting down.

    <cache_dir>/s3/<bucket>/<prefix...>/<version>/{saved_model.pb, variables/, ...}
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Generic

import grpc

from tfmodel_server.core.interfaces import Loader, S
from tfmodel_server.errors import ServingError
from tfmodel_server.servables.tensorflow.saved_model_files import listing_incomplete_reason
from tfmodel_server.sources import s3

log = logging.getLogger(__name__)

MANIFEST = ".tfmodel-manifest.json"
DOWNLOADING, CACHED, FAILED = "downloading", "cached", "failed"


@dataclass
class CacheEntry:
    """What this process did for one version (GET /v1/cache, the operator's status)."""

    state: str
    bytes_fetched: int = 0  # downloaded by this process, all attempts
    bytes_total: int = 0  # the version's size in the store
    download_seconds: float = 0.0  # the last download, listing to rename
    path: str = ""
    error: str = ""


def _manifest(objects: list[s3.ObjectInfo]) -> list[dict[str, Any]]:
    return [{"path": o.relpath, "size": o.size, "etag": o.etag} for o in objects]


def _matches(directory: str, manifest: list[dict[str, Any]]) -> bool:
    """The dir holds this manifest and every file has its listed size."""
    try:
        with open(os.path.join(directory, MANIFEST), encoding="utf-8") as f:
            if json.load(f) != manifest:
                return False
        return all(
            os.path.getsize(os.path.join(directory, item["path"])) == item["size"]
            for item in manifest
        )
    except (OSError, ValueError):
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ModelCache:
    def __init__(
        self, root: str, settings: s3.S3Settings, prefer_tflite_model: bool = False
    ) -> None:
        self.root = os.path.abspath(root)
        self.settings = settings
        self.prefer_tflite_model = prefer_tflite_model
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, int], CacheEntry] = {}

    # --- layout --------------------------------------------------------------
    def dir_for(self, loc: s3.S3Location) -> str:
        return os.path.join(self.root, "s3", loc.bucket, *filter(None, loc.prefix.split("/")))

    def _entry(self, model: str, version: int) -> CacheEntry:
        return self._entries.setdefault((model, version), CacheEntry(state=DOWNLOADING))

    def status(self) -> dict[str, dict[str, dict[str, Any]]]:
        """model -> version -> entry (as JSON-ready dicts)."""
        with self._lock:
            result: dict[str, dict[str, dict[str, Any]]] = {}
            for (model, version), entry in sorted(self._entries.items()):
                result.setdefault(model, {})[str(version)] = asdict(entry)
            return result

    def bytes_fetched(self, model: str, version: int) -> int:
        with self._lock:
            entry = self._entries.get((model, version))
            return entry.bytes_fetched if entry else 0

    # --- fill ----------------------------------------------------------------
    def fetch(self, model: str, version: int, url: str) -> str:
        """The local dir holding version `url` (downloaded unless cached); blocks."""
        loc = s3.parse_s3_url(url)
        final = self.dir_for(loc)
        cli = s3.client(self.settings)
        objects = s3.list_objects(cli, loc)
        reason = listing_incomplete_reason({o.relpath for o in objects}, self.prefer_tflite_model)
        if reason is None and not all(s3.safe_relpath(o.relpath) for o in objects):
            reason = "a key cannot be stored as a file"
        if reason is not None:
            raise s3.ObjectStoreError(f"{url} is not a complete SavedModel now: {reason}")
        manifest = _manifest(objects)
        total = sum(o.size for o in objects)
        with self._lock:
            entry = self._entry(model, version)
            entry.bytes_total, entry.path, entry.error = total, final, ""
        if _matches(final, manifest):
            log.info(
                "Servable %s version %d: reusing %s (cache matches %s)", model, version, final, url
            )
            with self._lock:
                entry.state = CACHED
            return final
        with self._lock:
            entry.state = DOWNLOADING
        started = time.monotonic()
        parent = os.path.dirname(final)
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=parent, prefix=f".tmp-{version}-{os.getpid()}-")
        try:
            log.info(
                "Servable %s version %d: downloading %d objects, %d bytes from %s",
                model,
                version,
                len(objects),
                total,
                url,
            )
            for obj in objects:
                dest = os.path.join(tmp, obj.relpath)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                got = s3.download(cli, loc, obj, dest)
                with self._lock:
                    entry.bytes_fetched += got
            with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as f:
                json.dump(manifest, f)
            if not _matches(tmp, manifest):
                raise s3.ObjectStoreError(f"{url}: the downloaded files do not match the listing")
            self._install(tmp, final, manifest)
        except BaseException as e:
            shutil.rmtree(tmp, ignore_errors=True)
            with self._lock:
                entry.state, entry.error = FAILED, str(e)
            raise
        with self._lock:
            entry.state = CACHED
            entry.download_seconds = round(time.monotonic() - started, 3)
        log.info(
            "Servable %s version %d: downloaded into %s in %.2fs",
            model,
            version,
            final,
            entry.download_seconds,
        )
        return final

    @staticmethod
    def _install(tmp: str, final: str, manifest: list[dict[str, Any]]) -> None:
        """Rename tmp to final; a stale final is moved aside first, a matching one
        (another worker process got there first) is kept."""
        if os.path.exists(final):
            if _matches(final, manifest):
                shutil.rmtree(tmp, ignore_errors=True)
                return
            aside = tempfile.mkdtemp(dir=os.path.dirname(final), prefix=".old-")
            os.rename(final, os.path.join(aside, "v"))
            shutil.rmtree(aside, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if not _matches(final, manifest):
                raise
            shutil.rmtree(tmp, ignore_errors=True)

    # --- evict ---------------------------------------------------------------
    def evict_except(self, model: str, base_url: str, keep: Iterable[int]) -> list[int]:
        """Delete the cached versions of base_url not in keep; returns those deleted."""
        try:
            base = self.dir_for(s3.parse_s3_url(base_url))
            names = os.listdir(base)
        except (ValueError, OSError):
            return []
        keep = set(keep)
        evicted: list[int] = []
        for name in names:
            if not (name.isascii() and name.isdigit()) or int(name) in keep:
                continue
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)
            evicted.append(int(name))
            with self._lock:
                self._entries.pop((model, int(name)), None)
            log.info("Servable %s version %s: evicted from the cache", model, name)
        return sorted(evicted)

    def evict_bases_except(self, keep: Iterable[str]) -> list[str]:
        """Delete every cached version whose base path is not in keep (s3:// URLs): the
        models removed from the config, here or before a container restart. Returns the
        deleted dirs."""
        keep_dirs = set()
        for url in keep:
            try:
                keep_dirs.add(self.dir_for(s3.parse_s3_url(url)))
            except ValueError:
                continue
        evicted: list[str] = []
        for dirpath, dirnames, filenames in os.walk(os.path.join(self.root, "s3")):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # temp dirs: sweep_temp
            name = os.path.basename(dirpath)
            if MANIFEST not in filenames or not (name.isascii() and name.isdigit()):
                continue
            dirnames.clear()  # a version dir: its files are the model's
            if os.path.dirname(dirpath) in keep_dirs:
                continue
            shutil.rmtree(dirpath, ignore_errors=True)
            evicted.append(dirpath)
            with self._lock:
                for key, entry in list(self._entries.items()):
                    if entry.path == dirpath:
                        del self._entries[key]
            log.info("Evicted %s from the cache: its model is no longer configured", dirpath)
        return evicted

    def sweep_temp(self) -> None:
        """Remove temp dirs left by a process that died mid-download."""
        for dirpath, dirnames, _ in os.walk(self.root):
            for name in list(dirnames):
                if name.startswith(".old-"):
                    dead = True
                elif name.startswith(".tmp-"):
                    parts = name.split("-")
                    dead = len(parts) < 3 or not parts[2].isdigit() or not _pid_alive(int(parts[2]))
                else:
                    continue
                dirnames.remove(name)
                if dead:
                    shutil.rmtree(os.path.join(dirpath, name), ignore_errors=True)


class CachingLoader(Generic[S]):
    """s3:// version paths: fetch into the cache, then load from there; others as is."""

    def __init__(self, inner: Loader[S], cache: ModelCache) -> None:
        self.inner = inner
        self.cache = cache

    def load(self, name: str, version: int, path: str) -> S:
        if not s3.is_s3_url(path):
            return self.inner.load(name, version, path)
        try:
            local = self.cache.fetch(name, version, path)
        except (s3.ObjectStoreError, ValueError) as e:
            raise ServingError(
                grpc.StatusCode.UNAVAILABLE,
                f"Could not download servable {name} version {version} into {self.cache.root}: {e}",
            ) from None
        except OSError as e:
            raise ServingError(
                grpc.StatusCode.INTERNAL,
                f"Could not write servable {name} version {version} into the model cache "
                f"{self.cache.root}: {e.strerror or e}",
            ) from None
        return self.inner.load(name, version, local)
