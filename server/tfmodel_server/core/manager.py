"""ServableManager: TF Serving's AspiredVersionsManager plus ServerCore's config handling.

Runs on the asyncio event loop; file-system polls, loads and unloads run in
worker threads. Per model and version the state goes START -> LOADING ->
AVAILABLE -> UNLOADING -> END (a failed load ends in END with its error and
is retried). New versions become AVAILABLE before the versions they replace
start UNLOADING (AvailabilityPreservingPolicy), and an unload waits until
every ServableHandle on that version has been released.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
from tensorflow_serving.config import model_server_config_pb2

from tfmodel_server.core.policy import aspired_versions, describe
from tfmodel_server.errors import (
    ServingError,
    failed_precondition,
    invalid_argument,
    not_found,
)
from tfmodel_server.model_servers.config_file import ConfigError, validate_model_server_config
from tfmodel_server.servables.tensorflow.loader import LoaderOptions, SavedModelLoader
from tfmodel_server.servables.tensorflow.servable import Servable
from tfmodel_server.sources.file_system import FileSystemSource, ModelSourceState, VersionDir

log = logging.getLogger(__name__)

START = "START"
LOADING = "LOADING"
AVAILABLE = "AVAILABLE"
UNLOADING = "UNLOADING"
END = "END"


@dataclass
class ManagerOptions:
    file_system_poll_wait_seconds: float = 1.0  # >0 period, 0 poll once per config, <0 never
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    allow_version_labels_for_unavailable_models: bool = False
    saved_model_tags: tuple[str, ...] = ("serve",)
    # Called in the load thread after the SavedModel loads, before AVAILABLE;
    # raising fails the load (warmup plugs in here).
    post_load_hook: Callable[[Servable], None] | None = None
    # (model, version, path, latency_us, ok) after each SavedModel load attempt (metrics).
    load_observer: Callable[[str, int, str, float, bool], None] | None = None
    load_threads: int = 1
    intra_op_parallelism: int = 0
    inter_op_parallelism: int = 0
    # Gap between the two scans apply_config makes to see a new version dir
    # unchanged; None = min(poll period, 0.5 s).
    version_settle_seconds: float | None = None
    # Bound on how long stop() waits for outstanding handles before unloading anyway.
    stop_timeout_seconds: float = 30.0


@dataclass
class VersionStatus:
    version: int
    state: str  # START | LOADING | AVAILABLE | UNLOADING | END
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""


@dataclass
class ModelInfo:
    name: str
    base_path: str
    versions: list[VersionStatus]  # highest version first, as GetModelStatus
    labels: dict[str, int] = field(default_factory=dict)
    policy: str = "latest 1"
    error: str = ""  # source problem, e.g. missing base path


class _Version:
    """Manager-side record of one version of one model."""

    def __init__(self, model: str, version: int, path: str) -> None:
        self.model = model
        self.version = version
        self.path = path
        self.fingerprint: tuple | None = None  # content of the last load attempt
        self.state = START
        self.error: ServingError | None = None
        self.servable: Servable | None = None
        self.refcount = 0
        self.unload_pending = False
        self.loading = False
        self.cancel_load = False
        self.failures = 0  # consecutive failed attempts on the same content
        self.retry_at: float | None = None
        self.generation = 0  # load attempts scheduled
        self.completed_generation = 0  # load attempts finished

    def status(self) -> VersionStatus:
        if self.error is None:
            return VersionStatus(self.version, self.state)
        return VersionStatus(self.version, self.state, self.error.code, self.error.message)


class _Model:
    def __init__(self, config: model_server_config_pb2.ModelConfig) -> None:
        self.name = config.name
        self.config = config
        self.configured = True
        self.versions: dict[int, _Version] = {}
        self.labels: dict[str, int] = {}
        self.on_disk: dict[int, VersionDir] = {}
        self.pending: set[int] = set()
        self.source_error: str | None = None


class ServableHandle:
    """Holds a reference so the version cannot unload while a request uses it."""

    def __init__(self, manager: ServableManager, record: _Version, servable: Servable) -> None:
        self._manager = manager
        self._record = record
        self._released = False
        self.servable = servable
        self.name = record.model
        self.version = record.version

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._manager._release(self._record)

    def __enter__(self) -> ServableHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"ServableHandle({self.name!r}, {self.version})"


class ServableManager:
    def __init__(self, options: ManagerOptions | None = None) -> None:
        self.options = options or ManagerOptions()
        self._loader = SavedModelLoader(
            LoaderOptions(
                tags=tuple(self.options.saved_model_tags),
                intra_op_parallelism=self.options.intra_op_parallelism,
                inter_op_parallelism=self.options.inter_op_parallelism,
            )
        )
        self._source = FileSystemSource()
        self._lock = threading.RLock()  # guards model/version state read by request threads
        self._models: dict[str, _Model] = {}
        self._load_pool = ThreadPoolExecutor(
            max_workers=max(1, self.options.load_threads), thread_name_prefix="tf-load"
        )
        self._unload_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tf-unload")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._config_lock: asyncio.Lock | None = None
        self._poll_lock: asyncio.Lock | None = None
        self._changed: asyncio.Event | None = None
        self._poll_task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._config_applied = False
        self._stopping = False

    # ----------------------------------------------------------------- lifecycle

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._config_lock = asyncio.Lock()
            self._poll_lock = asyncio.Lock()
            self._changed = asyncio.Event()
        return self._loop

    async def start(self) -> None:
        """Start the periodic file-system poll (when the poll period is > 0)."""
        self._bind_loop()
        if self.options.file_system_poll_wait_seconds > 0 and self._poll_task is None:
            self._poll_task = asyncio.create_task(self._poll_forever(), name="fs-poll")

    async def stop(self) -> None:
        """Stop polling and unload every version (waits, bounded, for outstanding handles)."""
        self._bind_loop()
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
                    if record.loading:
                        record.cancel_load = True
                    if record.state == AVAILABLE:
                        self._begin_unload(record)
        deadline = self._loop.time() + self.options.stop_timeout_seconds
        while self._tasks or self._any_unload_pending():
            if self._loop.time() > deadline:
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
            await self._loop.run_in_executor(self._unload_pool, record.servable.unload)
            with self._lock:
                record.servable = None
                record.unload_pending = False
                record.state = END
        self._load_pool.shutdown(wait=False, cancel_futures=True)
        self._unload_pool.shutdown(wait=False)

    def _any_unload_pending(self) -> bool:
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
        """One file-system poll of every configured model, then reconcile."""
        self._bind_loop()
        async with self._poll_lock:
            states = await asyncio.to_thread(self._source.poll)
            self._apply_source_states(states)

    def _apply_source_states(self, states: dict[str, ModelSourceState]) -> None:
        for name, state in states.items():
            model = self._models.get(name)
            if model is None or not model.configured or state.base_path != model.config.base_path:
                continue  # removed or re-pointed while this poll ran
            with self._lock:
                model.on_disk = state.complete
                model.pending = state.pending
                model.source_error = state.error
            self._reconcile(model)

    # ------------------------------------------------------------------- config

    async def apply_config(
        self,
        config: model_server_config_pb2.ModelServerConfig,
        timeout: float | None = None,
    ) -> None:
        """Whole-config replace (ServerCore::ReloadConfig).

        Labels are checked first, against versions AVAILABLE now; on any error
        nothing changes. Returns when the aspired versions found on disk have
        finished loading (AVAILABLE or failed), or after `timeout` seconds.
        """
        self._bind_loop()
        async with self._config_lock:
            which = config.WhichOneof("config")
            if which is not None and which != "model_config_list":
                raise failed_precondition(
                    "Cannot transition to requested config. It is only legal to transition "
                    "from one ModelConfigList to another."
                )
            try:
                validate_model_server_config(config, "model server config")
            except ConfigError as e:
                raise invalid_argument(str(e)) from None
            if config.WhichOneof("config") is None:
                log.info("Taking no action for empty config.")
                self._config_applied = True
                return
            model_configs = list(config.model_config_list.config)
            new_labels = self._check_labels(model_configs)

            names = {mc.name for mc in model_configs}
            removed: list[_Model] = []
            with self._lock:
                for mc in model_configs:
                    model = self._models.get(mc.name)
                    if model is None:
                        model = self._models[mc.name] = _Model(mc)
                        log.info("Adding model %s (base path %s)", mc.name, mc.base_path)
                    else:
                        if not model.configured or model.config.base_path != mc.base_path:
                            model.on_disk, model.pending, model.source_error = {}, set(), None
                        model.config = mc
                        model.configured = True
                    model.labels = new_labels.get(mc.name, {})
                for name, model in self._models.items():
                    if name not in names and model.configured:
                        log.info("Removing model %s", name)
                        model.configured = False
                        model.labels = {}
                        model.on_disk, model.pending = {}, set()
                        removed.append(model)
                self._source.set_models({mc.name: mc.base_path for mc in model_configs})
            for model in removed:
                self._reconcile(model)
            self._config_applied = True

            if self.options.file_system_poll_wait_seconds >= 0:
                await self.poll_now()
                if any(self._models[n].pending for n in names):
                    await asyncio.sleep(self._settle_seconds())
                    await self.poll_now()
            await self._wait_for_loads(names, timeout)

    def _settle_seconds(self) -> float:
        if self.options.version_settle_seconds is not None:
            return self.options.version_settle_seconds
        wait = self.options.file_system_poll_wait_seconds
        return min(wait, 0.5) if wait > 0 else 0.5

    def _check_labels(
        self, model_configs: Sequence[model_server_config_pb2.ModelConfig]
    ) -> dict[str, dict[str, int]]:
        """server_core.cc UpdateModelVersionLabelMap: labels need AVAILABLE versions."""
        allow_unavailable = self.options.allow_version_labels_for_unavailable_models
        result: dict[str, dict[str, int]] = {}
        with self._lock:
            for mc in model_configs:
                model = self._models.get(mc.name)
                current = model.labels if model is not None and model.configured else {}
                for label, version in sorted(mc.version_labels.items()):
                    # The flag allows new labels, or labels not moving; moving one
                    # still needs its target AVAILABLE.
                    allowed = allow_unavailable and current.get(label, version) == version
                    record = model.versions.get(version) if model is not None else None
                    if not allowed and (record is None or record.state != AVAILABLE):
                        raise failed_precondition(
                            f"Request to assign label to version {version} of model "
                            f"{mc.name}, which is not currently available for inference"
                        )
                    result.setdefault(mc.name, {})[label] = version
        return result

    async def _wait_for_loads(self, names: set[str], timeout: float | None) -> None:
        with self._lock:
            targets = [
                (record, record.generation)
                for name in names
                for record in self._models[name].versions.values()
                if record.loading
            ]
        deadline = None if timeout is None else self._loop.time() + timeout
        while True:
            with self._lock:
                waiting = [r for r, gen in targets if r.completed_generation < gen]
            if not waiting:
                return
            remaining = None if deadline is None else deadline - self._loop.time()
            if remaining is not None and remaining <= 0:
                log.warning(
                    "apply_config: still loading after %.1fs: %s",
                    timeout,
                    ", ".join(f"{r.model}:{r.version}" for r in waiting),
                )
                return
            await self._wait_changed(remaining if remaining is not None else 1.0)

    async def _wait_changed(self, timeout: float) -> None:
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    def _notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    # --------------------------------------------------------------- reconcile

    def _reconcile(self, model: _Model) -> None:
        """Start loads and unloads so the model converges on its aspired versions."""
        if self._stopping:
            return
        loop = self._loop
        with self._lock:
            on_disk = model.on_disk if model.configured else {}
            aspired = (
                aspired_versions(model.config.model_version_policy, on_disk)
                if model.configured
                else set()
            )
            for record in model.versions.values():
                if record.loading and record.version not in aspired:
                    record.cancel_load = True

            for version in sorted(aspired, reverse=True):  # highest first, as TF Serving
                version_dir = on_disk[version]
                record = model.versions.get(version)
                if record is None:
                    record = model.versions[version] = _Version(
                        model.name, version, version_dir.path
                    )
                    self._schedule_load(model, record, version_dir)
                elif record.loading:
                    record.cancel_load = False
                elif record.state == END:
                    if record.error is None:
                        record.failures = 0
                        self._schedule_load(model, record, version_dir)
                    elif record.fingerprint != version_dir.fingerprint:
                        log.info(
                            "Servable %s version %d changed on disk; loading again",
                            model.name,
                            version,
                        )
                        record.failures = 0
                        self._schedule_load(model, record, version_dir)
                    elif (
                        record.failures <= self.options.max_num_load_retries
                        and record.retry_at is not None
                        # call_later may fire up to a clock tick early.
                        and loop.time() + 0.01 >= record.retry_at
                    ):
                        self._schedule_load(model, record, version_dir)

            # AvailabilityPreservingPolicy: unload an unaspired version only when an
            # aspired one serves, nothing is aspired, or another unaspired one serves.
            serving = [r for r in model.versions.values() if r.state == AVAILABLE]
            unaspired = sorted(
                (r for r in serving if r.version not in aspired), key=lambda r: r.version
            )
            has_aspired_serving = any(r.version in aspired for r in serving)
            # A version still being copied in counts as aspired: keep serving meanwhile.
            nothing_aspired = not aspired and not (model.configured and model.pending)
            while unaspired and (nothing_aspired or has_aspired_serving or len(unaspired) > 1):
                self._begin_unload(unaspired.pop(0))

    def _schedule_load(self, model: _Model, record: _Version, version_dir: VersionDir) -> None:
        record.path = version_dir.path
        record.fingerprint = version_dir.fingerprint
        record.state = START
        record.error = None
        record.loading = True
        record.cancel_load = False
        record.retry_at = None
        record.generation += 1
        task = self._loop.create_task(self._load(model, record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _load(self, model: _Model, record: _Version) -> None:
        error: ServingError | None = None
        servable: Servable | None = None
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
            record.loading = False
            record.completed_generation = record.generation
            if error is not None:
                record.state = END
                record.error = error
                record.failures += 1
                if record.failures <= self.options.max_num_load_retries and not self._stopping:
                    interval = self.options.load_retry_interval_micros / 1e6
                    record.retry_at = self._loop.time() + interval
                    timer = self._loop.call_later(interval, self._retry, model)
                    self._timers.add(timer)
                    log.error(
                        "Loading servable %s version %d failed (attempt %d, retrying in %.3gs): %s",
                        record.model,
                        record.version,
                        record.failures,
                        interval,
                        error.message,
                    )
                else:
                    log.error(
                        "Loading servable %s version %d failed (attempt %d, giving up): %s",
                        record.model,
                        record.version,
                        record.failures,
                        error.message,
                    )
            elif servable is None:  # un-aspired before its load started
                record.state = END
            else:
                record.servable = servable
                record.failures = 0
                record.state = AVAILABLE
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

    def _load_blocking(self, record: _Version) -> Servable | None:
        with self._lock:
            if record.cancel_load or self._stopping:
                return None
            record.state = LOADING
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

    def _observe_load(self, record: _Version, path: str, start: float, ok: bool) -> None:
        observer = self.options.load_observer
        if observer is not None:
            micros = (time.perf_counter() - start) * 1e6
            observer(record.model, record.version, path, micros, ok)

    def _retry(self, model: _Model) -> None:
        now = self._loop.time()
        self._timers = {t for t in self._timers if t.when() > now}
        self._reconcile(model)

    def _begin_unload(self, record: _Version) -> None:
        """AVAILABLE -> UNLOADING; the unload itself waits for the last handle."""
        record.state = UNLOADING
        log.info("Unloading servable version {name: %s version: %d}", record.model, record.version)
        if record.refcount > 0:
            record.unload_pending = True
        else:
            self._start_finish_unload(record)

    def _start_finish_unload(self, record: _Version) -> None:
        task = self._loop.create_task(self._finish_unload(record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish_unload(self, record: _Version) -> None:
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
            record.servable = None
            record.state = END
            log.info(
                "Done unloading servable version {name: %s version: %d}",
                record.model,
                record.version,
            )
        self._notify()
        model = self._models.get(record.model)
        if model is not None:
            self._reconcile(model)

    def _release(self, record: _Version) -> None:
        with self._lock:
            record.refcount -= 1
            if record.refcount > 0 or not record.unload_pending:
                return
            record.unload_pending = False
        try:
            self._loop.call_soon_threadsafe(self._start_finish_unload, record)
        except RuntimeError:  # loop closed: unload here
            if record.servable is not None:
                record.servable.unload()
            record.servable = None
            record.state = END

    # ----------------------------------------------------------------- requests

    def get_handle(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> ServableHandle:
        """Version, label, or (neither) the highest AVAILABLE version of a model."""
        if not name:
            raise invalid_argument("ModelSpec has no name specified.")
        with self._lock:
            model = self._models.get(name)
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
            record.refcount += 1
            return ServableHandle(self, record, record.servable)

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

        Per model, not per version: a pod keeps serving (and stays ready) while a
        new version loads or after one failed, as the old version still serves.
        """
        if not self._config_applied or self._stopping:
            return False
        with self._lock:
            return all(
                any(r.state == AVAILABLE for r in model.versions.values())
                for model in self._models.values()
                if model.configured
            )
