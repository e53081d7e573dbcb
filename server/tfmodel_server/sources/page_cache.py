"""--flush_filesystem_caches: drop the loaded model files from the kernel's page cache.

TF Serving calls Env::FlushFileSystemCaches() after each load (when loads run
one at a time, basic_manager.cc ExecuteLoad) and at the end of every config
(re)load (server_core.cc ReloadConfig), "to reduce memory consumption of the
model server". What holds memory here once a version is loaded is the page
cache of the files it was read from: the SavedModel's variables and graph (for
s3:// base paths, their copy in --model_cache_dir). In a container that page
cache is charged to the pod's memory cgroup, so a node under pressure counts
it against the pod. posix_fadvise(POSIX_FADV_DONTNEED) on each file drops its
clean pages; the loaded session holds its own copy of the weights, so serving
reads nothing back. Files just written (a version copied in or downloaded) are
written back first, as their dirty pages would not be dropped. Pages a process still has mapped (a TFLite flatbuffer the
interpreter mmaps) stay, as the kernel keeps mapped pages.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from typing import Generic

from tfmodel_server.core.interfaces import Loader, S

log = logging.getLogger(__name__)


def drop_page_cache(paths: Iterable[str]) -> int:
    """Drop the cached pages of every regular file under each path; returns the files done.

    Best effort, as FlushFileSystemCaches: a file that vanished or cannot be
    opened is skipped (logged at debug), never an error.
    """
    done = 0
    for root in paths:
        for directory, _, files in os.walk(root):
            for name in files:
                if _drop_file(os.path.join(directory, name)):
                    done += 1
    return done


def _drop_file(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as e:
        log.debug("page cache: cannot open %s: %s", path, e)
        return False
    try:
        # Dirty pages (a version just copied or downloaded) are not dropped: write
        # them first (a no-op for files long written).
        try:
            os.fdatasync(fd)
        except OSError as e:
            log.debug("page cache: fdatasync on %s failed: %s", path, e)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return True
    except OSError as e:
        log.debug("page cache: posix_fadvise on %s failed: %s", path, e)
        return False
    finally:
        os.close(fd)


class FlushingLoader(Generic[S]):
    """The loader with --flush_filesystem_caches: remembers the version dirs it loaded
    from; after each load (loaded or failed) drops that dir's pages when loads run one
    at a time (a parallel load may still be reading other files), and `flush()` drops
    the pages of every dir loaded so far (after each config is applied)."""

    def __init__(self, inner: Loader[S], num_load_threads: int) -> None:
        self.inner = inner
        self.after_each_load = num_load_threads <= 1
        self._lock = threading.Lock()
        self._loaded: set[str] = set()

    def load(self, name: str, version: int, path: str) -> S:
        with self._lock:
            self._loaded.add(path)
        try:
            return self.inner.load(name, version, path)
        finally:
            if self.after_each_load:
                drop_page_cache([path])

    def flush(self) -> int:
        """ServerCore::ReloadConfig's flush: every dir loaded so far that still exists."""
        with self._lock:
            self._loaded = {p for p in self._loaded if os.path.isdir(p)}
            paths = sorted(self._loaded)
        files = drop_page_cache(paths)
        log.info("flushed the page cache of %d model files in %d version dirs", files, len(paths))
        return files
