"""What the issue-21 benches (overload, neighbour_load, rest_decode_memory) share:
percentiles of a latency list and a process's resident memory from /proc.

Latencies are in milliseconds here; a failed call may be recorded as inf, which
sorts last (so it counts in a p99 as the slowest call, not as a missing one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

_FAILED = 1e300  # stands for inf inside np.percentile (inf - inf is nan there)


def pct(values_ms: Sequence[float], q: float) -> float:
    """The q-th percentile of `values_ms` (linear interpolation); nan when there are none.

    A value interpolated towards a failed call (inf) is inf.
    """
    if not values_ms:
        return float("nan")
    arr = np.minimum(np.asarray(values_ms, dtype=np.float64), _FAILED)
    value = float(np.percentile(arr, q))
    return math.inf if value >= 1e200 else value


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, nan when the denominator is 0 or nan (no division error)."""
    if not denominator or denominator != denominator:
        return float("nan")
    return numerator / denominator


def status_kb(pid: int | str, key: str) -> int:
    """A kB field (VmRSS, VmHWM, RssAnon...) of /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(f"{key} not in /proc/{pid}/status")


def rss_bytes(pid: int | str) -> int:
    return status_kb(pid, "VmRSS") * 1024


def peak_bytes(pid: int | str) -> int:
    """The peak resident set (VmHWM) since the process started or reset_peak."""
    return status_kb(pid, "VmHWM") * 1024


def reset_peak(pid: int | str) -> None:
    """Reset VmHWM to the current RSS (Linux: clear_refs 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
