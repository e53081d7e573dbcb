"""Wires manager, config watcher, gRPC and REST onto one event loop.

Start-up order follows TF Serving (server.cc BuildAndStart): the initial
config is applied and its models loaded first (ServerCore::Create waits for
them), and only then do the gRPC and REST ports open, so the first request a
client sends after connecting finds the models. A model that fails to load
ends start-up (exit 255). `--listen_before_models_load` (a tfmodel opt-in for
Kubernetes, TF Serving issue #1175) opens the ports at once instead and loads
in the background; /readyz reports when every model has a version AVAILABLE.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web
from tensorflow_serving.config import model_server_config_pb2

from tfmodel_server import shutdown
from tfmodel_server.apis import rest_connections
from tfmodel_server.apis.cors import cors_middleware
from tfmodel_server.apis.grpc_api import add_services
from tfmodel_server.apis.rest_api import RestState, build_app
from tfmodel_server.core.manager import AVAILABLE, ManagerOptions, ServableManager
from tfmodel_server.core.states import END
from tfmodel_server.errors import ServingError
from tfmodel_server.flags import ServerOptions, serving_marker
from tfmodel_server.inference.request_logging import (
    RequestLogger,
    RequestLogOptions,
    plans_from_config,
)
from tfmodel_server.inference.runner import DirectRunner, InferenceRunner
from tfmodel_server.inference.service import InferenceService
from tfmodel_server.inference.shadow import ShadowOptions, ShadowTraffic
from tfmodel_server.model_servers import admission, decode_processes, memory_limit, traffic_split
from tfmodel_server.model_servers import config_file as config_lib
from tfmodel_server.model_servers.codec_pool import CodecPool
from tfmodel_server.model_servers.memory_limit import usable_cores
from tfmodel_server.model_servers.server_core import ServerCore
from tfmodel_server.monitoring.observers import RequestObserver
from tfmodel_server.monitoring.request_log_metrics import RequestLogStats
from tfmodel_server.monitoring.shadow_metrics import ShadowStats
from tfmodel_server.security import tls
from tfmodel_server.security.auth import TokenFileError, TokenStore
from tfmodel_server.security.interceptors import TokenInterceptor, rest_token_middleware
from tfmodel_server.servables.tensorflow.loader import LoaderOptions, SavedModelLoader
from tfmodel_server.servables.tensorflow.servable import Servable
from tfmodel_server.servables.tensorflow.session_config import (
    SessionConfigError,
    build_session_config,
    describe_session_config,
    set_xla_compilation,
)
from tfmodel_server.servables.tensorflow.thread_pool_factory import (
    ThreadPoolFactoryConfigError,
    describe_thread_pool,
    read_thread_pool_factory_config,
)
from tfmodel_server.sources import s3
from tfmodel_server.sources.file_system import FileSystemSource
from tfmodel_server.sources.model_cache import CachingLoader, ModelCache
from tfmodel_server.sources.object_store import ObjectStoreSource, RoutingSource
from tfmodel_server.sources.page_cache import FlushingLoader

log = logging.getLogger(__name__)


class StartupError(Exception):
    """A bad flag value, config file or initial model found before serving starts.

    The message is a TF Serving status ("INVALID_ARGUMENT: ..."); exit 255.
    """


@dataclass
class Extensions:
    """Optional pieces (batching, metrics, warmup) plugged in by plugins.py."""

    runner: InferenceRunner | None = None
    observer: RequestObserver | None = None  # gRPC requests
    rest_observer: RequestObserver | None = None  # REST requests
    post_load_hook: Callable | None = None
    load_observer: Callable | None = None
    retired_observer: Callable | None = None  # (model, version, path): drop its series
    rest_routes: list[tuple[str, str, Callable]] = field(default_factory=list)
    on_reload: Callable[[bool], None] | None = None
    request_log_stats: RequestLogStats | None = None  # on the metrics page when enabled
    shadow_stats: ShadowStats | None = None  # likewise
    on_refused: Callable[[str, str], None] | None = None  # (protocol, reason)
    # Given AdmissionControl.snapshot: the in-flight gauges read it when scraped.
    watch_inflight: Callable[[Callable[[], dict[str, tuple[int, int]]]], None] | None = None
    startup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)  # before ports


def initial_config(
    options: ServerOptions,
) -> tuple[model_server_config_pb2.ModelServerConfig, config_lib.ConfigFileWatcher | None]:
    """The config to start with, and the watcher that read it (None without a file).

    The watcher's first read is the start-up read, so polling later compares
    against exactly what was applied. A bad file raises StartupError naming file
    and line.
    """
    try:
        if options.model_config_file:
            watcher = config_lib.ConfigFileWatcher(options.model_config_file, s3_settings(options))
            return watcher.read_if_changed(), watcher
        cfg = config_lib.single_model_config(options.model_name, options.model_base_path)
        config_lib.validate_model_server_config(cfg, "--model_base_path")
        return cfg, None
    except config_lib.ConfigError as e:
        raise StartupError(f"INVALID_ARGUMENT: {e}") from e


def loader_options(options: ServerOptions) -> LoaderOptions:
    """SessionBundleConfig from the flags (server.cc) or from --platform_config_file
    (already in `options`, platform_config.py); a bad value is a StartupError."""
    if options.platform_config_file:
        session_config = options.session_config_proto  # as the file gives it
    else:
        try:
            session_config = build_session_config(
                options.tensorflow_session_config_file,
                options.per_process_gpu_memory_fraction,
                options.tensorflow_session_parallelism,
                options.tensorflow_intra_op_parallelism,
                options.tensorflow_inter_op_parallelism,
                options.mixed_precision,
            )
        except SessionConfigError as e:
            raise StartupError(f"INVALID_ARGUMENT: {e}") from e
    log.info("TensorFlow session config: {%s}", describe_session_config(session_config))
    request_thread_pool = b""
    if options.thread_pool_factory_config_file:
        try:
            request_thread_pool = read_thread_pool_factory_config(
                options.thread_pool_factory_config_file
            )
        except ThreadPoolFactoryConfigError as e:
            raise StartupError(str(e)) from e
        log.info(
            "request runs use the inter-op thread pool {%s}",
            describe_thread_pool(request_thread_pool),
        )
    return LoaderOptions(
        tags=tuple(options.saved_model_tags),
        session_config=session_config,
        remove_unused_fields_from_bundle_metagraph=options.remove_unused_fields_from_bundle_metagraph,
        prefer_tflite_model=options.prefer_tflite_model,
        num_tflite_pools=options.num_tflite_pools,
        num_tflite_interpreters_per_pool=options.num_tflite_interpreters_per_pool,
        session_run_load_threadpool_index=options.session_run_load_threadpool_index,
        enable_session_metadata=options.enable_session_metadata,
        request_thread_pool=request_thread_pool,
    )


def s3_settings(options: ServerOptions) -> s3.S3Settings:
    return s3.S3Settings(addressing_style=options.s3_addressing_style)


class ModelServer:
    def __init__(self, options: ServerOptions, extensions: Extensions | None = None) -> None:
        self.options = options
        self.ext = extensions or Extensions()
        self.loader = SavedModelLoader(loader_options(options))
        set_xla_compilation(
            options.xla_cpu_compilation_enabled, options.xla_gpu_compilation_enabled
        )
        # s3:// base paths: versions are downloaded into the cache when the policy picks them.
        # The s3:// base paths of the applied config (None before the first): the cache
        # keeps only these and what the manager still holds.
        self._configured_s3_bases: set[str] | None = None
        self.model_cache = ModelCache(
            options.model_cache_dir, s3_settings(options), options.prefer_tflite_model
        )
        self._stopping = False
        self.flushing_loader = (
            FlushingLoader(self.loader, options.num_load_threads)
            if options.flush_filesystem_caches
            else None
        )
        self.manager: ServableManager[Servable] = ServableManager(
            CachingLoader(self.flushing_loader or self.loader, self.model_cache),
            RoutingSource(
                FileSystemSource(prefer_tflite_model=options.prefer_tflite_model),
                ObjectStoreSource(s3_settings(options), options.prefer_tflite_model),
            ),
            ManagerOptions(
                load_threads=max(1, options.num_load_threads),
                unload_threads=max(1, options.num_unload_threads),
                file_system_poll_wait_seconds=options.file_system_poll_wait_seconds,
                max_num_load_retries=options.max_num_load_retries,
                load_retry_interval_micros=options.load_retry_interval_micros,
                post_load_hook=self.ext.post_load_hook,
                load_observer=self.ext.load_observer,
                retired_observer=self.ext.retired_observer,
                max_retained_unloaded_versions=(
                    None
                    if options.max_retained_unloaded_versions < 0
                    else options.max_retained_unloaded_versions
                ),
            ),
        )
        self.core = ServerCore(
            self.manager,
            options.allow_version_labels_for_unavailable_models,
            self.flushing_loader.flush if self.flushing_loader is not None else None,
        )
        # After the core's own listener: report labels as they move, not only at reload.
        self.manager.add_listener(self._refresh_pending_labels)
        self.manager.add_listener(self._evict_dropped_versions)
        self.runner: InferenceRunner = self.ext.runner or DirectRunner(options.grpc_max_threads)
        self.request_log = RequestLogger(
            RequestLogOptions(
                directory=options.request_log_dir,
                max_file_bytes=options.request_log_max_file_bytes,
                queue_records=options.request_log_queue_records,
                queue_bytes=options.request_log_queue_bytes,
            ),
            self.ext.request_log_stats,
        )
        self.rest_state = RestState()
        # One budget for both protocols; its limits are set when the ports open.
        self.admission = admission.AdmissionControl(
            admission.AdmissionLimits(), on_refused=self.ext.on_refused
        )
        self.shadow = ShadowTraffic(
            self.manager,
            ShadowOptions(options.shadow_traffic_percent / 100.0, options.shadow_max_concurrent),
            self.ext.shadow_stats,
            busy=self._admission_past_half,
        )
        self.service = InferenceService(
            self.manager,
            self.runner,
            options.enable_signature_method_name_check,
            options.max_request_decoded_bytes,
            self.request_log,
            self.shadow,
        )
        if self.ext.watch_inflight is not None:
            self.ext.watch_inflight(self.admission.snapshot)
        decode_count = decode_processes.flag_count(
            options.rest_decode_processes, usable_cores(), options.workers
        )
        self.codec_pool = CodecPool(
            processes=decode_processes.DecodeProcesses(decode_count) if decode_count else None
        )
        self._reload_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._grpc: grpc.aio.Server | None = None
        self._rest: web.AppRunner | None = None
        self._rest_listener: asyncio.Server | None = None
        self._guard: rest_connections.ConnectionGuard | None = None
        self._health: Any = None  # grpc_health's aio servicer, when enabled
        self.grpc_port = 0
        self.rest_port = 0
        try:
            source = tls.SSLSource(
                config_file=options.ssl_config_file,
                cert_file=options.ssl_server_cert_file,
                key_file=options.ssl_server_key_file,
                ca_file=options.ssl_custom_ca_file,
                client_verify=options.ssl_client_verify,
            )
            self._ssl = tls.CertificateReloader(source) if source.paths else None
            self._tokens = TokenStore(options.auth_token_file) if options.auth_token_file else None
            self._rest_ssl = self._ssl.rest_context() if self._ssl is not None else None
        except (tls.SSLConfigError, TokenFileError) as e:
            raise StartupError(f"INVALID_ARGUMENT: {e}") from e

    def _admission_past_half(self) -> bool:
        """Shadow traffic is shed first: none starts while admitted requests hold more
        than half of either admission budget (no budget: never)."""
        control, limits = self.admission, self.admission.limits
        return bool(
            (limits.max_requests and control.inflight_requests * 2 > limits.max_requests)
            or (limits.max_bytes and control.inflight_bytes * 2 > limits.max_bytes)
        )

    # --- config -----------------------------------------------------------------
    async def _apply(
        self, cfg: model_server_config_pb2.ModelServerConfig, source: str, first: bool = False
    ) -> None:
        """Serialised whole-config replace (the manager validates); the outcome is
        recorded for GET /v1/models and the reload metric."""
        try:
            async with self._reload_lock:
                # The file (a ConfigMap in Kubernetes) moves labels once their versions
                # load, so any rollback is one step; the RPC keeps TF Serving's rule.
                defer = first or source != "ReloadConfigRequest"
                # Checked before anything changes, so a bad logging_config refuses the config.
                log_plans = plans_from_config(cfg, self.request_log.options)
                # Start-up waits through load retries (ServerCore::Create), reloads not.
                await self.core.apply_config(cfg, defer_labels=defer, through_retries=first)
                self.request_log.configure(log_plans)
                self._configured_s3_bases = {
                    m.base_path for m in cfg.model_config_list.config if s3.is_s3_url(m.base_path)
                }
        except ServingError as e:
            self._record_reload(False, e.message, source)
            raise
        self._record_reload(True, "", source)
        # A removed model that unloaded during apply_config fired no listener since.
        await asyncio.to_thread(self._evict_dropped_versions)

    async def reload_config(self, cfg: model_server_config_pb2.ModelServerConfig) -> None:
        """HandleReloadConfigRequest (it loads any path the process can read: behind
        --auth_token_file when set, refused with --enable_reload_config_rpc=false)."""
        if not self.options.enable_reload_config_rpc:
            raise ServingError(
                grpc.StatusCode.PERMISSION_DENIED,
                "HandleReloadConfigRequest is disabled (--enable_reload_config_rpc=false)",
            )
        if self.options.workers > 1:
            # One RPC reaches one worker: applying it there alone would split the
            # server's models; the config file is read by every worker.
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"HandleReloadConfigRequest is refused with --workers={self.options.workers}: "
                "each worker process holds its own models and one RPC reaches one of them; "
                "change --model_config_file instead (every worker re-reads it every "
                "--model_config_file_poll_wait_seconds)",
            )
        await self._apply(cfg, "ReloadConfigRequest")

    def _evict_dropped_versions(self) -> None:
        """The cache holds what the manager holds: a version the policy dropped, deleted
        from the bucket or failed is deleted from disk once it has unloaded, and every
        version of a model removed from the config once it has unloaded (or, after a
        restart, as soon as the config is applied). Never on shutdown: the next container
        in the pod reuses the cache."""
        if self._stopping:
            return
        keep: dict[str, set[int]] = {}  # per base path: two models may share one
        names: dict[str, str] = {}
        for info in self.manager.list_models():
            if s3.is_s3_url(info.base_path):
                held = {v.version for v in info.versions if v.state != END}
                keep.setdefault(info.base_path, set()).update(held)
                names.setdefault(info.base_path, info.name)
        for base_path, versions in keep.items():
            self.model_cache.evict_except(names[base_path], base_path, versions)
        configured = self._configured_s3_bases
        if configured is not None:  # None until a config is applied: nothing known yet
            held_bases = {b for b, versions in keep.items() if versions}
            self.model_cache.evict_bases_except(configured | held_bases)

    def _refresh_pending_labels(self) -> None:
        self.rest_state.config_status["pending_labels"] = self.core.pending_labels()

    def _record_reload(self, ok: bool, error: str, source: str) -> None:
        self.rest_state.config_status = {
            "ok": ok,
            "error": error,
            "source": source,
            "time": time.time(),
            "pending_labels": self.core.pending_labels(),
        }
        if self.ext.on_reload:
            self.ext.on_reload(ok)

    async def _apply_initial(self, cfg: model_server_config_pb2.ModelServerConfig) -> None:
        try:
            await self._apply(cfg, self.options.model_config_file or "--model_base_path", True)
        except ServingError as e:
            log.error("initial model config not fully applied: %s", e.message)

    async def _watch_config_file(self, watcher: config_lib.ConfigFileWatcher) -> None:
        period = self.options.model_config_file_poll_wait_seconds
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=period)
                return
            except asyncio.TimeoutError:
                pass
            try:
                # A thread: the file may sit on a slow volume or be an s3:// read;
                # the loop serves meanwhile.
                cfg = await asyncio.to_thread(watcher.read_if_changed)
            except config_lib.ConfigError as e:
                log.error("config reload rejected, keeping the current config: %s", e)
                self._record_reload(False, str(e), watcher.path)
                continue
            if cfg is None:
                continue
            log.info("model config file %s changed; applying", watcher.path)
            try:
                await self._apply(cfg, watcher.path)
            except ServingError as e:
                log.error("config reload failed: %s", e.message)

    async def _watch_traffic_split(self) -> None:
        """Read --traffic_split_file now, then every model_config_file_poll_wait_seconds."""
        watcher = traffic_split.TrafficSplitWatcher(self.options.traffic_split_file)
        period = self.options.model_config_file_poll_wait_seconds
        while True:
            try:
                split = await asyncio.to_thread(watcher.read_if_changed)
            except config_lib.ConfigError as e:
                log.error("traffic split rejected, keeping the current split: %s", e)
            else:
                if split is not None:
                    self.manager.set_traffic_split(split.canary)
                    self.shadow.configure(split.shadow)
            if period <= 0:
                return
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=period)
                return
            except asyncio.TimeoutError:
                pass

    # --- lifecycle --------------------------------------------------------------
    async def start(
        self,
        cfg: model_server_config_pb2.ModelServerConfig,
        watcher: config_lib.ConfigFileWatcher | None = None,
    ) -> None:
        opts = self.options
        for hook in self.ext.startup:
            await hook()
        await asyncio.to_thread(self.model_cache.sweep_temp)
        if opts.listen_before_models_load:
            await self._open_ports()
            await self.manager.start()
            self._tasks.append(asyncio.create_task(self._apply_initial(cfg)))
        else:
            await self.manager.start()
            await self._load_initial_models(cfg)
            await self._open_ports()
        if watcher is not None and opts.model_config_file_poll_wait_seconds > 0:
            self._tasks.append(asyncio.create_task(self._watch_config_file(watcher)))
        if opts.traffic_split_file:
            self._tasks.append(asyncio.create_task(self._watch_traffic_split()))
        log.info("serving: gRPC on %s, REST on %s", self.grpc_port or "-", self.rest_port or "-")

    async def _open_ports(self) -> None:
        helpers: list[int] = []
        if self.codec_pool.processes is not None:
            helpers = await asyncio.to_thread(self.codec_pool.processes.wait_ready)
        self._set_admission_limits(helpers)
        _freeze_startup_objects()
        if self.options.port:
            await self._start_grpc()
        if self.options.rest_api_port:
            await self._start_rest()

    def _set_admission_limits(self, helper_pids: list[int]) -> None:
        """Size the in-flight budget: from the flags, else from the container's memory
        limit minus what the process and its decode processes hold now (the initial
        models are loaded unless --listen_before_models_load)."""
        opts = self.options
        resident = memory_limit.resident_bytes() + sum(
            memory_limit.resident_bytes(pid) for pid in helper_pids
        )
        limits = admission.derive_limits(
            opts.max_inflight_request_bytes,
            opts.max_inflight_requests,
            memory_limit.cgroup_memory_limit(),
            resident,
        )
        self.admission.limits = limits
        if limits.enabled:
            log.info(
                "admission control: in-flight prediction requests up to %s bytes, %s requests (%s)",
                limits.max_bytes or "unlimited",
                limits.max_requests or "unlimited",
                limits.origin,
            )

    async def _load_initial_models(self, cfg: model_server_config_pb2.ModelServerConfig) -> None:
        """ServerCore::Create: apply the config and wait; models that end up with no
        AVAILABLE version after a failed load end start-up, as in TF Serving."""
        try:
            await self._apply(cfg, self.options.model_config_file or "--model_base_path", True)
        except ServingError as e:
            raise StartupError(f"{e.code.name}: {e.message}") from e
        failed = [
            f"{{name: {info.name} version: {v.version}}}"
            for info in self.manager.list_models()
            if not any(v.state == AVAILABLE for v in info.versions)
            for v in info.versions
            if v.error_code != grpc.StatusCode.OK
        ]
        if failed:
            raise StartupError(
                f"UNKNOWN: {len(failed)} servable(s) did not become available: "
                f"{{{', '.join(failed)}}}"
            )

    async def _start_grpc(self) -> None:
        opts = self.options
        channel_opts: list[tuple[str, int | str]] = [
            ("grpc.max_receive_message_length", -1),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 1 if opts.workers > 1 else 0),
        ]
        for key, value in opts.grpc_channel_arguments.items():
            channel_opts.append((key, int(value) if value.lstrip("-").isdigit() else value))
        if self.admission.limits.enabled and BDP_PROBE_ARG not in opts.grpc_channel_arguments:
            # grpc core takes in data of a call it has not been asked to read, up to the
            # stream's window; with BDP probing that window grows to megabytes, so calls
            # the admission refuses cost that much each first (docs/overload.md).
            channel_opts.append((BDP_PROBE_ARG, 0))
        interceptors = [TokenInterceptor(self._tokens)] if self._tokens else []
        server = grpc.aio.server(options=channel_opts, interceptors=interceptors)
        names = add_services(
            server,
            self.service,
            self.reload_config,
            self.ext.observer or _noop,
            as_tensor_content=opts.enable_serialization_as_tensor_content,
            admission=self.admission,
            codec_pool=self.codec_pool,
        )
        if opts.enable_grpc_healthcheck_service:
            from grpc_health.v1 import health, health_pb2, health_pb2_grpc

            self._health = health.aio.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
            for name in ["", *names]:
                await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
            names.append(health.SERVICE_NAME)
        from grpc_reflection.v1alpha import reflection

        reflection.enable_server_reflection([*names, reflection.SERVICE_NAME], server)
        if opts.enable_profiler:
            from tfmodel_server.apis.profiler import add_profiler_service

            add_profiler_service(server)

        def listen(address: str) -> int:
            if self._ssl is not None:
                return server.add_secure_port(address, self._ssl.grpc_credentials())
            return server.add_insecure_port(address)

        try:
            self.grpc_port = listen(f"{opts.bind_address}:{opts.port}")
            if opts.grpc_socket_path:
                listen(f"unix:{opts.grpc_socket_path}")
        except RuntimeError:
            self.grpc_port = 0
        if not self.grpc_port:
            raise StartupError("INVALID_ARGUMENT: Failed to BuildAndStart gRPC server")
        await server.start()
        log.info("Running gRPC ModelServer at %s:%s ...", opts.bind_address, self.grpc_port)
        if opts.grpc_socket_path:
            log.info("Running gRPC ModelServer at UNIX socket %s ...", opts.grpc_socket_path)
        self._grpc = server

    async def _start_rest(self) -> None:
        opts = self.options
        limits = rest_connections.ConnectionLimits(
            header_timeout=opts.rest_api_header_timeout_seconds,
            body_timeout=opts.rest_api_body_timeout_seconds,
            max_connections=rest_connections.fit_max_connections(opts.rest_api_max_connections),
        )
        guard = rest_connections.ConnectionGuard(limits)
        app = build_app(
            self.service,
            self.rest_state,
            self.ext.rest_observer or _noop,
            opts.rest_api_timeout_in_ms / 1000.0,
            [*self.ext.rest_routes, ("GET", "/v1/cache", self._cache_status)],
            codec_pool=self.codec_pool,
            middlewares=[
                # Outermost: the body deadline holds before auth or CORS run.
                rest_connections.limits_middleware(
                    guard, lambda: self.rest_state.draining, self.admission
                ),
                *([cors_middleware()] if opts.rest_api_enable_cors_support else []),
                *(
                    [tls.rest_client_cert_middleware()]
                    if self._ssl is not None and self._ssl.client_verify
                    else []
                ),
                *([rest_token_middleware(self._tokens)] if self._tokens else []),
            ],
        )
        # keepalive_timeout is aiohttp's idle timer (from connection open and
        # after each response). handler_cancellation: a connection closed by
        # the client or aborted by the drain cancels its handler, so no
        # handler outlives its socket; shutdown_timeout then only bounds a
        # cleanup that finds every connection already closed.
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=opts.rest_api_idle_timeout_seconds,
            handler_cancellation=True,
            shutdown_timeout=1.0,
        )
        await runner.setup()
        assert runner.server is not None
        guard.bind(runner.server)
        try:
            listener = await rest_connections.listen(
                guard, opts.bind_address, opts.rest_api_port, opts.workers > 1, self._rest_ssl
            )
        except OSError as e:
            await runner.cleanup()
            raise StartupError(
                f"INVALID_ARGUMENT: cannot bind REST port {opts.rest_api_port}: {e}"
            ) from e
        sockets = listener.sockets
        self.rest_port = sockets[0].getsockname()[1] if sockets else opts.rest_api_port
        self._rest, self._rest_listener, self._guard = runner, listener, guard

    async def _cache_status(self, request: web.Request) -> web.Response:
        """tfmodel: per s3:// version, downloading/cached/failed and the bytes this process
        fetched (the operator copies it into the TFModel status)."""
        return web.json_response(
            {"cache_dir": self.model_cache.root, "models": self.model_cache.status()}
        )

    def request_stop(self) -> None:
        self._stop.set()

    async def wait_stopped(self) -> None:
        await self._stop.wait()

    async def drain_and_stop(self) -> None:
        """SIGTERM, step by step as README "Shutdown sequence" lists them."""
        opts = self.options
        # 1. Not ready: /readyz 503, gRPC health NOT_SERVING, REST responses
        #    carry `Connection: close`; everything is still served.
        self.rest_state.draining = True
        self._stopping = True  # keep the model cache for the next container
        self._stop.set()
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        # 2. Keep listening while endpoints and load balancers catch up: a
        #    kubelet probe (a new connection each time) sees the 503.
        if opts.shutdown_readiness_delay_seconds > 0:
            log.info(
                "shutting down: /readyz 503, serving for %gs more before draining",
                opts.shutdown_readiness_delay_seconds,
            )
            await asyncio.sleep(opts.shutdown_readiness_delay_seconds)
        # 3. Drain, bounded: listeners close, in-flight calls finish until the
        #    deadline, then what is left is cancelled or aborted.
        timeout = opts.drain_timeout_seconds
        exit_deadline = shutdown.arm_exit_deadline(timeout + shutdown.EXIT_MARGIN_SECONDS)
        log.info("draining: listeners closed; waiting up to %gs for in-flight requests", timeout)
        deadline = asyncio.get_running_loop().time() + timeout
        waits = []
        if self._grpc is not None:
            # grpc.aio: GOAWAY, received calls run to completion within grace.
            waits.append(self._grpc.stop(grace=timeout))
        if self._rest_listener is not None and self._guard is not None:
            waits.append(rest_connections.drain(self._rest_listener, self._guard, deadline))
        await asyncio.gather(*waits)
        if self._rest is not None:
            await self._rest.cleanup()
        # 4. Background work, then the models; the executor last, once no
        #    call can reach it.
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.shadow.close()
        drain_runner = getattr(self.runner, "drain", None)
        if drain_runner is not None:
            await drain_runner()
        # No request can log any more: write what is queued, close the files.
        await asyncio.to_thread(self.request_log.close, shutdown.EXIT_MARGIN_SECONDS)
        await self.manager.stop()
        self.runner.close()
        self.codec_pool.close()
        exit_deadline.cancel()
        log.info("stopped")


def _noop(*args: object) -> None:
    return None


BDP_PROBE_ARG = "grpc.http2.bdp_probe"


def _freeze_startup_objects() -> None:
    """Keep the cyclic GC's full collections off the objects start-up made.

    Importing TensorFlow leaves millions of tracked objects; every generation-2
    collection walked all of them, 0.1-0.9 s with the whole process stopped, every few
    seconds under load as requests' objects were promoted (the unbatched REST p99 tail:
    docs/overload.md). gc.freeze() moves them to the permanent generation; refcounting
    still frees them, only cycles among them are no longer collected.
    """
    gc.collect()
    gc.freeze()


async def serve(options: ServerOptions, extensions: Extensions | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code."""
    cfg, watcher = initial_config(options)
    server = ModelServer(options, extensions)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.request_stop)
    await server.start(cfg, watcher)
    if options.worker_dir:
        Path(serving_marker(options.worker_dir, options.worker_index)).touch()
    await server.wait_stopped()
    await server.drain_and_stop()
    return 0
