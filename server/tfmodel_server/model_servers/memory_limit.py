"""The container's memory limit (cgroup v2 memory.max, v1 memory.limit_in_bytes) and RSS.

Read once, when the ports open, to size the admission budget's default
(admission.default_limits): a pod's `resources.limits.memory` is the cgroup
limit of its container. The limit of a cgroup is the smallest of its own and
its ancestors', so every level from the process's cgroup up to the mount's root
is read (inside a container with a cgroup namespace that is just the container's).
"""

from __future__ import annotations

import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
# cgroup v1 writes "no limit" as the largest page-aligned int64 (9223372036854771712).
_V1_UNLIMITED = 1 << 62


def _parse_limit(text: str) -> int | None:
    text = text.strip()
    if not text or text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return value if 0 < value < _V1_UNLIMITED else None


def _own_cgroup_paths(proc_cgroup: str) -> tuple[str | None, str | None]:
    """(v2 path, v1 memory path) of this process from /proc/self/cgroup's text."""
    v2: str | None = None
    v1: str | None = None
    for line in proc_cgroup.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    return v2, v1


def _smallest_limit(mount: Path, cgroup_path: str, filename: str) -> int | None:
    """The smallest limit in `filename` from the cgroup at `cgroup_path` up to `mount`."""
    limits: list[int] = []
    directory = mount / cgroup_path.lstrip("/")
    while True:
        try:
            value = _parse_limit((directory / filename).read_text())
        except OSError:
            value = None  # not in this mount (another namespace) or no such file at the root
        if value is not None:
            limits.append(value)
        if directory == mount or mount not in directory.parents:
            break
        directory = directory.parent
    return min(limits) if limits else None


def cgroup_memory_limit(root: Path = CGROUP_ROOT, proc_cgroup: str | None = None) -> int | None:
    """Bytes this process may use under its memory cgroup, or None when unlimited.

    cgroup v2 (unified, memory.max) first, then v1's memory controller
    (memory.limit_in_bytes). `root` and `proc_cgroup` are for tests.
    """
    if proc_cgroup is None:
        try:
            proc_cgroup = Path("/proc/self/cgroup").read_text()
        except OSError:
            return None
    v2_path, v1_path = _own_cgroup_paths(proc_cgroup)
    if v2_path is not None and (root / "cgroup.controllers").exists():
        limit = _smallest_limit(root, v2_path, "memory.max")
        if limit is not None:
            return limit
    if v1_path is not None:
        for mount in (root / "memory", root / "memory,cpuacct", root / "cpuacct,memory"):
            if mount.is_dir():
                return _smallest_limit(mount, v1_path, "memory.limit_in_bytes")
    if v2_path is not None and (root / "unified" / "cgroup.controllers").exists():
        # Hybrid hosts mount v2 at /sys/fs/cgroup/unified (memory usually stays on v1).
        return _smallest_limit(root / "unified", v2_path, "memory.max")
    return None


def resident_bytes(pid: int | str = "self") -> int:
    """This process's anonymous resident memory (RssAnon) in bytes; 0 without /proc.

    Not VmRSS: that also counts the pages of TensorFlow's shared libraries (~400 MB),
    which the kernel can drop under pressure and which are usually charged to the
    cgroup that first read them.
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


def usable_cores() -> int:
    """CPUs this process may run on (affinity; not the cgroup CPU quota)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
