"""Where does tfmodel-server spend its time under load? py-spy on the server while ghz drives it.

    .venv/bin/python -m bench.profile [--batching] [--concurrency 64] [--requests 20000]

Prints the functions with the most samples (self and inclusive, all threads, idle excluded)
and writes the collapsed stacks (flamegraph input) next to bench/results/.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench.run import BATCHING_PARAMETERS, MODEL_NAME, REPO, Bench

PROFILE_SECONDS = 10


def summarize(collapsed: str, top: int = 25) -> str:
    self_counts: collections.Counter[str] = collections.Counter()
    incl_counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        self_counts[frames[-1]] += n
        for frame in set(frames[1:]):  # frame 0 is the thread name
            incl_counts[frame] += n
    lines = [f"{total} samples (non-idle)", "", "self %  function"]
    lines += [f"{100 * n / total:5.1f}  {f}" for f, n in self_counts.most_common(top)]
    lines += ["", "incl %  function"]
    lines += [f"{100 * n / total:5.1f}  {f}" for f, n in incl_counts.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batching", action="store_true")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--batch_timeout_micros", type=int, default=1000)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tfmodel_devcluster.demo.walkthrough import ServerProcess

    work = Path(tempfile.mkdtemp(prefix="tfmodel-profile-"))
    bench = Bench(work, 1.0, args.batch_timeout_micros)
    extra: tuple[str, ...] = ()
    if args.batching:
        params = work / "batching_parameters.txt"
        params.write_text(BATCHING_PARAMETERS % args.batch_timeout_micros)
        extra = ("--enable_batching=true", f"--batching_parameters_file={params}")
    server = ServerProcess(MODEL_NAME, str(bench.base_path), str(work / "server.log"), extra)
    out = REPO / "bench" / "results" / f"profile-{'batching' if args.batching else 'direct'}.txt"
    try:
        server.wait_ready()
        bench._ghz(server.grpc_port, 8, 300, "warmup")
        load = threading.Thread(
            target=bench._ghz, args=(server.grpc_port, args.concurrency, args.requests, "load")
        )
        load.start()
        raw = work / "stacks.txt"
        subprocess.run(
            [str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
             str(server.proc.pid), "--duration", str(PROFILE_SECONDS), "--rate", "200",
             "--threads", "--nonblocking", "--format", "raw", "--output", str(raw)],
            check=True, timeout=PROFILE_SECONDS + 60, capture_output=True,
        )  # fmt: skip
        load.join(timeout=180)
        collapsed = raw.read_text()
        summary = summarize(collapsed)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(summary + "\n")
        (out.with_suffix(".collapsed")).write_text(collapsed)
        print(summary)
        print(f"\nwrote {out}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
