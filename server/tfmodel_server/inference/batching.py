"""Dynamic batching behind the InferenceRunner seam (--enable_batching).

Mirrors TF Serving's BatchingSession on a SharedBatchScheduler:
- one queue per (servable version, signature, output set, inner shapes and
  dtypes): requests that cannot be concatenated never meet;
- with --enable_per_model_batching_parameters a version's queues use its own
  assets.extra/batching_params.pbtxt (the threads stay the shared pool's) and
  a version without that file is not batched (bundle_factory_util.cc);
- a request joins the queue's open batch; the batch becomes schedulable when it
  holds max_batch_size rows or batch_timeout_micros passed since its first
  request, and is taken as soon as one of num_batch_threads threads is free
  (so with timeout 0, requests pile up while every thread is busy);
- a request that does not fit the open batch closes it; if max_enqueued_batches
  batches are already waiting, the request fails at once with UNAVAILABLE;
- inputs are concatenated along dim 0 (padded up to the next allowed batch
  size by repeating the first row of the last request), one signature.run per
  batch in a worker thread, outputs split back by row counts.

All queue state lives on the event loop thread; worker threads only merge,
run and split, so no locks are needed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import grpc
import numpy as np

from tfmodel_server.errors import ServingError, invalid_argument, unavailable
from tfmodel_server.inference.batching_params import BatchingParams

if TYPE_CHECKING:
    from tfmodel_server.servables.tensorflow.servable import Servable, Signature

log = logging.getLogger(__name__)


class BatchStats(Protocol):
    """Receives one call per processed batch (metrics.ServingMetrics implements it)."""

    def record_batch(
        self,
        model_name: str,
        version: int,
        signature_key: str,
        batch_size: int,
        padded_size: int,
        queueing_latencies_us: Sequence[float],
        runtime_us: float,
        thread_pool_name: str = ...,
    ) -> None: ...


@dataclass
class _Task:
    inputs: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future
    enqueued_at: float  # time.monotonic()


@dataclass
class _Batch:
    tasks: list[_Task] = field(default_factory=list)
    rows: int = 0
    started_at: float = 0.0  # first request's enqueue time


class _Queue:
    def __init__(
        self,
        key: tuple,
        servable: Servable,
        signature: Signature,
        output_filter: tuple[str, ...],
        params: BatchingParams,
    ):
        self.key = key
        self.params = params
        self.servable = servable
        self.signature = signature
        self.output_filter = output_filter
        self.open: _Batch | None = None
        self.closed: deque[_Batch] = deque()  # closed, waiting for a thread
        self.running = 0  # batches of this queue on a thread

    @property
    def idle(self) -> bool:
        return self.open is None and not self.closed and self.running == 0

    def close_open(self) -> None:
        if self.open is not None and self.open.tasks:
            self.closed.append(self.open)
        self.open = None


class BatchingRunner:
    """InferenceRunner that merges concurrent requests into batches."""

    def __init__(
        self, params: BatchingParams, stats: BatchStats | None = None, per_model: bool = False
    ) -> None:
        self.params = params
        self.per_model = per_model
        self.stats = stats
        self._threads = params.threads
        self._free_threads = self._threads
        self._pool = ThreadPoolExecutor(
            max_workers=self._threads, thread_name_prefix=params.thread_pool_name
        )
        self._queues: dict[tuple, _Queue] = {}
        self._schedule_pending = False
        self._closed = False
        self._inflight: set[asyncio.Future] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    # ---- InferenceRunner -------------------------------------------------

    async def run(
        self,
        servable: Servable,
        signature: Signature,
        inputs: dict[str, np.ndarray],
        output_filter: Sequence[str] = (),
    ) -> dict[str, np.ndarray]:
        if self._closed:
            raise unavailable("Server is shutting down; batching queue is closed")
        loop = asyncio.get_running_loop()
        self._loop = loop
        params: BatchingParams | None = self.params
        if self.per_model:
            params = getattr(servable, "batching_params", None)
            if params is None:  # no batching_params.pbtxt: this version is not batched
                return await loop.run_in_executor(
                    self._pool, signature.run, inputs, tuple(output_filter)
                )
        assert params is not None
        rows = _batch_rows(inputs)
        if rows is None or rows == 0:
            # Not batchable (scalar inputs, unequal dim 0, or empty): run alone, as
            # TF Serving's BatchingSession would reject what a direct run can serve.
            return await loop.run_in_executor(
                self._pool, signature.run, inputs, tuple(output_filter)
            )
        if rows > params.max_batch_size:
            raise invalid_argument(
                f"Task size {rows} is larger than maximum input batch size {params.max_batch_size}"
            )
        filt = tuple(sorted(output_filter))
        key = (id(servable), servable.name, servable.version, signature.key, filt) + (
            _shape_key(inputs, params.pad_variable_length_inputs),
        )
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _Queue(key, servable, signature, filt, params)
        future = loop.create_future()
        self._enqueue(queue, _Task(inputs, rows, future, time.monotonic()))
        return await future

    def close(self) -> None:
        """Stop accepting requests, run every waiting batch, wait for the threads.

        Results reach their callers once the event loop runs again; prefer drain().
        """
        self._flush()
        self._pool.shutdown(wait=True)

    async def drain(self) -> None:
        """Async close: every queued request is answered before this returns."""
        self._flush()
        if self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)
        self._pool.shutdown(wait=True)

    def _flush(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for queue in list(self._queues.values()):
            queue.close_open()
            while queue.closed:
                self._dispatch(queue, queue.closed.popleft(), count_thread=False)

    # ---- queueing (event loop thread) -------------------------------------

    @property
    def num_queues(self) -> int:
        return len(self._queues)

    def queue_depth(self) -> int:
        """Requests waiting in any queue (for tests and metrics)."""
        total = 0
        for q in self._queues.values():
            total += sum(len(b.tasks) for b in q.closed)
            total += len(q.open.tasks) if q.open else 0
        return total

    def _enqueue(self, queue: _Queue, task: _Task) -> None:
        p = queue.params
        open_batch = queue.open
        # shared_batch_scheduler.h counts every batch not yet on a thread, the open
        # one included, and checks only when the request needs a new batch. A full
        # batch closed here stands for TF's full open batch.
        if open_batch is not None:
            needs_new_batch = open_batch.rows + task.rows > p.max_batch_size
            enqueued = len(queue.closed) + 1
        else:
            needs_new_batch = bool(queue.closed)
            enqueued = len(queue.closed)
        if needs_new_batch and enqueued >= p.max_enqueued_batches:
            raise unavailable(
                "The batch scheduling queue to which this task was submitted is full; "
                f"currently {enqueued} batches enqueued and "
                f"max_enqueued_batches is {p.max_enqueued_batches}"
            )
        if open_batch is not None and needs_new_batch:
            queue.close_open()
            open_batch = None
        if open_batch is None:
            open_batch = queue.open = _Batch(started_at=task.enqueued_at)
        open_batch.tasks.append(task)
        open_batch.rows += task.rows
        if open_batch.rows >= p.max_batch_size:
            queue.close_open()
        # Coalesce: requests arriving in the same loop iteration join one batch.
        if not self._schedule_pending:
            self._schedule_pending = True
            assert self._loop is not None
            self._loop.call_soon(self._schedule)

    def _schedule(self) -> None:
        self._schedule_pending = False
        while self._free_threads > 0:
            picked = self._pick()
            if picked is None:
                return
            queue, batch = picked
            self._dispatch(queue, batch)

    def _arm_timer(self, deadline: float) -> None:
        """One timer, at the earliest deadline of an open batch."""
        if self._timer is not None:
            if self._timer.when() <= deadline:
                return
            self._timer.cancel()
        assert self._loop is not None
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._schedule()

    def _pick(self) -> tuple[_Queue, _Batch] | None:
        """Oldest closed batch; else the oldest open batch whose timeout passed."""
        best: tuple[float, _Queue] | None = None
        for queue in self._queues.values():
            if queue.closed and (best is None or queue.closed[0].started_at < best[0]):
                best = (queue.closed[0].started_at, queue)
        if best is not None:
            return best[1], best[1].closed.popleft()
        now = time.monotonic()
        next_deadline: float | None = None
        for queue in self._queues.values():
            batch = queue.open
            if batch is None or not batch.tasks:
                continue
            deadline = batch.started_at + queue.params.batch_timeout_micros / 1e6
            if now >= deadline:
                if best is None or batch.started_at < best[0]:
                    best = (batch.started_at, queue)
            elif next_deadline is None or deadline < next_deadline:
                next_deadline = deadline
        if best is None:
            if next_deadline is not None:
                self._arm_timer(next_deadline)
            return None
        queue = best[1]
        batch = queue.open
        queue.open = None
        assert batch is not None
        return queue, batch

    def _dispatch(self, queue: _Queue, batch: _Batch, count_thread: bool = True) -> None:
        # Requests whose callers went away (cancelled) are not computed.
        live = [t for t in batch.tasks if not t.future.done()]
        if not live:
            self._prune(queue)
            return
        assert self._loop is not None
        if count_thread:
            self._free_threads -= 1
        queue.running += 1
        dequeued = time.monotonic()
        work = self._loop.run_in_executor(
            self._pool,
            _process_batch,
            queue.signature,
            queue.output_filter,
            [t.inputs for t in live],
            [t.rows for t in live],
            queue.params,
        )
        self._inflight.add(work)
        work.add_done_callback(lambda f: self._batch_done(queue, live, dequeued, f, count_thread))

    def _prune(self, queue: _Queue) -> None:
        # Drop idle queues so an unloaded version's servable is not kept alive.
        if queue.idle and self._queues.get(queue.key) is queue:
            del self._queues[queue.key]

    def _batch_done(
        self,
        queue: _Queue,
        tasks: list[_Task],
        dequeued: float,
        work: asyncio.Future,
        counted_thread: bool,
    ) -> None:
        self._inflight.discard(work)
        if counted_thread:
            self._free_threads += 1
        queue.running -= 1
        self._prune(queue)
        error = unavailable("Batch was cancelled") if work.cancelled() else work.exception()
        if error is not None and not isinstance(error, ServingError):
            log.exception("batch failed", exc_info=error)
            error = ServingError(grpc.StatusCode.INTERNAL, f"Batch failed: {error}")
        if error is None:
            outputs, padded, runtime_us = work.result()
            for task, result in zip(tasks, outputs, strict=True):
                if not task.future.done():
                    task.future.set_result(result)
            self._record(queue, tasks, dequeued, padded, runtime_us)
        else:
            for task in tasks:
                if not task.future.done():
                    task.future.set_exception(error)
        if not self._closed:
            self._schedule()

    def _record(
        self, queue: _Queue, tasks: list[_Task], dequeued: float, padded: int, runtime_us: float
    ) -> None:
        if self.stats is None:
            return
        try:
            self.stats.record_batch(
                queue.servable.name,
                queue.servable.version,
                queue.signature.key,
                sum(t.rows for t in tasks),
                padded,
                [(dequeued - t.enqueued_at) * 1e6 for t in tasks],
                runtime_us,
                thread_pool_name=self.params.thread_pool_name,
            )
        except Exception:  # metrics must never fail a request
            log.exception("batch stats hook failed")


# ---- helpers run in worker threads -----------------------------------------


def _batch_rows(inputs: dict[str, np.ndarray]) -> int | None:
    """Common dim-0 size of all inputs; None when the request cannot be batched."""
    rows: int | None = None
    for array in inputs.values():
        if array.ndim == 0:
            return None
        if rows is None:
            rows = int(array.shape[0])
        elif rows != array.shape[0]:
            return None
    return rows


def _shape_key(inputs: dict[str, np.ndarray], pad_variable_length: bool) -> tuple:
    if pad_variable_length:
        return tuple((a, inputs[a].dtype.str, inputs[a].ndim) for a in sorted(inputs))
    return tuple((a, inputs[a].dtype.str, inputs[a].shape[1:]) for a in sorted(inputs))


def _pad_inner(array: np.ndarray, target: tuple[int, ...]) -> np.ndarray:
    """batching_util.cc AddPadding: pad dims >= 1 at the end with the first element."""
    if array.shape[1:] == target:
        return array
    if array.size == 0:
        raise invalid_argument("Got empty tensor in batch of non-empty tensors.")
    if not 1 <= array.ndim <= 6:
        raise invalid_argument("Only tensors with rank from 1 to 6 can be padded.")
    widths = [(0, 0)] + [(0, t - s) for s, t in zip(array.shape[1:], target, strict=True)]
    if array.dtype == object:
        out = np.empty((array.shape[0],) + target, dtype=object)
        out[...] = array.flat[0]
        out[tuple(slice(0, s) for s in array.shape)] = array
        return out
    return np.pad(array, widths, mode="constant", constant_values=array.flat[0])


def _process_batch(
    signature: Signature,
    output_filter: tuple[str, ...],
    task_inputs: list[dict[str, np.ndarray]],
    task_rows: list[int],
    params: BatchingParams,
) -> tuple[list[dict[str, np.ndarray]], int, float]:
    total = sum(task_rows)
    padded = params.padded_size(total)
    merged: dict[str, np.ndarray] = {}
    for alias in task_inputs[0]:
        parts = [inputs[alias] for inputs in task_inputs]
        if params.pad_variable_length_inputs:
            target = tuple(max(dims) for dims in zip(*(p.shape[1:] for p in parts), strict=True))
            parts = [_pad_inner(p, target) for p in parts]
        if padded > total:
            # BatchingSession pads with the first row of the last task.
            parts.append(np.repeat(parts[-1][:1], padded - total, axis=0))
        merged[alias] = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
    start = time.perf_counter()
    outputs = signature.run(merged, output_filter)
    runtime_us = (time.perf_counter() - start) * 1e6
    for alias, array in outputs.items():
        array = np.asarray(array)
        if array.ndim == 0:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"Batched output tensor has 0 dimensions (output '{alias}')",
            )
        if array.shape[0] != padded:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "Batched output tensor's 0th dimension does not equal the sum of the 0th "
                f"dimension sizes of the input tensors (output '{alias}': {array.shape[0]} "
                f"rows for a batch of {padded})",
            )
    results: list[dict[str, np.ndarray]] = [{} for _ in task_rows]
    for alias, array in outputs.items():
        offset = 0
        for i, rows in enumerate(task_rows):
            results[i][alias] = array[offset : offset + rows]
            offset += rows
    return results, padded, runtime_us
