"""What grpc.aio itself allows on this machine: a bare PredictionService that
returns an empty response, with and without one executor hop per request, and optionally
grpc's sync (thread-pool) server doing the same.

    .venv/bin/python -m bench.grpc_ceiling [--requests 6000] [--concurrency 64] [--sync_threads 4,16]

Same ghz and request as bench.run, so the numbers compare with its tfmodel rows.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import tempfile
import time

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from bench.loadgen import run_ghz
from bench.protoset import build_protoset
from bench.tools import ensure_ghz


def _serve(port: int, hop: bool) -> None:
    import grpc

    class Echo(prediction_service_pb2_grpc.PredictionServiceServicer):
        async def Predict(self, request, context):
            if hop:  # the hand-off tfmodel uses to keep TF off the event loop
                await asyncio.get_running_loop().run_in_executor(None, int)
            return predict_pb2.PredictResponse()

    async def main() -> None:
        server = grpc.aio.server()
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Echo(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


def _serve_sync(port: int, threads: int) -> None:
    """grpc's thread-pool server: the alternative to grpc.aio for the Predict path."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    class Echo(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            return predict_pb2.PredictResponse()

    server = grpc.server(ThreadPoolExecutor(max_workers=threads))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Echo(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CEILING = "bare grpc.aio echo"
CEILING_HOP = "bare grpc.aio echo + one executor hop"
SYNC = "bare grpc sync-server echo, %d threads"


def ceiling_request(path: str) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
    with open(path, "wb") as f:
        f.write(request.SerializeToString())


def measure(
    ghz: str,
    protoset: str,
    work: str,
    concurrency: int,
    requests: int,
    hops=(False, True),
    sync_threads=(),
):
    """RunResults of the echo servers at `concurrency`, with their process CPU seconds:
    grpc.aio without/with an executor hop (`hops`), then grpc's sync server per thread count."""
    from bench.results import tree_cpu_seconds

    request_bin = os.path.join(work, "ceiling_request.bin")
    ceiling_request(request_bin)
    ctx = multiprocessing.get_context("spawn")
    results = []
    variants = [(_serve, (hop,), CEILING_HOP if hop else CEILING) for hop in hops]
    variants += [(_serve_sync, (n,), SYNC % n) for n in sync_threads]
    for serve, serve_args, label in variants:
        port = _free_port()
        proc = ctx.Process(target=serve, args=(port, *serve_args), daemon=True)
        proc.start()
        try:
            _wait_port(port, proc)
            target = f"127.0.0.1:{port}"
            out = os.path.join(work, "ghz-ceiling.json")
            run_ghz(ghz, protoset, request_bin, target, 8, max(200, requests // 10), label, out)
            cpu0 = tree_cpu_seconds(proc.pid)
            result, _ = run_ghz(
                ghz, protoset, request_bin, target, concurrency, requests, label, out
            )
            result.server_cpu_s = tree_cpu_seconds(proc.pid) - cpu0
            results.append(result)
        finally:
            proc.terminate()
            proc.join(5)
    return results


def _wait_port(port: int, proc, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.is_alive():
            raise RuntimeError("echo server exited before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"echo server not listening after {timeout:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--sync_threads", default="", help="also grpc's sync server, e.g. 4,16 (thread counts)"
    )
    args = parser.parse_args()
    sync_threads = [int(n) for n in args.sync_threads.split(",") if n]
    work = tempfile.mkdtemp(prefix="grpc-ceiling-")
    protoset = os.path.join(work, "serving.protoset")
    build_protoset(protoset)
    results = measure(
        ensure_ghz(), protoset, work, args.concurrency, args.requests, sync_threads=sync_threads
    )
    for result in results:
        print(
            f"{result.target:40s} {result.rows_per_s:8.0f} req/s  ok {result.ok}/{args.requests}"
            f"  p99 {result.p99_ms:6.1f} ms"
            f"  server CPU {result.server_cpu_s / result.duration_s:.2f} cores"
        )


if __name__ == "__main__":
    main()
