"""Drive ghz (gRPC) and h2load (HTTP/1.1) with a fixed request count and concurrency."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from bench.results import RunResult, children_cpu_seconds, percentiles_ms

RUN_TIMEOUT_SECONDS = 180
PREDICT_METHOD = "tensorflow.serving.PredictionService.Predict"


@dataclass
class GhzDetail:
    start_s: float  # unix time the request started
    latency_s: float
    ok: bool


def run_ghz(
    ghz: str,
    protoset: str,
    request_bin: str,
    target: str,
    concurrency: int,
    requests: int,
    label: str,
    out_json: str,
    connections: int = 1,
    call: str = PREDICT_METHOD,
) -> tuple[RunResult, list[GhzDetail]]:
    args = [
        ghz,
        "--insecure",
        f"--protoset={protoset}",
        f"--call={call}",
        f"--binary-file={request_bin}",
        f"--total={requests}",
        f"--concurrency={concurrency}",
        f"--connections={connections}",
        "--timeout=20s",
        "--format=json",
        f"--output={out_json}",
        target,
    ]
    cpu0 = children_cpu_seconds()
    subprocess.run(args, check=True, timeout=RUN_TIMEOUT_SECONDS, stdout=subprocess.DEVNULL)
    client_cpu = children_cpu_seconds() - cpu0
    with open(out_json) as f:
        report = json.load(f)
    details = [
        GhzDetail(
            start_s=datetime.fromisoformat(d["timestamp"]).timestamp(),
            latency_s=d["latency"] / 1e9,
            ok=d.get("status", "OK") == "OK" and not d.get("error"),
        )
        for d in report.get("details") or []
    ]
    ok_lat = [d.latency_s for d in details if d.ok]
    p50, p99 = percentiles_ms(ok_lat)
    errors = report.get("errorDistribution") or {}
    note = "; ".join(f"{n}x {e[:80]}" for e, n in errors.items())
    result = RunResult(
        target=label,
        concurrency=concurrency,
        requests=requests,
        ok=len(ok_lat),
        duration_s=report["total"] / 1e9,
        p50_ms=p50,
        p99_ms=p99,
        note=note,
        client_cpu_s=client_cpu,
    )
    return result, details


_FINISHED = re.compile(r"finished in ([0-9.]+)(ms|s|us)")
_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored"
)
_UNIT = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def run_h2load(
    h2load: str,
    url: str,
    body_file: str,
    concurrency: int,
    requests: int,
    label: str,
    log_file: str,
) -> RunResult:
    """HTTP/1.1 keep-alive POSTs; per-request latencies come from h2load's --log-file."""
    if os.path.exists(log_file):
        os.remove(log_file)
    args = [
        h2load,
        "--h1",
        f"--requests={requests}",
        f"--clients={concurrency}",
        "--max-concurrent-streams=1",
        f"--data={body_file}",
        "--header=content-type: application/json",
        f"--log-file={log_file}",
        url,
    ]
    cpu0 = children_cpu_seconds()
    proc = subprocess.run(
        args, check=True, timeout=RUN_TIMEOUT_SECONDS, capture_output=True, text=True
    )
    client_cpu = children_cpu_seconds() - cpu0
    finished = _FINISHED.search(proc.stdout)
    counts = _REQUESTS.search(proc.stdout)
    if not finished or not counts:
        raise RuntimeError(f"cannot parse h2load output:\n{proc.stdout}\n{proc.stderr}")
    duration = float(finished.group(1)) * _UNIT[finished.group(2)]
    # log columns: start time (µs since epoch), HTTP status, µs until the response ended
    rows = (
        np.loadtxt(log_file, dtype=np.int64, ndmin=2)
        if os.path.getsize(log_file)
        else np.zeros((0, 3))
    )
    ok_mask = rows[:, 1] == 200 if len(rows) else np.zeros(0, dtype=bool)
    p50, p99 = percentiles_ms(rows[ok_mask, 2] / 1e6)
    failed = requests - int(ok_mask.sum())
    return RunResult(
        target=label,
        concurrency=concurrency,
        requests=requests,
        ok=int(ok_mask.sum()),
        duration_s=duration,
        p50_ms=p50,
        p99_ms=p99,
        note=f"{failed} failed" if failed else "",
        client_cpu_s=client_cpu,
    )
