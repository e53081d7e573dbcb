"""Builds the optional server pieces (batching, metrics, warmup) from flags."""

from __future__ import annotations

from collections.abc import Callable

from tfmodel_server.errors import invalid_argument
from tfmodel_server.flags import ServerOptions
from tfmodel_server.inference.batching import BatchingRunner
from tfmodel_server.inference.batching_params import (
    BatchingConfigError,
    load_batching_parameters,
    parse_batching_parameters,
    per_model_batching_params,
)
from tfmodel_server.monitoring.metrics import (
    CONTENT_TYPE,
    ENTRYPOINT_GRPC,
    ENTRYPOINT_REST,
    MonitoringConfigError,
    ServingMetrics,
    load_monitoring_config,
    metrics_handler,
)
from tfmodel_server.monitoring.request_log_metrics import RequestLogStats
from tfmodel_server.monitoring.shadow_metrics import ShadowStats
from tfmodel_server.monitoring.worker_metrics import WorkerMetrics
from tfmodel_server.servables.tensorflow.servable import Servable
from tfmodel_server.servables.tensorflow.warmup import make_warmup_hook
from tfmodel_server.server import Extensions, StartupError


def build_extensions(options: ServerOptions) -> Extensions:
    """Flags -> Extensions; a bad batching or monitoring file is a StartupError."""
    ext = Extensions()
    metrics: ServingMetrics | None = None
    if options.monitoring_config_file:
        try:
            monitoring = load_monitoring_config(options.monitoring_config_file)
        except (MonitoringConfigError, OSError) as e:
            raise StartupError(f"INVALID_ARGUMENT: --monitoring_config_file: {e}") from e
        if monitoring.prometheus_enabled:
            metrics = ServingMetrics()
            ext.observer = metrics.request_observer(ENTRYPOINT_GRPC)
            ext.rest_observer = metrics.request_observer(ENTRYPOINT_REST)
            handler = metrics_handler(metrics)
            if options.workers > 1 and options.worker_dir:
                workers = WorkerMetrics(options.worker_dir, options.worker_index, metrics.render)
                ext.startup.append(workers.start)
                handler = workers.handler(CONTENT_TYPE)
            ext.rest_routes.append(("GET", monitoring.prometheus_path, handler))
            ext.on_reload = metrics.record_config_reload
            ext.load_observer = metrics.record_model_load
            ext.request_log_stats = RequestLogStats()
            ext.request_log_stats.register(metrics.registry)
            ext.shadow_stats = ShadowStats()
            ext.shadow_stats.register(metrics.registry)
            ext.on_refused = metrics.record_refused
            ext.watch_inflight = metrics.watch_inflight
            ext.retired_observer = _retire_series(metrics, ext.shadow_stats)
    if options.enable_batching:
        try:
            if options.batching_parameters_text:  # from --platform_config_file
                params = parse_batching_parameters(
                    options.batching_parameters_text, options.platform_config_file
                )
            else:
                params = load_batching_parameters(options.batching_parameters_file or None)
        except (BatchingConfigError, OSError) as e:
            source = (
                "--platform_config_file"
                if options.batching_parameters_text
                else "--batching_parameters_file"
            )
            raise StartupError(f"INVALID_ARGUMENT: {source}: {e}") from e
        per_model = options.enable_per_model_batching_parameters
        ext.runner = BatchingRunner(params, stats=metrics, per_model=per_model)
    hooks: list[Callable[[Servable], None]] = []
    if options.enable_batching and options.enable_per_model_batching_parameters:
        hooks.append(_read_per_model_batching_params)
    if options.enable_model_warmup:
        # Last: a version whose batching file is bad fails before warming up.
        hooks.append(make_warmup_hook(options.num_request_iterations_for_warmup, metrics))
    if hooks:
        ext.post_load_hook = _chain(hooks)
    return ext


def _read_per_model_batching_params(servable: Servable) -> None:
    """A bad batching_params.pbtxt fails the version's load (INVALID_ARGUMENT)."""
    try:
        servable.batching_params = per_model_batching_params(servable.path)
    except (BatchingConfigError, OSError) as e:
        raise invalid_argument(str(e)) from None


def _chain(hooks: list[Callable[[Servable], None]]) -> Callable[[Servable], None]:
    def run_all(servable: Servable) -> None:
        for hook in hooks:
            hook(servable)

    return run_all


def _retire_series(metrics: ServingMetrics, shadow: ShadowStats) -> Callable[[str, int, str], None]:
    """A retired version's series go from the request families and from every shadow pair
    it was part of, so /metrics stays bounded under version churn with shadowing on."""

    def retire(model_name: str, version: int, model_path: str) -> None:
        metrics.remove_version(model_name, version, model_path)
        shadow.remove_version(model_name, version)

    return retire
