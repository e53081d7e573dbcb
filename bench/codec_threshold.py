"""Where the codec pool pays: REST JSON decode time by body size vs one thread-pool round trip.

    .venv/bin/python -m bench.codec_threshold

A request decoded in the pool costs a hop (submit, wake a thread, wake the loop) on top
of the decode; below the size where decoding takes about as long as the hop, the pool
only adds latency, and the loop is not held long enough to matter for other requests.
model_servers/codec_pool.INLINE_MAX_BYTES is set from this (docs/overload.md).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import orjson
from tfmodel_server.codecs import json_request
from tfmodel_server.codecs.limits import DecodeBudget

FEATURES = 784
DT_FLOAT = 1


def decode(body: bytes) -> None:
    doc = json_request.decode_body(body, split_numbers=True)
    json_request.inputs_from_doc(doc, {"x": (DT_FLOAT, (-1, FEATURES))}, DecodeBudget())


def best_of(fn, n: int = 30) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


async def hop_seconds(n: int = 2000) -> float:
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(2)
    await loop.run_in_executor(pool, int)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        await loop.run_in_executor(pool, int)
        times.append(time.perf_counter() - t)
    pool.shutdown()
    return float(np.median(times))


def main() -> None:
    hop = asyncio.run(hop_seconds())
    print(f"thread-pool round trip (median of 2000): {hop * 1e6:.0f} us")
    rng = np.random.default_rng(0)
    for rows in (1, 2, 4, 8, 16, 32, 64):
        body = orjson.dumps({"instances": rng.random((rows, FEATURES)).tolist()})
        t = best_of(lambda body=body: decode(body))
        print(
            f"{len(body) / 1024:8.0f} KiB ({rows:3d} rows): decode {t * 1e6:7.0f} us = {t / hop:5.1f} hops"
        )


if __name__ == "__main__":
    main()
