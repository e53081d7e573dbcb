"""asyncio's default event loop vs uvloop under tfmodel-server, A/B interleaved (issue 11 item 5).

    .venv/bin/python -m bench.event_loop --rounds 3 --requests 8000

The same server (demo model, batching on) is started once per round and loop, alternating
asyncio/uvloop so drift on a shared machine hits both alike; each run does gRPC (ghz) and
REST (h2load) at 64 in flight. Prints req/s, p99 and server CPU per request for every run and
the median ratio uvloop/asyncio per protocol.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import loadgen
from bench.one_server import demo_case, start_batched
from bench.results import measured
from bench.run import _stop
from bench.tools import ensure_ghz, ensure_h2load

LOOPS = ("asyncio", "uvloop")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=8000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-loop-"))
    case, protoset = demo_case(work)
    ghz, h2load = ensure_ghz(), ensure_h2load()
    c, n = args.concurrency, args.requests
    rates: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
        for loop in LOOPS if r % 2 == 0 else LOOPS[::-1]:
            log = work / f"server-{loop}-{r}.log"
            proc, grpc_port, rest_port = start_batched(case, work, log, f"--event_loop={loop}")
            try:
                target = f"127.0.0.1:{grpc_port}"
                url = f"http://127.0.0.1:{rest_port}/v1/models/{case.name}:predict"
                ghz_args = (ghz, str(protoset), str(case.request_bin), target)
                ghz_out = str(work / "ghz.json")
                h2_args = (h2load, url, str(case.body_json))
                h2_log = str(work / "h2load.log")
                loadgen.run_ghz(*ghz_args, 8, 300, "warm-up", ghz_out)
                loadgen.run_h2load(*h2_args, 8, 300, "warm-up", h2_log)
                for proto, run, run_args in (
                    ("gRPC", loadgen.run_ghz, (*ghz_args, c, n, loop, ghz_out)),
                    ("REST", loadgen.run_h2load, (*h2_args, c, n, loop, h2_log)),
                ):
                    res = measured(proc.pid, run, *run_args)
                    rates.setdefault((proto, loop), []).append(res.rows_per_s)
                    print(
                        f"round {r} {proto} {loop:8s} {res.rows_per_s:7.0f} req/s"
                        f"  p99 {res.p99_ms:6.1f} ms"
                        f"  server {1e6 * res.server_cpu_s / max(res.ok, 1):5.0f} µs CPU/req"
                        f"  ok {res.ok}/{n} {res.note}",
                        flush=True,
                    )
            finally:
                _stop(proc)
                time.sleep(1)
    for proto in ("gRPC", "REST"):
        a, u = rates[(proto, "asyncio")], rates[(proto, "uvloop")]
        ratios = [y / x for x, y in zip(a, u, strict=True)]
        print(
            f"{proto}: asyncio median {statistics.median(a):.0f} req/s, uvloop median"
            f" {statistics.median(u):.0f}; uvloop/asyncio per round "
            + ", ".join(f"{x:.2f}" for x in ratios)
            + f" (median {statistics.median(ratios):.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
