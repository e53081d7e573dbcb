"""Mean batch size the batcher forms over gRPC (ghz) and REST (h2load) at the same load.

    .venv/bin/python -m bench.batch_sizes --requests 8000 --concurrency 64

One tfmodel-server (demo model, batching on with bench.run's parameters, Prometheus metrics on),
then ghz and h2load in turn; the mean comes from the server's own `:tfmodel:batch_size`
histogram, read before and after each load.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from bench import loadgen
from bench.protoset import build_protoset
from bench.run import (
    BATCHING_PARAMETERS,
    MODEL_NAME,
    REPO,
    SIGNATURE,
    Case,
    _free_port,
    _stop,
    _wait_http_200,
)
from bench.tools import ensure_ghz, ensure_h2load

_SUM = re.compile(r"^:tfmodel:batch_size_sum\{[^}]*\} (\S+)$", re.M)
_COUNT = re.compile(r"^:tfmodel:batch_size_count\{[^}]*\} (\S+)$", re.M)


def _histogram(metrics_url: str) -> tuple[float, float]:
    with urllib.request.urlopen(metrics_url, timeout=10) as resp:
        text = resp.read().decode()
    return sum(map(float, _SUM.findall(text))), sum(map(float, _COUNT.findall(text)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--batch_timeout_micros", type=int, default=1000)
    parser.add_argument("--event_loop", default="uvloop", choices=("uvloop", "asyncio"))
    args = parser.parse_args(argv)
    from tfmodel_server.demo.data import load_digits_split
    from tfmodel_server.demo.export import export_model

    work = Path(tempfile.mkdtemp(prefix="bench-batch-sizes-"))
    protoset = work / "serving.protoset"
    build_protoset(str(protoset))
    case = Case(work, MODEL_NAME, SIGNATURE, "images", load_digits_split().test_images[:1], "")
    export_model(str(case.base_path), 200, 1, verbose=False)
    (work / "batching.txt").write_text(BATCHING_PARAMETERS % args.batch_timeout_micros)
    (work / "monitoring.txt").write_text('prometheus_config { enable: true, path: "/metrics" }\n')
    grpc_port, rest_port = _free_port(), _free_port()
    cmd = [
        str(Path(sys.executable).parent / "tfmodel-server"),
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        f"--model_name={case.name}",
        f"--model_base_path={case.base_path}",
        "--enable_batching",
        f"--batching_parameters_file={work / 'batching.txt'}",
        f"--monitoring_config_file={work / 'monitoring.txt'}",
        f"--event_loop={args.event_loop}",
    ]
    with open(work / "server.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        _wait_http_200(f"http://127.0.0.1:{rest_port}/v1/models/{case.name}", proc)
        metrics = f"http://127.0.0.1:{rest_port}/metrics"
        ghz, h2load = ensure_ghz(), ensure_h2load()
        c, n = args.concurrency, args.requests
        loads = {
            "gRPC": lambda: loadgen.run_ghz(
                ghz,
                str(protoset),
                str(case.request_bin),
                f"127.0.0.1:{grpc_port}",
                c,
                n,
                "gRPC",
                str(work / "ghz.json"),
            )[0],  # fmt: skip
            "REST": lambda: loadgen.run_h2load(
                h2load,
                f"http://127.0.0.1:{rest_port}/v1/models/{case.name}:predict",
                str(case.body_json),
                c,
                n,
                "REST",
                str(work / "h2load.log"),
            ),  # fmt: skip
        }
        for name, run in loads.items():
            sum0, count0 = _histogram(metrics)
            result = run()
            sum1, count1 = _histogram(metrics)
            batches = count1 - count0
            print(
                f"{name}: {result.rows_per_s:.0f} rows/s, mean batch"
                f" {(sum1 - sum0) / max(batches, 1):.1f} rows over {batches:.0f} batches"
                f" (c={c}, {n} requests, batch_timeout_micros={args.batch_timeout_micros},"
                f" {args.event_loop})",
                flush=True,
            )
    finally:
        _stop(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
