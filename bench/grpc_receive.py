"""What grpc core buffers of calls the Python handler has not read: a bare grpc.aio server.

No TensorFlow, no tfmodel: a grpc.aio server with one method, a client process
sending CALLS concurrent calls of 12.5 MB over 8 connections, the server
process's peak RSS growth (VmHWM, reset before). One line per way of handling
the calls, each on a server process of its own, all in one run:

- unary: a unary handler (grpc.aio receives each message before the handler runs);
- wait: a client-streaming handler that waits for one of 2 slots before reading;
- refuse: a client-streaming handler that refuses (RESOURCE_EXHAUSTED) a call
  arriving when 2 are being read, before reading it (what was tried in the server,
  docs/overload.md);
- max_rpcs: a unary handler under grpc.aio.server(maximum_concurrent_rpcs=2);
each with BDP probing on (grpc's default) and off (grpc.http2.bdp_probe=0).

    python -m bench.grpc_receive [--calls 96] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys

import grpc

from bench.summary import peak_bytes, reset_peak, rss_bytes

MESSAGE_BYTES = 12_500_000
CONNECTIONS = 8
SLOTS = 2

_CLIENT = """
import sys, grpc
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
port, calls, size, connections = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
channels = [grpc.insecure_channel(f"127.0.0.1:{port}") for _ in range(connections)]
raw = b"\\1" * size
def one(i):
    try:
        channels[i % connections].unary_unary("/t.S/M")(raw, timeout=120)
        return "OK"
    except grpc.RpcError as e:
        return e.code().name
with ThreadPoolExecutor(calls) as pool:
    print(dict(Counter(pool.map(one, range(calls)))))
"""


async def _measure(mode: str, bdp_probe: bool, calls: int) -> str:
    options: list[tuple[str, int]] = [("grpc.max_receive_message_length", -1)]
    if not bdp_probe:
        options.append(("grpc.http2.bdp_probe", 0))
    server = grpc.aio.server(
        options=options, maximum_concurrent_rpcs=SLOTS if mode == "max_rpcs" else None
    )
    slots = asyncio.Semaphore(SLOTS)
    reading = 0

    async def streaming(messages, context):
        nonlocal reading
        if mode == "refuse" and reading >= SLOTS:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy")
        reading += 1
        try:
            async with slots:
                async for _ in messages:
                    break
        finally:
            reading -= 1
        return b"x"

    async def unary(request, context):
        return b"x"

    if mode in ("wait", "refuse"):
        handler = grpc.stream_unary_rpc_method_handler(streaming)
    else:
        handler = grpc.unary_unary_rpc_method_handler(unary)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.S", {"M": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        reset_peak("self")
        before = rss_bytes("self")
        client = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CLIENT,
            str(port),
            str(calls),
            str(MESSAGE_BYTES),
            str(CONNECTIONS),
            stdout=subprocess.PIPE,
        )
        out, _ = await client.communicate()
        growth = (peak_bytes("self") - before) / 1e6
    finally:
        await server.stop(None)
    probe = "on " if bdp_probe else "off"
    return f"{mode:8} bdp_probe {probe}: server peak RSS growth {growth:6.0f} MB; {out.decode().strip()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--one", nargs=2, metavar=("MODE", "BDP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(asyncio.run(_measure(args.one[0], args.one[1] == "on", args.calls)), flush=True)
        return
    print(f"{args.calls} calls x {MESSAGE_BYTES / 1e6} MB over {CONNECTIONS} connections")
    for _ in range(args.rounds):
        for mode in ("unary", "wait", "refuse", "max_rpcs"):
            for bdp in ("on", "off"):
                # A fresh server process each: memory freed by one is reused by the next.
                one = ["--one", mode, bdp, "--calls", str(args.calls)]
                subprocess.run([sys.executable, "-m", "bench.grpc_receive", *one], check=True)


if __name__ == "__main__":
    main()
