"""Where request decoding and response encoding run: inline when small, in a pool when large.

One event loop serves gRPC, REST, /healthz and /readyz. Decoding a 30 MB JSON
body or building its tensors takes hundreds of milliseconds of Python; on the
loop, every other request and every kubelet probe waits that long. In a
thread, the loop gets the GIL back at least every switch interval (5 ms) and
between numpy/orjson calls, so small requests keep their latency. A thread hop
costs tens of microseconds, more than decoding a small request, so below
INLINE_MAX_BYTES work stays on the loop. Measured (`python -m bench.codec_threshold`,
docs/overload.md): a pool round trip 40 us; decoding a 784-float row body of 15 KiB
74 us, 59 KiB 260 us (6.5 hops), 118 KiB 623 us, 236 KiB 2.9 ms. At 64 KiB the hop
adds under 15 % and the loop is never held for more than ~0.3 ms by one request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from tfmodel_server.model_servers.decode_processes import DecodeProcesses
from tfmodel_server.model_servers.memory_limit import usable_cores

T = TypeVar("T")

# Requests (and responses) under this many bytes are decoded (encoded) on the loop.
INLINE_MAX_BYTES = 64 * 1024


class CodecPool:
    """A thread pool sized to the cores for decode/encode of large payloads, and the REST
    decode processes (large predict bodies; None: decoded in the threads)."""

    def __init__(
        self,
        threads: int = 0,
        inline_max_bytes: int = INLINE_MAX_BYTES,
        processes: DecodeProcesses | None = None,
    ) -> None:
        self.threads = threads or usable_cores()
        self.inline_max_bytes = inline_max_bytes
        self.processes = processes
        self._pool: ThreadPoolExecutor | None = None

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="codec")
        return self._pool

    async def run(self, size: int, fn: Callable[..., T], *args: object) -> T:
        """fn(*args), on the loop when `size` (the payload's bytes) is small, else in the pool."""
        if size < self.inline_max_bytes:
            return fn(*args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor(), fn, *args)

    def close(self) -> None:
        if self.processes is not None:
            self.processes.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
