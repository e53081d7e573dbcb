"""Shadow traffic (tfmodel): a share of stable's requests also runs on the canary version.

For a model with a `canary` version label, a request that asked for the `stable` label
or for no version at all, and that a version other than the canary answered, is picked
with the model's shadow share (the traffic split file's shadowPercent, else
--shadow_traffic_percent). Once its reply has been sent (the API layer starts deferred
work then: request_context.defer_after_reply) the same inputs run on the canary in this
process, and the two answers are compared. The canary's answer is never returned and
its failures never reach the client: they are counted (shadow_metrics.py), and logged
at most once a minute.

Bounded: at most `max_concurrent` shadow runs at once, and none while admission control
is past half its budget (`busy`); a shadow that cannot start is shed and counted. The
stable answer waiting for its comparison is held only while its shadow runs.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import numpy as np

from tfmodel_server.core.manager import CANARY_LABEL, STABLE_LABEL, ServableManager
from tfmodel_server.errors import ServingError
from tfmodel_server.monitoring import request_context
from tfmodel_server.monitoring.shadow_metrics import (
    SHED_CONCURRENCY,
    SHED_LOAD,
    SHED_UNAVAILABLE,
    ShadowStats,
)
from tfmodel_server.servables.tensorflow.servable import Servable, Signature

log = logging.getLogger(__name__)

_ERROR_LOG_INTERVAL = 60.0
# Above this many output bytes the comparison runs in a thread, off the event loop.
_COMPARE_INLINE_BYTES = 64 * 1024

Outputs = Mapping[str, np.ndarray]
# Runs the request on the canary's servable (after its own signature check), -> outputs.
CanaryCall = Callable[[Servable], Awaitable[dict[str, np.ndarray]]]


@dataclass(frozen=True)
class ShadowOptions:
    default_fraction: float = 0.0  # --shadow_traffic_percent / 100
    max_concurrent: int = 4  # --shadow_max_concurrent


@dataclass(frozen=True)
class Agreement:
    """Stable's and the canary's outputs side by side (pure: `compare`)."""

    max_abs_diff: float  # over every output; inf when a shape, alias or value type differs
    top1_rows: int  # rows of 2-D float outputs with at least two columns
    top1_agree: int  # of which the argmax is the same


def compare(stable: Outputs, canary: Outputs) -> Agreement:
    """Every output stable returned, against the canary's of the same alias."""
    worst, rows, agree = 0.0, 0, 0
    for alias, a in stable.items():
        b = canary.get(alias)
        if b is None or a.shape != b.shape:
            worst = float("inf")
            continue
        if a.size == 0:
            continue
        if a.dtype.kind in "fciub" and b.dtype.kind in "fciub":
            x, y = a.astype(np.float64, copy=False), b.astype(np.float64, copy=False)
            same_nan = np.isnan(x) & np.isnan(y)
            diff = np.where(same_nan, 0.0, np.abs(x - y))
            largest = float(np.max(diff))
            worst = max(worst, largest if not np.isnan(largest) else float("inf"))
            if a.ndim == 2 and a.shape[1] >= 2 and a.dtype.kind == "f":
                rows += a.shape[0]
                agree += int(np.count_nonzero(np.argmax(a, axis=1) == np.argmax(b, axis=1)))
        elif not np.array_equal(a, b):
            worst = float("inf")
    return Agreement(worst, rows, agree)


class ShadowTraffic:
    """Picks, bounds, runs and measures shadow requests (event loop only)."""

    def __init__(
        self,
        manager: ServableManager[Servable],
        options: ShadowOptions,
        stats: ShadowStats | None = None,
        busy: Callable[[], bool] = lambda: False,
        sample: Callable[[], float] = random.random,
    ) -> None:
        self.manager = manager
        self.options = options
        self.stats = stats or ShadowStats()
        self._busy = busy
        self._sample = sample
        self._fractions: dict[str, float] = {}
        self._tasks: set[asyncio.Task] = set()
        self._last_error_log = -_ERROR_LOG_INTERVAL

    def configure(self, fractions: Mapping[str, float]) -> None:
        """Per-model shares from the traffic split file (a model absent: the flag's)."""
        self._fractions = dict(fractions)

    @property
    def running(self) -> int:
        return len(self._tasks)

    def pick(
        self, name: str, version: int | None, label: str | None, served: int
    ) -> tuple[str, int, int] | None:
        """(model, stable, canary) when this request is to be shadowed, else None (cheap)."""
        fraction = self._fractions.get(name, self.options.default_fraction)
        if fraction <= 0.0 or version is not None or label not in (None, STABLE_LABEL):
            return None
        if fraction < 1.0 and self._sample() >= fraction:
            return None  # drawn first: the label lookup takes the manager's lock
        canary = self.manager.labels(name).get(CANARY_LABEL)
        if canary is None or canary == served:
            return None  # no canary, or the split already sent this request to it
        return (name, served, canary)

    def submit(
        self,
        pair: tuple[str, int, int],
        call: CanaryCall,
        stable_outputs: Outputs,
        stable_seconds: float,
    ) -> None:
        """Run `call` on the canary once the reply is sent (dropped outside a request)."""
        request_context.defer_after_reply(
            lambda: self._start(pair, call, stable_outputs, stable_seconds)
        )

    def _start(self, pair, call: CanaryCall, stable_outputs: Outputs, stable_seconds: float):
        if self._busy():  # first: under load every shadow is shed, counted as such
            self.stats.shed_one(pair[0], SHED_LOAD)
            return
        if len(self._tasks) >= self.options.max_concurrent:
            self.stats.shed_one(pair[0], SHED_CONCURRENCY)
            return
        # A context of its own: nothing of the finished request's record leaks into it.
        task = asyncio.get_running_loop().create_task(
            self._run(pair, call, stable_outputs, stable_seconds), context=contextvars.Context()
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, pair, call: CanaryCall, stable_outputs: Outputs, stable_seconds: float):
        model, _stable, canary = pair
        status, seconds, outputs = "OK", None, None
        try:
            handle = self.manager.get_handle(model, canary)
        except ServingError:
            self.stats.shed_one(model, SHED_UNAVAILABLE)  # loading, or unloaded meanwhile
            return
        try:
            with handle:
                start = time.perf_counter()
                outputs = await call(handle.servable)
                seconds = time.perf_counter() - start
        except asyncio.CancelledError:
            return  # shutdown: not a canary failure
        except ServingError as e:
            status = e.code.name
            self._log_failure(pair, f"{e.code.name}: {e.message}")
        except Exception as e:  # never the client's problem: counted as INTERNAL
            status = "INTERNAL"
            self._log_failure(pair, f"{type(e).__name__}: {e}")
        self.stats.ran(pair, status, stable_seconds, seconds)
        if outputs is None:
            return
        if sum(a.nbytes for a in outputs.values()) > _COMPARE_INLINE_BYTES:
            agreement = await asyncio.to_thread(compare, stable_outputs, outputs)
        else:
            agreement = compare(stable_outputs, outputs)
        self.stats.compared(pair, agreement.max_abs_diff, agreement.top1_rows, agreement.top1_agree)

    def _log_failure(self, pair: tuple[str, int, int], what: str) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= _ERROR_LOG_INTERVAL:
            self._last_error_log = now
            log.warning(
                "shadow request of model %s on canary %d (stable %d) failed: %s "
                "(the client had stable's answer; :tfmodel:shadow_request_count counts these)",
                pair[0],
                pair[2],
                pair[1],
                what,
            )

    async def close(self) -> None:
        """Shutdown: cancel what runs (their TF calls finish in the runner's threads)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def signature_call(
    signature_name: str,
    run: Callable[[Servable, Signature], Awaitable[dict[str, np.ndarray]]],
) -> CanaryCall:
    """A CanaryCall that looks the signature up on the canary's servable first."""

    async def call(servable: Servable) -> dict[str, np.ndarray]:
        return await run(servable, servable.signature(signature_name))

    return call
