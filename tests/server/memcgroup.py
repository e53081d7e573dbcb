"""A memory-limited cgroup (v2 or v1) for running a real server under a pod-like memory limit.

    with MemoryCgroup(768 << 20) as cg:
        subprocess.Popen(cmd, preexec_fn=cg.enter)   # the child joins before exec
        ...
        cg.oom_kills()                                # kernel OOM kills inside it

Needs root and a writable /sys/fs/cgroup (the suite's cluster tests need the same).
remove() (on exit) kills what is left inside and removes the directory.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


class MemoryCgroup:
    def __init__(self, limit_bytes: int, name: str | None = None, root: Path = ROOT) -> None:
        self.limit_bytes = limit_bytes
        self.name = name or f"tfmodel-test-{os.getpid()}-{time.monotonic_ns()}"
        self.root = root
        self.v2 = (root / "cgroup.controllers").exists()
        self.path = root / self.name if self.v2 else root / "memory" / self.name

    def create(self) -> MemoryCgroup:
        if self.v2:
            controllers = (self.root / "cgroup.subtree_control").read_text().split()
            if "memory" not in controllers:
                (self.root / "cgroup.subtree_control").write_text("+memory")
        elif not (self.root / "memory").is_dir():
            raise RuntimeError(f"no memory cgroup controller under {self.root}")
        self.path.mkdir()
        if self.v2:
            self._write("memory.max", self.limit_bytes)
            if (self.path / "memory.swap.max").exists():
                self._write("memory.swap.max", 0)
        else:
            self._write("memory.limit_in_bytes", self.limit_bytes)
            if (self.path / "memory.memsw.limit_in_bytes").exists():
                self._write("memory.memsw.limit_in_bytes", self.limit_bytes)
        return self

    def _write(self, name: str, value: int | str) -> None:
        (self.path / name).write_text(str(value))

    def enter(self) -> None:
        """Move the calling process in (use as Popen's preexec_fn)."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def oom_kills(self) -> int:
        """Processes the kernel's OOM killer killed in this cgroup (memory.events / oom_control)."""
        name = "memory.events" if self.v2 else "memory.oom_control"
        for line in (self.path / name).read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def peak_bytes(self) -> int | None:
        """Highest memory use seen (v1 max_usage_in_bytes, v2 memory.peak when the kernel has it)."""
        name = "memory.peak" if self.v2 else "memory.max_usage_in_bytes"
        try:
            return int((self.path / name).read_text())
        except (OSError, ValueError):
            return None

    def remove(self) -> None:
        deadline = time.monotonic() + 10
        while self.path.exists():
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                self.path.rmdir()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def __enter__(self) -> MemoryCgroup:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.remove()
