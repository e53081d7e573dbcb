"""Mean batch size the batcher forms over gRPC (ghz) and REST (h2load) at the same load.

    .venv/bin/python -m bench.batch_sizes --requests 8000 --concurrency 64

One tfmodel-server (demo model, batching on with bench.run's parameters, Prometheus metrics on),
then ghz and h2load in turn; the mean comes from the server's own `:tfmodel:batch_size`
histogram, read before and after each load.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import urllib.request
from pathlib import Path

from bench import loadgen
from bench.one_server import demo_case, start_batched
from bench.run import _stop
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
    work = Path(tempfile.mkdtemp(prefix="bench-batch-sizes-"))
    case, protoset = demo_case(work)
    (work / "monitoring.txt").write_text('prometheus_config { enable: true, path: "/metrics" }\n')
    proc, grpc_port, rest_port = start_batched(
        case, work, work / "server.log",
        f"--monitoring_config_file={work / 'monitoring.txt'}", f"--event_loop={args.event_loop}",
        batch_timeout_micros=args.batch_timeout_micros,
    )  # fmt: skip
    try:
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
