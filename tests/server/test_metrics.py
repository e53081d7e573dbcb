"""Prometheus metrics: TF Serving names, labels and buckets, counting, real HTTP scrape."""

from __future__ import annotations

import asyncio

import aiohttp
import grpc
import numpy as np
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from tfmodel_server.inference.batching import BatchingRunner
from tfmodel_server.inference.batching_params import BatchingParams
from tfmodel_server.monitoring.metrics import (
    API_PREDICT,
    DEFAULT_PROMETHEUS_PATH,
    ENTRYPOINT_GRPC,
    ENTRYPOINT_REST,
    LATENCY_BUCKETS,
    MonitoringConfigError,
    MonitoringOptions,
    ServingMetrics,
    load_monitoring_config,
    metrics_handler,
)
from tfmodel_server.servables.tensorflow.loader import load_saved_model

from tests.server.savedmodels import export_linear


def samples(metrics: ServingMetrics) -> dict[tuple[str, tuple], float]:
    """Every exposed sample as {(name, sorted labels): value}, via the Prometheus parser."""
    out: dict[tuple[str, tuple], float] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


# ---- --monitoring_config_file ---------------------------------------------------


def test_monitoring_config_enabled_with_path(tmp_path):
    path = tmp_path / "monitoring.config"
    path.write_text('prometheus_config { enable: true path: "/metrics/here" }')
    assert load_monitoring_config(path) == MonitoringOptions(True, "/metrics/here")


def test_monitoring_config_defaults(tmp_path):
    path = tmp_path / "monitoring.config"
    path.write_text("prometheus_config { enable: true }")
    assert load_monitoring_config(path) == MonitoringOptions(True, DEFAULT_PROMETHEUS_PATH)
    assert DEFAULT_PROMETHEUS_PATH == "/monitoring/prometheus/metrics"
    path.write_text("")
    assert not load_monitoring_config(path).prometheus_enabled
    assert load_monitoring_config("") == MonitoringOptions()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("prometheus_config { enabled: true }", 'no field named "enabled"'),
        ('prometheus_config { enable: true path: "metrics" }', "must start with '/'"),
        ("prometheus_config { enable: maybe }", "enable"),
    ],
)
def test_bad_monitoring_config_names_file_and_problem(tmp_path, text, problem):
    path = tmp_path / "monitoring.config"
    path.write_text(text)
    with pytest.raises(MonitoringConfigError) as info:
        load_monitoring_config(path)
    assert str(path) in str(info.value) and problem in str(info.value)


def test_missing_monitoring_config_is_named(tmp_path):
    with pytest.raises(MonitoringConfigError, match="absent.config"):
        load_monitoring_config(tmp_path / "absent.config")


# ---- names, labels, counting -------------------------------------------------------


def test_request_count_and_latency_use_tf_serving_names_and_labels():
    m = ServingMetrics()
    m.record_request("mnist", API_PREDICT, ENTRYPOINT_GRPC, grpc.StatusCode.OK, 150.0, 1, "sd")
    m.record_request("mnist", API_PREDICT, ENTRYPOINT_GRPC, None, 5000.0, 1, "sd")
    m.record_request("mnist", API_PREDICT, ENTRYPOINT_REST, grpc.StatusCode.NOT_FOUND, 20.0)
    s = samples(m)
    count = ":tensorflow:serving:request_count"
    assert s[(count, (("model_name", "mnist"), ("status", "OK")))] == 2
    assert s[(count, (("model_name", "mnist"), ("status", "NOT_FOUND")))] == 1
    latency = ":tensorflow:serving:request_latency"
    grpc_labels = (("API", "Predict"), ("entrypoint", "GRPC"), ("model_name", "mnist"))
    assert s[(latency + "_count", grpc_labels)] == 2
    assert s[(latency + "_sum", grpc_labels)] == 5150.0
    # 150 us falls in (104.976, 188.957]; cumulative buckets.
    assert s[(latency + "_bucket", tuple(sorted(grpc_labels + (("le", "104.976"),))))] == 0
    assert s[(latency + "_bucket", tuple(sorted(grpc_labels + (("le", "188.957"),))))] == 1
    assert s[(latency + "_bucket", tuple(sorted(grpc_labels + (("le", "+Inf"),))))] == 2
    # tfmodel per-version / per-signature detail.
    version = (
        ("API", "Predict"),
        ("entrypoint", "GRPC"),
        ("model_name", "mnist"),
        ("signature", "sd"),
        ("status", "OK"),
        ("version", "1"),
    )
    assert s[(":tfmodel:request_count_total", version)] == 2
    page = m.render().decode()
    # Exactly TF Serving's sample name: no "_total", no "_created".
    assert '\n:tensorflow:serving:request_count{model_name="mnist",status="OK"} 2.0\n' in page
    assert "_created" not in page


def test_latency_buckets_are_tf_servings_exponential_10_1_8_33():
    assert len(LATENCY_BUCKETS) == 33
    assert LATENCY_BUCKETS[0] == 10 and LATENCY_BUCKETS[1] == pytest.approx(18)
    assert LATENCY_BUCKETS[-1] == pytest.approx(10 * 1.8**32)
    m = ServingMetrics()
    m.record_runtime("m", API_PREDICT, 12.0)
    families = {f.name: f for f in text_string_to_metric_families(m.render().decode())}
    runtime = families[":tensorflow:serving:runtime_latency"]
    buckets = [s for s in runtime.samples if s.name.endswith("_bucket")]
    assert len(buckets) == 34  # 33 limits + +Inf
    assert buckets[0].labels == {
        "model_name": "m",
        "API": "Predict",
        "runtime": "TF1",
        "le": "10",
    }
    assert [b.value for b in buckets[:2]] == [0, 1]


def test_model_load_warmup_and_config_reload_metrics():
    m = ServingMetrics()
    m.record_model_load("m", 3, "/models/m/3", 2500.0, ok=True)
    m.record_model_load("m", 4, "/models/m/4", 100.0, ok=False)
    m.record_warmup("/models/m/3", "OK", 40.0)
    m.record_config_reload(True)
    m.record_config_reload(True)
    m.record_config_reload(False)
    s = samples(m)
    attempts = ":tensorflow:cc:saved_model:load_attempt_count"
    assert s[(attempts, (("model_path", "/models/m/3"), ("status", "success")))] == 1
    assert s[(attempts, (("model_path", "/models/m/4"), ("status", "fail")))] == 1
    assert s[(":tensorflow:cc:saved_model:load_latency", (("model_path", "/models/m/3"),))] == 2500
    load = ":tfmodel:model_load_latency_count"
    assert s[(load, (("model_name", "m"), ("status", "success"), ("version", "3")))] == 1
    warm = ":tensorflow:serving:model_warmup_latency_count"
    assert s[(warm, (("model_path", "/models/m/3"), ("status", "OK")))] == 1
    assert s[(":tfmodel:config_reload_count_total", (("status", "success"),))] == 2
    assert s[(":tfmodel:config_reload_count_total", (("status", "failure"),))] == 1


def test_each_metrics_object_has_its_own_registry():
    a, b = ServingMetrics(), ServingMetrics()
    a.record_config_reload(True)
    assert (":tfmodel:config_reload_count_total", (("status", "success"),)) in samples(a)
    assert (":tfmodel:config_reload_count_total", (("status", "success"),)) not in samples(b)


async def test_batching_runner_feeds_batch_metrics(tmp_path):
    servable = load_saved_model("lin", 7, str(export_linear(tmp_path / "lin", 7)))
    m = ServingMetrics()
    runner = BatchingRunner(
        BatchingParams(max_batch_size=8, batch_timeout_micros=20_000, allowed_batch_sizes=(4, 8)),
        stats=m,
    )
    signature = servable.signature("")
    try:
        await asyncio.gather(
            *(runner.run(servable, signature, {"x": np.ones(1, np.float32)}) for _ in range(3))
        )
    finally:
        await runner.drain()
        servable.unload()
    s = samples(m)
    labels = (("model_name", "lin"), ("signature", "serving_default"), ("version", "7"))
    assert s[(":tfmodel:batch_size_count", labels)] == 1
    assert s[(":tfmodel:batch_size_sum", labels)] == 3
    assert s[(":tfmodel:padded_batch_size_sum", labels)] == 4
    assert s[(":tfmodel:batch_queueing_latency_count", labels)] == 3
    queuing = ":tensorflow:serving:batching_session:queuing_latency_count"
    assert s[(queuing, (("thread_pool_name", "batch_threads"),))] == 3
    assert s[(":tensorflow:serving:batching_session:wrapped_run_count", ())] == 1


# ---- scraped over real HTTP ------------------------------------------------------


async def test_metrics_handler_serves_prometheus_text_over_http():
    m = ServingMetrics()
    app = web.Application()
    app.router.add_get(DEFAULT_PROMETHEUS_PATH, metrics_handler(m))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}{DEFAULT_PROMETHEUS_PATH}"
    try:
        async with aiohttp.ClientSession() as session:
            m.record_request("m", API_PREDICT, ENTRYPOINT_REST, grpc.StatusCode.OK, 10.0)
            async with session.get(url) as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain")
                first = await response.text()
            m.record_request("m", API_PREDICT, ENTRYPOINT_REST, grpc.StatusCode.OK, 10.0)
            async with session.get(url) as response:
                second = await response.text()
    finally:
        await runner.cleanup()
    line = ':tensorflow:serving:request_count{model_name="m",status="OK"}'
    assert f"{line} 1.0" in first
    assert f"{line} 2.0" in second
    assert "# TYPE :tensorflow:serving:request_latency histogram" in second


def test_request_observer_adapts_the_api_layer_callback():
    m = ServingMetrics()
    observe = m.request_observer(ENTRYPOINT_GRPC)
    observe("m", "classify", grpc.StatusCode.OK, 0.002)
    observe("m", "classify", grpc.StatusCode.INVALID_ARGUMENT, 0.001)
    s = samples(m)
    labels = (("API", "Classify"), ("entrypoint", "GRPC"), ("model_name", "m"))
    assert s[(":tensorflow:serving:request_latency_count", labels)] == 2
    assert s[(":tensorflow:serving:request_latency_sum", labels)] == pytest.approx(3000.0)
    status = ":tensorflow:serving:request_count"
    assert s[(status, (("model_name", "m"), ("status", "INVALID_ARGUMENT")))] == 1
