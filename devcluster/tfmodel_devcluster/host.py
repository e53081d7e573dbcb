"""Running commands on the host for the cluster: its error, its log, its cache directory."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# containerd, ip, iptables, nsenter... live in the sbin directories a non-login PATH may lack.
SYS_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Where log() lines go besides <cache>/logs/cluster.log: stderr unless a caller (the demo,
# which keeps its terminal for its own step lines) sets a hook.
LOG_HOOK: Callable[[str], None] | None = None


class ClusterError(RuntimeError):
    """The cluster could not be built or started."""


def cache_dir() -> Path:
    return Path(os.environ.get("TFMODEL_CACHE", Path.home() / ".cache" / "tfmodel"))


def log(msg: str) -> None:
    """To stderr and to <cache>/logs/cluster.log (pytest captures stderr; timings stay)."""
    line = f"[cluster {time.strftime('%Y-%m-%d %H:%M:%S')}] {msg}"
    if LOG_HOOK is not None:
        LOG_HOOK(line)
    else:
        print(line, file=sys.stderr, flush=True)
    with contextlib.suppress(OSError):
        (cache_dir() / "logs").mkdir(parents=True, exist_ok=True)
        with (cache_dir() / "logs" / "cluster.log").open("a") as out:
            out.write(line + "\n")


def run(cmd: list[str], timeout: float = 120, check: bool = True, **kw: Any) -> str:
    """`cmd`'s stdout; ClusterError with its stderr when it fails and `check`."""
    env = {**os.environ, "PATH": f"{os.environ.get('PATH', '')}:{SYS_PATH}"}
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False, **kw
    )
    if check and done.returncode != 0:
        raise ClusterError(
            f"{' '.join(cmd)} failed (exit {done.returncode}):\n{done.stderr[-4000:]}"
        )
    return done.stdout
