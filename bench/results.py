"""One measured run: request count, wall time, latency percentiles."""

from __future__ import annotations

import os
import resource
from dataclasses import asdict, dataclass

import numpy as np

CONCURRENCY = (1, 8, 64)
GRPC_OFF = "tfmodel gRPC, batching off"
GRPC_ON = "tfmodel gRPC, batching on"
REST_OFF = "tfmodel REST, batching off"
REST_ON = "tfmodel REST, batching on"
NAIVE = "naive HTTP server"
INPROC = "in-process, 1 call per request"
# The compute-bound model's targets carry this prefix (bench/compute_model.py).
MLP = "CNN: "
INPROC_BATCHED = "in-process batched"
# Peers (bench/peers): labels are "<peer config> <protocol>", protocols below.
PEER_GRPC = "gRPC (v2)"
PEER_REST = "REST (v2)"
PEER_REST_V1 = "REST (v1)"


@dataclass
class RunResult:
    target: str  # e.g. "tfmodel gRPC (batching on)"
    concurrency: int
    requests: int  # requests sent
    ok: int  # successful responses (one row each)
    duration_s: float
    p50_ms: float
    p99_ms: float
    note: str = ""
    server_cpu_s: float = float("nan")  # CPU time of the serving process tree during the run
    client_cpu_s: float = float("nan")  # CPU time of the load generator during the run

    @property
    def rows_per_s(self) -> float:
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "rows_per_s": self.rows_per_s}


def percentiles_ms(latencies_s: np.ndarray | list[float]) -> tuple[float, float]:
    arr = np.asarray(latencies_s, dtype=np.float64)
    if arr.size == 0:
        return float("nan"), float("nan")
    p50, p99 = np.percentile(arr, [50, 99])
    return float(p50 * 1e3), float(p99 * 1e3)


def tree_cpu_seconds(pid: int) -> float:
    """utime+stime of `pid` and its live descendants (the --workers processes), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the comm field: state ppid ... utime(12) stime(13)
        stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    total, frontier = 0.0, [pid]
    while frontier:
        current = frontier.pop()
        if current in stats:
            total += stats[current][1]
        frontier += [child for child, (ppid, _) in stats.items() if ppid == current]
    return total


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measured(pid: int, run, *args, **kwargs) -> RunResult:
    """Run a load; attach the serving process tree's CPU seconds to its result."""
    cpu0 = tree_cpu_seconds(pid)
    result = run(*args, **kwargs)
    result = result[0] if isinstance(result, tuple) else result
    result.server_cpu_s = tree_cpu_seconds(pid) - cpu0
    return result
