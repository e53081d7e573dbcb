"""Builds the optional server pieces (batching, metrics, warmup) from flags."""

from __future__ import annotations

from tfmodel_server.flags import ServerOptions
from tfmodel_server.inference.batching import BatchingRunner
from tfmodel_server.inference.batching_params import BatchingConfigError, load_batching_parameters
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
from tfmodel_server.monitoring.worker_metrics import WorkerMetrics
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
            ext.on_refused = metrics.record_refused
            ext.retired_observer = metrics.remove_version
    if options.enable_batching:
        try:
            params = load_batching_parameters(options.batching_parameters_file or None)
        except (BatchingConfigError, OSError) as e:
            raise StartupError(f"INVALID_ARGUMENT: --batching_parameters_file: {e}") from e
        ext.runner = BatchingRunner(params, stats=metrics)
    if options.enable_model_warmup:
        ext.post_load_hook = make_warmup_hook(options.num_request_iterations_for_warmup, metrics)
    return ext
