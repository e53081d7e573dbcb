"""ServableManager: TF Serving's AspiredVersionsManager + BasicManager.

Runs on the asyncio event loop; source polls, loads and unloads run in worker
threads. It owns the aspired/loaded state of every version (one LoaderHarness
each, states.py), asks policy.py which versions to load and unload, and hands
out refcounted ServableHandles. What to serve comes from the model_servers
layer (ServerCore) through `set_models` and `set_labels`; the Loader and the
Source are plugged in, so this module never imports TensorFlow.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic

import grpc
from tensorflow_serving.config.model_server_config_pb2 import ModelConfig

from tfmodel_server.core.handle import ServableHandle
from tfmodel_server.core.harness import LoaderHarness, VersionStatus
from tfmodel_server.core.interfaces import Loader, ModelSourceState, S, Source, VersionDir
from tfmodel_server.core.policy import aspired_versions, describe, versions_to_unload
from tfmodel_server.core.states import AVAILABLE, END, UNLOADING, VersionState
from tfmodel_server.errors import ServingError, invalid_argument, not_found

log = logging.getLogger(__name__)


__all__ = ["ManagerOptions", "ModelInfo", "ServableManager", "VersionStatus"]


# Labels the canary traffic split (set_traffic_split) routes between.
STABLE_LABEL = "stable"
CANARY_LABEL = "canary"


@dataclass
class ManagerOptions:
    file_system_poll_wait_seconds: float = 1.0  # >0 period, 0 poll once per config, <0 never
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    # Called in the load thread after the servable loads, before AVAILABLE;
    # raising fails the load (warmup plugs in here).
    post_load_hook: Callable[..., None] | None = None
    # (model, version, path, latency_us, ok) after each load attempt (metrics).
    load_observer: Callable[[str, int, str, float, bool], None] | None = None
    load_threads: int = 1
    # Gap between the two scans `refresh` makes to see a new version dir
    # unchanged; None = min(poll period, 0.5 s).
    version_settle_seconds: float | None = None
    # Bound on how long stop() waits for outstanding handles before unloading anyway.
    stop_timeout_seconds: float = 30.0


@dataclass
class ModelInfo:
    name: str
    base_path: str
    versions: list[VersionStatus]  # highest version first, as GetModelStatus
    labels: dict[str, int] = field(default_factory=dict)
    policy: str = "latest 1"
    error: str = ""  # source problem, e.g. missing base path


class _Model(Generic[S]):
    def __init__(self, config: ModelConfig) -> None:
        self.name = config.name
        self.config = config
        self.configured = True
        self.versions: dict[int, LoaderHarness[S]] = {}
        self.labels: dict[str, int] = {}
        self.on_disk: dict[int, VersionDir] = {}
        self.pending: set[int] = set()
        self.source_error: str | None = None


class ServableManager(Generic[S]):
    def __init__(
        self, loader: Loader[S], source: Source, options: ManagerOptions | None = None
    ) -> None:
        self.options = options or ManagerOptions()
        self._loader = loader
        self._source = source
        self._lock = threading.RLock()  # guards model/version state read by request threads
        self._models: dict[str, _Model[S]] = {}
        self._canary_fractions: dict[str, float] = {}
        self._rng = random.Random()
        self._load_pool = ThreadPoolExecutor(
            max_workers=max(1, self.options.load_threads), thread_name_prefix="tf-load"
        )
        self._unload_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tf-unload")
        self._loop_: asyncio.AbstractEventLoop | None = None
        self._poll_lock_: asyncio.Lock | None = None
        self._changed_: asyncio.Event | None = None
        self._poll_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._listeners: list[Callable[[], None]] = []
        self._config_applied = False
        self._stopping = False
        self._was_ready = False

    # ----------------------------------------------------------------- lifecycle

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop_ is None:
            self._loop_ = asyncio.get_running_loop()
            self._poll_lock_ = asyncio.Lock()
            self._changed_ = asyncio.Event()
        return self._loop_

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop_ is not None, "manager used before start()/refresh() bound its loop"
        return self._loop_

    async def start(self) -> None:
        """Start the periodic source poll (when the poll period is > 0)."""
        self._bind_loop()
        if self.options.file_system_poll_wait_seconds > 0 and self._poll_task is None:
            self._poll_task = asyncio.create_task(self._poll_forever(), name="fs-poll")

    async def stop(self) -> None:
        """Stop polling and unload every version (waits, bounded, for outstanding handles)."""
        loop = self._bind_loop()
        self._stopping = True
        if self._poll_task is not None:
            self._poll_task.cancel()
            try:
                await self._poll_task
            except (asyncio.CancelledError, Exception):
                pass
            self._poll_task = None
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        with self._lock:
            for model in self._models.values():
                model.configured = False
                model.labels = {}
                for record in model.versions.values():
                    if record.retry_pending:
                        record.give_up()  # its timer is cancelled: no attempt is to come
                    elif record.loading:
                        record.cancel_load = True
                    if record.state == AVAILABLE:
                        self._begin_unload(record)
        deadline = loop.time() + self.options.stop_timeout_seconds
        while self._tasks or self._any_unloading():
            if loop.time() > deadline:
                break
            await self._wait_changed(0.1)
        # Handles still held past the deadline: unload anyway.
        with self._lock:
            leftovers = [
                r
                for m in self._models.values()
                for r in m.versions.values()
                if r.servable is not None
            ]
        for record in leftovers:
            log.warning(
                "Unloading %s version %d with %d handle(s) still held",
                record.model,
                record.version,
                record.refcount,
            )
            servable = record.servable
            if servable is not None:
                await loop.run_in_executor(self._unload_pool, servable.unload)
            with self._lock:
                if record.state == UNLOADING:
                    record.unloaded()
        self._load_pool.shutdown(wait=False, cancel_futures=True)
        self._unload_pool.shutdown(wait=False)

    def _any_unloading(self) -> bool:
        with self._lock:
            return any(
                r.state == UNLOADING for m in self._models.values() for r in m.versions.values()
            )

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.options.file_system_poll_wait_seconds)
            try:
                await self.poll_now()
            except Exception:
                log.exception("File system poll failed")

    async def poll_now(self) -> None:
        """One source poll of every configured model, then reconcile."""
        self._bind_loop()
        assert self._poll_lock_ is not None
        async with self._poll_lock_:
            states = await asyncio.to_thread(self._source.poll)
            self._apply_source_states(states)

    def _apply_source_states(self, states: dict[str, ModelSourceState]) -> None:
        for name, state in states.items():
            model = self._models.get(name)
            if model is None or not model.configured or state.base_path != model.config.base_path:
                continue  # removed or re-pointed while this poll ran
            with self._lock:
                model.source_error = state.error
                if state.error is None:
                    model.on_disk = state.complete
                    model.pending = state.pending
                # else: as TF Serving's PollFileSystemForServable, a base path that is
                # missing or unreadable emits no aspired versions: what loaded keeps serving.
            self._reconcile(model)

    # ------------------------------------------------------------ what to serve

    def set_models(self, model_configs: Sequence[ModelConfig]) -> set[str]:
        """The whole model list (AspiredVersionsManager's sources, per model).

        Returns the names removed. A re-pointed base path keeps the versions it
        has until the new path's first successful poll replaces them.
        """
        self._bind_loop()
        names = {mc.name for mc in model_configs}
        removed: list[_Model[S]] = []
        with self._lock:
            for mc in model_configs:
                model = self._models.get(mc.name)
                if model is None:
                    model = self._models[mc.name] = _Model(mc)
                    log.info("Adding model %s (base path %s)", mc.name, mc.base_path)
                else:
                    if not model.configured:
                        model.on_disk, model.pending, model.source_error = {}, set(), None
                    model.config = mc
                    model.configured = True
            for name, model in self._models.items():
                if name not in names and model.configured:
                    log.info("Removing model %s", name)
                    model.configured = False
                    model.labels = {}
                    model.on_disk, model.pending = {}, set()
                    removed.append(model)
            self._source.set_models({mc.name: mc.base_path for mc in model_configs})
            self._config_applied = True
        for model in removed:
            self._reconcile(model)
        return {m.name for m in removed}

    def note_config_applied(self) -> None:
        """An (empty) config counts as applied for readiness."""
        self._config_applied = True

    def set_labels(self, name: str, labels: dict[str, int]) -> None:
        with self._lock:
            model = self._models.get(name)
            if model is not None and model.configured:
                model.labels = dict(labels)

    def set_traffic_split(self, fractions: dict[str, float]) -> None:
        """Canary split (tfmodel): model -> probability that a request for the `stable`
        label, or for no version or label, is served by the `canary` label's version.

        A model listed (even at 0) serves unversioned requests from `stable`, not from the
        highest version: a canary being loaded or held at 0% must get no traffic."""
        with self._lock:
            self._canary_fractions = dict(fractions)

    def _split_version(self, model: _Model[S], label: str | None) -> int | None:
        """The version a split model serves for `label` (None or stable); None: no split."""
        fraction = self._canary_fractions.get(model.name)
        labels = model.labels if model.configured else {}
        stable, canary = labels.get(STABLE_LABEL), labels.get(CANARY_LABEL)
        if fraction is None or stable is None or canary is None:
            return None
        canary_record = model.versions.get(canary)
        canary_up = canary_record is not None and canary_record.state == AVAILABLE
        if canary_up and fraction > 0 and self._rng.random() < fraction:
            return canary
        stable_record = model.versions.get(stable)
        if label is None and (stable_record is None or stable_record.state != AVAILABLE):
            return None  # unversioned and stable not up: the usual highest AVAILABLE version
        return stable

    def labels(self, name: str) -> dict[str, int]:
        with self._lock:
            model = self._models.get(name)
            return dict(model.labels) if model is not None and model.configured else {}

    def version_state(self, name: str, version: int) -> VersionState | None:
        with self._lock:
            model = self._models.get(name)
            record = model.versions.get(version) if model is not None else None
            return None if record is None else record.state

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Called on the event loop after any version changes state."""
        self._listeners.append(callback)

    async def refresh(
        self, names: Iterable[str], timeout: float | None = None, through_retries: bool = False
    ) -> None:
        """Poll now (twice if a version dir is still settling) and wait, at most
        `timeout` seconds, until the aspired versions of `names` found on disk have
        had their first load attempt, or with `through_retries` until their loads
        have ended (AVAILABLE or END), as ServerCore::Create waits at start-up.

        Later config reloads return after the first attempt: a version still
        retrying (LOADING) must not hold the config reload lock, and with it a
        rollback, for minutes of retry intervals."""
        self._bind_loop()
        names = set(names)
        if self.options.file_system_poll_wait_seconds >= 0:
            await self.poll_now()
            if any(self._models[n].pending for n in names if n in self._models):
                await asyncio.sleep(self._settle_seconds())
                await self.poll_now()
        await self._wait_for_loads(names, timeout, through_retries)

    def _settle_seconds(self) -> float:
        if self.options.version_settle_seconds is not None:
            return self.options.version_settle_seconds
        wait = self.options.file_system_poll_wait_seconds
        return min(wait, 0.5) if wait > 0 else 0.5

    async def _wait_for_loads(
        self, names: set[str], timeout: float | None, through_retries: bool
    ) -> None:
        loop = self._loop

        def done(record: LoaderHarness[S], generation: int) -> bool:
            if record.generation > generation:
                return True  # that load ended and a newer one began
            if through_retries:
                return not record.loading
            return record.tried_generation >= generation

        with self._lock:
            targets = [
                (record, record.generation)
                for name in names
                if name in self._models
                for record in self._models[name].versions.values()
                if record.loading
            ]
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            with self._lock:
                waiting = [r for r, gen in targets if not done(r, gen)]
            if not waiting:
                return
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                log.warning(
                    "still loading after %.1fs: %s",
                    timeout,
                    ", ".join(f"{r.model}:{r.version}" for r in waiting),
                )
                return
            await self._wait_changed(remaining if remaining is not None else 1.0)

    async def _wait_changed(self, timeout: float) -> None:
        assert self._changed_ is not None
        try:
            await asyncio.wait_for(self._changed_.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    def _notify(self) -> None:
        event, self._changed_ = self._changed_, asyncio.Event()
        if event is not None:
            event.set()
        for callback in self._listeners:
            try:
                callback()
            except Exception:
                log.exception("manager listener failed")

    # --------------------------------------------------------------- reconcile

    def _reconcile(self, model: _Model[S]) -> None:
        """Start loads and unloads so the model converges on its aspired versions."""
        if self._stopping:
            return
        loop = self._loop
        gave_up = False
        with self._lock:
            on_disk = model.on_disk if model.configured else {}
            aspired = (
                aspired_versions(model.config.model_version_policy, on_disk)
                if model.configured
                else set()
            )
            for existing in model.versions.values():
                if existing.version in aspired:
                    continue
                if existing.state == END and existing.error is not None:
                    existing.unaspired_since_failure = True
                elif existing.loading:
                    existing.cancel_load = True
                    if existing.retry_pending:
                        # As LoaderHarness::Load's cancel_load_retry: no further
                        # attempt; END with the last attempt's error.
                        log.info(
                            "Load of %s version %d cancelled between retries",
                            existing.model,
                            existing.version,
                        )
                        existing.give_up()
                        existing.unaspired_since_failure = True
                        gave_up = True

            for version in sorted(aspired, reverse=True):  # highest first, as TF Serving
                version_dir = on_disk[version]
                record = model.versions.get(version)
                if record is None:
                    record = model.versions[version] = LoaderHarness(
                        model.name, version, version_dir.path
                    )
                    self._schedule_load(model, record, version_dir)
                elif record.loading:
                    record.cancel_load = False
                    if record.retry_pending:
                        assert record.retry_at is not None
                        if record.fingerprint != version_dir.fingerprint:
                            log.info(
                                "Servable %s version %d changed on disk; retrying it now",
                                model.name,
                                version,
                            )
                            record.failures = 0  # new content: a full set of retries
                            self._schedule_retry(model, record, version_dir)
                        # call_later may fire up to a clock tick early.
                        elif loop.time() + 0.01 >= record.retry_at:
                            self._schedule_retry(model, record, version_dir)
                elif record.state == END and (
                    record.error is None
                    or record.fingerprint != version_dir.fingerprint
                    or record.unaspired_since_failure
                ):
                    # Unloaded, cancelled or failed, then aspired again; or failed for
                    # good and now new files. Failed and still aspired: stays END.
                    if record.error is not None and not record.unaspired_since_failure:
                        log.info(
                            "Servable %s version %d changed on disk; loading again",
                            model.name,
                            version,
                        )
                    self._schedule_load(model, record, version_dir)

            serving = [v for v, r in model.versions.items() if r.state == AVAILABLE]
            # A version still being copied in counts as aspired: keep serving meanwhile.
            copying_in = model.configured and bool(model.pending)
            for version in versions_to_unload(serving, aspired, copying_in):
                self._begin_unload(model.versions[version])
        if gave_up:
            self._notify()

    def _schedule_load(
        self, model: _Model[S], record: LoaderHarness[S], version_dir: VersionDir
    ) -> None:
        record.schedule_load(version_dir)
        self._start_attempt(model, record)

    def _schedule_retry(
        self, model: _Model[S], record: LoaderHarness[S], version_dir: VersionDir
    ) -> None:
        log.info("Retrying load of servable %s version %d", record.model, record.version)
        record.schedule_retry(version_dir)
        self._start_attempt(model, record)

    def _start_attempt(self, model: _Model[S], record: LoaderHarness[S]) -> None:
        task = self._loop.create_task(self._load(model, record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _load(self, model: _Model[S], record: LoaderHarness[S]) -> None:
        error: ServingError | None = None
        servable: S | None = None
        try:
            servable = await self._loop.run_in_executor(
                self._load_pool, self._load_blocking, record
            )
        except ServingError as e:
            error = e
        except Exception as e:  # never let a load take the server down
            log.exception("Unexpected error loading %s version %d", record.model, record.version)
            error = ServingError(grpc.StatusCode.UNKNOWN, f"{type(e).__name__}: {e}")

        unload_now = False
        with self._lock:
            if error is not None:
                record.attempt_failed(error)
                if (
                    record.may_retry(self.options.max_num_load_retries)
                    and not self._stopping
                    and not record.cancel_load
                ):
                    # Still LOADING, the error unpublished: END comes only with the last.
                    interval = self.options.load_retry_interval_micros / 1e6
                    record.wait_for_retry(self._loop.time() + interval)
                    self._timers.add(self._loop.call_later(interval, self._retry, model))
                    log.error(
                        "Loading servable %s version %d failed (attempt %d, retrying in %.3gs): %s",
                        record.model,
                        record.version,
                        record.failures,
                        interval,
                        error.message,
                    )
                else:
                    record.give_up()
                    log.error(
                        "Loading servable %s version %d failed (attempt %d, giving up): %s",
                        record.model,
                        record.version,
                        record.failures,
                        error.message,
                    )
            elif servable is None:  # un-aspired before this attempt started
                record.give_up()
            else:
                record.load_succeeded(servable)
                log.info(
                    "Successfully loaded servable version {name: %s version: %d}",
                    record.model,
                    record.version,
                )
                if self._stopping:
                    unload_now = True
                    self._begin_unload(record)
        self._notify()
        if not unload_now:
            self._reconcile(model)

    def _load_blocking(self, record: LoaderHarness[S]) -> S | None:
        with self._lock:
            if record.cancel_load or self._stopping:
                return None
            record.begin_loading()
            path = record.path
        start = time.perf_counter()
        try:
            servable = self._loader.load(record.model, record.version, path)
        except Exception:
            self._observe_load(record, path, start, ok=False)
            raise
        self._observe_load(record, path, start, ok=True)
        hook = self.options.post_load_hook
        if hook is not None:
            try:
                hook(servable)
            except Exception as e:
                servable.unload()
                if isinstance(e, ServingError):
                    raise
                raise ServingError(
                    grpc.StatusCode.UNKNOWN, f"post-load hook failed: {type(e).__name__}: {e}"
                ) from None
        return servable

    def _observe_load(self, record: LoaderHarness[S], path: str, start: float, ok: bool) -> None:
        observer = self.options.load_observer
        if observer is not None:
            micros = (time.perf_counter() - start) * 1e6
            observer(record.model, record.version, path, micros, ok)

    def _retry(self, model: _Model[S]) -> None:
        now = self._loop.time()
        self._timers = {t for t in self._timers if t.when() > now}
        self._reconcile(model)

    def _begin_unload(self, record: LoaderHarness[S]) -> None:
        """AVAILABLE -> UNLOADING; the unload itself waits for the last handle."""
        log.info("Unloading servable version {name: %s version: %d}", record.model, record.version)
        if record.begin_unload():
            self._start_finish_unload(record)

    def _start_finish_unload(self, record: LoaderHarness[S]) -> None:
        task = self._loop.create_task(self._finish_unload(record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish_unload(self, record: LoaderHarness[S]) -> None:
        servable = record.servable
        if servable is not None:
            try:
                try:
                    await self._loop.run_in_executor(self._unload_pool, servable.unload)
                except RuntimeError:  # pool already shut down (handle released after stop)
                    servable.unload()
            except Exception:
                log.exception("Unloading %s version %d failed", record.model, record.version)
        with self._lock:
            if record.state == UNLOADING:  # stop() may have finished it already
                record.unloaded()
            log.info(
                "Done unloading servable version {name: %s version: %d}",
                record.model,
                record.version,
            )
        self._notify()
        model = self._models.get(record.model)
        if model is not None:
            self._reconcile(model)

    def _release(self, record: LoaderHarness[S]) -> None:
        with self._lock:
            if not record.release():
                return
        try:
            self._loop.call_soon_threadsafe(self._start_finish_unload, record)
        except RuntimeError:  # loop closed: unload here
            if record.servable is not None:
                record.servable.unload()
            record.unloaded()

    # ----------------------------------------------------------------- requests

    def get_handle(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> ServableHandle[S]:
        """Version, label, or (neither) the highest AVAILABLE version of a model."""
        if not name:
            raise invalid_argument("ModelSpec has no name specified.")
        with self._lock:
            model = self._models.get(name)
            if version is None and label in (None, STABLE_LABEL) and model is not None:
                version = self._split_version(model, label)
            if version is None and label is not None:
                labels = model.labels if model is not None and model.configured else {}
                if label not in labels:
                    raise invalid_argument(f"Unrecognized servable version label: {label}")
                version = labels[label]
            if version is not None:
                record = model.versions.get(version) if model is not None else None
                if record is None or record.state != AVAILABLE:
                    raise not_found(f"Servable not found for request: Specific({name}, {version})")
            else:
                available = (
                    [r for r in model.versions.values() if r.state == AVAILABLE]
                    if model is not None
                    else []
                )
                if not available:
                    raise not_found(f"Servable not found for request: Latest({name})")
                record = max(available, key=lambda r: r.version)
            servable = record.acquire()
            held = record
            return ServableHandle(name, held.version, servable, lambda: self._release(held))

    # ------------------------------------------------------------------- status

    def model_status(self, name: str, version: int | None = None) -> list[VersionStatus]:
        """GetModelStatus: one version, or all versions highest first."""
        with self._lock:
            model = self._models.get(name)
            if version is not None:
                record = model.versions.get(version) if model is not None else None
                if record is None:
                    raise not_found(f"Could not find version {version} of model {name}")
                return [record.status()]
            if model is None or not model.versions:
                message = f"Could not find any versions of model {name}"
                if model is not None and model.configured and model.source_error:
                    message += f" ({model.source_error})"
                raise not_found(message)
            return [model.versions[v].status() for v in sorted(model.versions, reverse=True)]

    def list_models(self) -> list[ModelInfo]:
        """Configured models, by name."""
        with self._lock:
            return [
                ModelInfo(
                    name=model.name,
                    base_path=model.config.base_path,
                    versions=[
                        model.versions[v].status() for v in sorted(model.versions, reverse=True)
                    ],
                    labels=dict(model.labels),
                    policy=describe(model.config.model_version_policy),
                    error=model.source_error or "",
                )
                for name, model in sorted(self._models.items())
                if model.configured
            ]

    def ready(self) -> bool:
        """A config has been applied and every configured model has an AVAILABLE version.

        The first time, also every initial version has finished loading, retries
        included (as start-up waits for them). After that per model, not per version: a pod keeps serving (and stays ready) while a
        new version loads or after one failed, as the old version still serves.
        """
        if not self._config_applied or self._stopping:
            return False
        with self._lock:
            configured = [m for m in self._models.values() if m.configured]
            if not all(any(r.state == AVAILABLE for r in m.versions.values()) for m in configured):
                return False
            if not self._was_ready:
                # The first time, as ServerCore::Create: every initial version has
                # finished loading, so a label's version is there when traffic comes.
                if any(r.loading for m in configured for r in m.versions.values()):
                    return False
                self._was_ready = True
            return True
