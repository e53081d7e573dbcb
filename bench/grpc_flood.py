"""A flood of large gRPC predicts at a real tfmodel-server in a memory-limited cgroup.

grpc core receives a call's whole message before the Python handler (and so the
admission budget) sees it; this measures what a flood of large messages costs the
server's memory: N concurrent Predict calls of ROWS x 784 float32 (12.5 MB at 4000
rows) over CHANNELS connections, the server in a cgroup of LIMIT MiB. Reported:
outcomes by status, OOM kills in the cgroup, the server's peak RSS growth during
the flood (VmHWM, reset before it) and the cgroup's peak (page cache included), and
whether a valid request succeeds after. Each configuration (server flags) runs on a fresh server,
one after the other in one run (the machine's load falls on all alike).

    python -m bench.grpc_flood [--calls 96] [--rows 4000] [--limit-mb 768] [--rounds 1]
        [--config NAME='--flag=value --flag2=value' ...] [--baseline-tree /work/main]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.overload import MODEL, export_model, grpc_request, rest_body, start_server, stop_server
from bench.summary import peak_bytes, reset_peak, rss_bytes

REPO = Path(__file__).resolve().parent.parent


def _flood(target: str, calls: int, rows: int, channels: int) -> dict[str, int]:
    """In this (client) process: `calls` concurrent Predicts over `channels` connections."""
    import grpc

    raw = grpc_request(rows)
    chans = [grpc.insecure_channel(target) for _ in range(channels)]
    methods = [c.unary_unary("/tensorflow.serving.PredictionService/Predict") for c in chans]

    def one(i: int) -> str:
        try:
            methods[i % channels](raw, timeout=120)
        except grpc.RpcError as e:
            details = (e.details() or "")[:60]
            return (
                f"{e.code().name}: {details}" if e.code().name == "UNAVAILABLE" else e.code().name
            )
        return "OK"

    try:
        with ThreadPoolExecutor(calls) as pool:
            return dict(Counter(pool.map(one, range(calls))))
    finally:
        for c in chans:
            c.close()


def run_config(
    work: Path, name: str, flags: list[str], args: argparse.Namespace, tree: str | None = None
) -> dict:
    import requests

    from tests.server.memcgroup import MemoryCgroup

    with MemoryCgroup(args.limit_mb << 20) as cg:
        env = None
        if tree:  # another checkout's server code (e.g. main's, for a before/after pair)
            env = dict(os.environ, PYTHONPATH=f"{tree}/server:{os.environ.get('PYTHONPATH', '')}")
        server = start_server(work, *flags, preexec_fn=cg.enter, env=env)
        try:
            pid = server.proc.pid
            reset_peak(pid)
            rss_before = rss_bytes(pid)
            start = time.monotonic()
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.grpc_flood",
                    "--client",
                    server.grpc_target,
                    str(args.calls),
                    str(args.rows),
                    str(args.channels),
                ],
                capture_output=True,
                text=True,
                cwd=REPO,
                timeout=300,
            )
            outcomes = (
                json.loads(out.stdout.strip().splitlines()[-1])
                if out.returncode == 0
                else {"client failed": out.stderr[-500:]}
            )
            seconds = time.monotonic() - start
            alive = server.proc.poll() is None
            growth = peak_bytes(pid) - rss_before if alive else None
            after = None
            if alive:
                after = requests.post(
                    f"{server.rest}/v1/models/{MODEL}:predict", data=rest_body(1), timeout=60
                ).status_code
            return {
                "config": name,
                "tree": tree or "this",
                "flags": flags,
                "calls": args.calls,
                "message_mb": round(len(grpc_request(args.rows)) / 1e6, 1),
                "outcomes": outcomes,
                "seconds": round(seconds, 1),
                "oom_kills": cg.oom_kills(),
                "rss_before_mib": round(rss_before / 2**20),
                "peak_rss_growth_mib": round(growth / 2**20) if growth is not None else None,
                "cgroup_peak_mib": round((cg.peak_bytes() or 0) / 2**20),
                "limit_mib": args.limit_mb,
                "alive": alive,
                "valid_request_after": after,
            }
        finally:
            stop_server(server)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        target, calls, rows, channels = sys.argv[2], *map(int, sys.argv[3:6])
        print(json.dumps(_flood(target, calls, rows, channels)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=96)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--limit-mb", type=int, default=768)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="NAME=FLAGS",
        help="a server configuration to compare (default: the server's defaults)",
    )
    parser.add_argument(
        "--baseline-tree",
        metavar="DIR",
        help="also run each configuration on the server code of this checkout, first",
    )
    args = parser.parse_args()
    configs = [c.split("=", 1) for c in args.config] or [["default", ""]]
    with tempfile.TemporaryDirectory(prefix="tfmodel-grpc-flood-") as tmp:
        work = Path(tmp)
        export_model(work)
        for _ in range(args.rounds):
            for name, flags in configs:
                for tree in ([args.baseline_tree] if args.baseline_tree else []) + [None]:
                    result = run_config(work, name, shlex.split(flags), args, tree)
                    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
