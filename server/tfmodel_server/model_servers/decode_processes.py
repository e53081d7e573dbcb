"""The server's REST decode processes (codecs/decode_worker.py): starting, calling, restarting.

A request takes an idle process, and a thread of this module's own pool writes the body to
the process's pipe and reads the arrays back: the thread holds the GIL only for the small
pickles, not for the decoding. The processes run at a lower priority (nice) than the
server, so the event loop (small requests, probes) is scheduled first when the cores are
busy decoding large bodies.

Whatever goes wrong with a process (it died, a pipe broke) costs only the speed-up: the
caller gets None and decodes in the server as before, and the process is replaced.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import pickle
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from tfmodel_server.codecs import decode_worker

log = logging.getLogger(__name__)

# The processes' nice value: below the server's, so the loop wins a contended core.
DECODE_NICE = 10
_PIPE_BYTES = 1 << 20  # fewer wakeups per 30 MB body than the default 64 KiB


class _Process:
    """One decode process and its two pipes; used by one thread at a time."""

    def __init__(self, nice: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", decode_worker.__name__, str(nice)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self._to = self.process.stdin.fileno()
        self._from = self.process.stdout.fileno()
        for fd in (self._to, self._from):
            try:
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
            except OSError:  # above /proc/sys/fs/pipe-max-size: the default works too
                pass
        self.broken = False
        self.ready = False

    def wait_ready(self) -> None:
        """Read the process's READY message (sent once its imports are done)."""
        if not self.ready:
            answer = decode_worker.read_message(self._from)
            if answer[0] != decode_worker.READY:
                raise ValueError(f"decode process {self.process.pid} said {answer[0]!r}")
            self.ready = True

    def call(self, message: tuple) -> tuple:
        try:
            self.wait_ready()
            decode_worker.write_message(self._to, message)
            return decode_worker.read_message(self._from)
        except BaseException:
            self.broken = True  # the stream is out of step: never reuse it
            raise

    def close(self) -> None:
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()  # EOF: the process exits
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class DecodeProcesses:
    """`count` decode processes, started on first use."""

    def __init__(self, count: int, nice: int = DECODE_NICE) -> None:
        self.count = count
        self.nice = nice
        self._idle: list[_Process] = []
        self._waiters: list[asyncio.Future[None]] = []  # requests waiting for a process
        self._started = 0
        self._threads: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        """Start every process now (they import numpy and orjson: under a second)."""
        with self._lock:
            while self._started < self.count and not self._closed:
                self._idle.append(_Process(self.nice))
                self._started += 1
            if self._threads is None:
                self._threads = ThreadPoolExecutor(self.count, thread_name_prefix="decode-io")

    def wait_ready(self) -> list[int]:
        """Start the processes and wait until they have imported what they need (so
        that their memory can be counted); returns their pids. Blocking: not on the loop."""
        self.start()
        with self._lock:
            self._idle = [
                p if p.process.poll() is None else _replace(p, self.nice) for p in self._idle
            ]
            idle = list(self._idle)
        for process in idle:
            try:
                process.wait_ready()
            except (OSError, EOFError, ValueError) as e:
                process.broken = True
                log.warning("REST decode process %d did not start: %s", process.process.pid, e)
        return [p.process.pid for p in idle if not p.broken]

    async def decode_predict(
        self, body: bytes, specs: decode_worker.SpecsBySignature, max_bytes: int
    ) -> tuple | None:
        """decode_worker.decode_predict's answer, or None: decode it in the server."""
        if self._closed:
            return None
        self.start()
        process = await self._take()
        assert self._threads is not None
        message = (pickle.PickleBuffer(body), specs, max_bytes)
        done: Future[tuple] = self._threads.submit(process.call, message)
        # The process is free again once its thread is done, not when this coroutine is
        # (a request that timed out is cancelled here while its process still answers).
        done.add_done_callback(lambda _: self._give_back(process))
        try:
            return await asyncio.wrap_future(done)
        except asyncio.CancelledError:
            # The request gave up (its deadline): the process may go on decoding something
            # huge or pathological for long; killed, it is replaced at once instead of
            # holding a process and a thread until it finishes.
            if not done.done():
                process.process.kill()
            raise
        except (OSError, EOFError, pickle.UnpicklingError, ValueError) as e:
            log.warning("REST decode process %d failed (%s: %s); decoding in the server",
                        process.process.pid, type(e).__name__, e)  # fmt: skip
            return None

    async def _take(self) -> _Process:
        while True:
            waiter = asyncio.get_running_loop().create_future()
            with self._lock:  # checked and registered at once: no give-back slips between
                process = self._idle.pop() if self._idle else None
                if process is None:
                    self._waiters.append(waiter)
            if process is not None:
                if process.process.poll() is None:
                    return process
                process.close()  # died while idle (OOM killer, kill -9): replace it now
                return _Process(self.nice)
            try:
                await waiter
            finally:
                with self._lock:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)

    def _give_back(self, process: _Process) -> None:
        """In the thread that used `process`: back to the idle list, and every waiting
        request is woken (on its own loop) to try again."""
        if process.broken:
            process.close()
            process = _Process(self.nice)  # a fresh one takes its place
        with self._lock:
            if self._closed:
                process.close()
                return
            self._idle.append(process)
            waiters = list(self._waiters)
        for waiter in waiters:
            try:
                waiter.get_loop().call_soon_threadsafe(_wake, waiter)
            except RuntimeError:  # its loop is closed
                pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for process in idle:
            process.close()
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _replace(process: _Process, nice: int) -> _Process:
    process.close()
    return _Process(nice)


def default_count(cores: int, server_workers: int) -> int:
    """One decode process per core, shared out among --workers server processes."""
    return max(1, cores // max(1, server_workers))


def flag_count(flag: int, cores: int, server_workers: int) -> int:
    """--rest_decode_processes: -1 = one per core (default), 0 = none (decode in threads)."""
    if flag < 0:
        return default_count(cores, server_workers)
    return flag
