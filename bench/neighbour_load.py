"""A model loading next door: model A's latency while model B (512 MB) reloads.

One tfmodel-server serves A (a 1 MB model) and B (MEGABYTES of variables,
policy latest 1). A client process runs CLIENTS closed-loop gRPC Predict
callers on A for the whole run; after a steady phase, B's next version is
renamed into its base path LOADS times (copies staged beforehand, so the
bench's own disk copy is not in the window), each time waiting until the new
version is AVAILABLE and the old one unloaded.

Reported: A's p99 in the steady phase and during B's load windows, the longest
single call during the windows, and failed calls. Held (issue 21): p99 during
within 1.5x steady, no call above 5x the steady p99, 0 failed.

    python -m bench.neighbour_load [--megabytes 512] [--loads 4] [--clients 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

from bench import big_model
from bench.summary import pct, ratio
from tests.ports import free_port

HOLD_P99_RATIO = 1.5
HOLD_STALL_RATIO = 5.0

CONFIG = """model_config_list {{
  config {{ name: "a" base_path: "{a}" model_platform: "tensorflow" }}
  config {{ name: "b" base_path: "{b}" model_platform: "tensorflow"
           model_version_policy {{ latest {{ num_versions: 1 }} }} }}
}}
"""


# ---- the client process -------------------------------------------------------


async def _clients(target: str, clients: int, seconds: float, out: str) -> None:
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "a"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
    records: list[tuple[float, float, bool]] = []
    deadline = time.time() + seconds

    async def caller(stub: prediction_service_pb2_grpc.PredictionServiceStub) -> None:
        while time.time() < deadline:
            start = time.time()
            t0 = time.perf_counter()
            try:
                await stub.Predict(request, timeout=30)
                ok = True
            except grpc.aio.AioRpcError:
                ok = False
            records.append((start, time.perf_counter() - t0, ok))
            if len(records) == 1:
                Path(out + ".ready").touch()

    channels = [grpc.aio.insecure_channel(target) for _ in range(clients)]
    try:
        stubs = [prediction_service_pb2_grpc.PredictionServiceStub(c) for c in channels]
        await asyncio.gather(*(caller(s) for s in stubs))
    finally:
        Path(out).write_text(json.dumps(records))  # also when stopped by SIGINT


# ---- the driver -----------------------------------------------------------------


def _state(rest: str, model: str) -> dict[int, str]:
    body = requests.get(f"{rest}/v1/models/{model}", timeout=10).json()
    return {int(v["version"]): v["state"] for v in body.get("model_version_status", [])}


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except requests.RequestException:
            pass
        time.sleep(POLL_SECONDS)
    raise RuntimeError(f"timed out waiting for {what}")


POLL_SECONDS = 0.05


def _observe(rest: str, seconds: float) -> None:
    """Poll B's status as the load windows do, so both phases carry the same
    observer traffic (the bench's own REST calls are not B's load)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        _state(rest, "b")
        time.sleep(POLL_SECONDS)


def _progress(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


TEMPLATES = Path(tempfile.gettempdir()) / "tfmodel-bench-models"  # kept between runs


def run(
    megabytes: int,
    loads: int,
    clients: int,
    steady: float,
    gap: float,
    work: Path,
) -> dict:
    models = TEMPLATES
    models.mkdir(exist_ok=True)
    template_b = big_model.template(models, megabytes)
    template_a = big_model.template(models, 1)
    _progress("templates ready")
    base_a, base_b = work / "a", work / "b"
    base_a.mkdir()
    base_b.mkdir()
    big_model.copy_version(template_a, base_a, 1)
    big_model.copy_version(template_b, base_b, 1)
    staged = []
    for version in range(2, loads + 2):  # copied now: the disk copy stays out of the windows
        target = work / f"staged-{version}"
        shutil.copytree(template_b, target)
        staged.append((version, target))
    _progress("versions staged")
    config = work / "models.config"
    config.write_text(CONFIG.format(a=base_a, b=base_b))
    grpc_port, rest_port = free_port(), free_port()
    rest = f"http://127.0.0.1:{rest_port}"
    log = open(work / "server.log", "wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tfmodel_server",
            f"--port={grpc_port}",
            f"--rest_api_port={rest_port}",
            "--bind_address=127.0.0.1",
            f"--model_config_file={config}",
            "--file_system_poll_wait_seconds=0.2",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    client = None
    try:
        _wait(lambda: requests.get(f"{rest}/readyz", timeout=2).status_code == 200, 300, "ready")
        _progress("server ready")
        duration = steady + loads * (gap + 120)  # an upper bound; stopped early below
        out = work / "client.json"
        client = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.neighbour_load",
                "--client",
                f"127.0.0.1:{grpc_port}",
                str(clients),
                str(duration),
                str(out),
            ],
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        _wait(lambda: Path(f"{out}.ready").exists(), 300, "the client's first call")
        _progress("clients running")
        _observe(rest, steady)
        steady_window = (time.time() - steady + 2.0, time.time())  # the first 2 s warm up
        windows: list[tuple[float, float]] = []
        available: list[float] = []
        for version, staged_dir in staged:
            start = time.time()
            staged_dir.rename(base_b / str(version))
            _wait(lambda v=version: _state(rest, "b").get(v) == "AVAILABLE", 300, f"b v{version}")
            available.append(time.time())
            _wait(lambda v=version: _state(rest, "b").get(v - 1) == "END", 120, f"b v{version - 1}")
            windows.append((start, time.time()))
            _progress(f"b version {version} loaded in {windows[-1][1] - start:.1f}s")
            shutil.rmtree(base_b / str(version - 1))
            _observe(rest, gap)
        client.send_signal(2)  # the client writes what it has on SIGINT
        client.wait(60)
        records = json.loads(out.read_text())
    finally:
        if client is not None and client.poll() is None:
            client.kill()
        server.terminate()
        server.wait(60)
        log.close()

    def started_in(window: tuple[float, float]) -> list[tuple[float, float, bool]]:
        return [r for r in records if window[0] <= r[0] <= window[1]]

    # Steady: every call outside B's load windows after the warm-up (the steady phase
    # and the gaps between loads), so noise from the rest of the machine falls on both.
    warm = steady_window[0]
    steady_lat = [
        r[1] * 1e3
        for r in records
        if r[2] and r[0] >= warm and not any(a <= r[0] <= b for a, b in windows)
    ]
    during = [r for w in windows for r in started_in(w)]
    during_lat = [r[1] * 1e3 for r in during if r[2]]
    p99_steady, p99_during = pct(steady_lat, 99), pct(during_lat, 99)
    max_stall = max(during_lat) if during_lat else float("nan")
    failed = sum(1 for r in records if not r[2])
    # Where in a window the slow calls are: B loading (publish -> AVAILABLE) or the
    # old version unloading (AVAILABLE -> END).
    loading = [
        r[1] * 1e3
        for (a, _), t in zip(windows, available, strict=True)
        for r in started_in((a, t))
        if r[2]
    ]
    unloading = [
        r[1] * 1e3
        for (_, b), t in zip(windows, available, strict=True)
        for r in started_in((t, b))
        if r[2]
    ]
    return {
        "megabytes": megabytes,
        "loads": loads,
        "clients": clients,
        "load_seconds": [round(b - a, 2) for a, b in windows],
        "calls_steady": len(steady_lat),
        "calls_during": len(during_lat),
        "p99_steady_ms": round(p99_steady, 2),
        "p99_during_ms": round(p99_during, 2),
        "p99_ratio": round(ratio(p99_during, p99_steady), 2),
        "p99_loading_ms": round(pct(loading, 99), 2),
        "p99_unloading_ms": round(pct(unloading, 99), 2),
        "max_stall_ms": round(max_stall, 1),
        "max_stall_ratio": round(ratio(max_stall, p99_steady), 2),
        "failed": failed,
        "holds": p99_during <= HOLD_P99_RATIO * p99_steady
        and max_stall <= HOLD_STALL_RATIO * p99_steady
        and failed == 0,
    }


def _client_main(target: str, clients: int, seconds: float, out: str) -> None:
    import signal

    loop = asyncio.new_event_loop()
    task = loop.create_task(_clients(target, clients, seconds, out))
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        pass


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        _client_main(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=512)
    parser.add_argument("--loads", type=int, default=4)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--steady", type=float, default=20.0, help="seconds before B's loads")
    parser.add_argument("--gap", type=float, default=5.0, help="seconds between B's loads")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="neighbour-load-") as tmp:
        result = run(args.megabytes, args.loads, args.clients, args.steady, args.gap, Path(tmp))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
