"""Prometheus metrics on the REST port (--monitoring_config_file).

TF Serving exports its tensorflow::monitoring metrics with the name's "/"
turned into ":" (util/prometheus_exporter.cc). The families below keep those
exact names, label names and bucket limits, so existing dashboards work:

  :tensorflow:serving:request_count{model_name,status}           counter
  :tensorflow:serving:request_latency{model_name,API,entrypoint}  histogram, us
  :tensorflow:serving:runtime_latency{model_name,API,runtime}     histogram, us
  :tensorflow:serving:batching_session:queuing_latency{thread_pool_name}  us
  :tensorflow:serving:batching_session:wrapped_run_count          counter
  :tensorflow:serving:model_warmup_latency{model_path,status}     histogram, us
  :tensorflow:cc:saved_model:load_attempt_count{model_path,status} counter
  :tensorflow:cc:saved_model:load_latency{model_path}             counter, us

tfmodel adds per-version / per-signature detail under :tfmodel: names.

The "status" label is the request's gRPC status code name for REST requests too (the HTTP
answer is TF Serving's mapping of that code, errors.http_status_for), so one label tells
server faults (INTERNAL, UNKNOWN, UNAVAILABLE, DEADLINE_EXCEEDED, DATA_LOSS: HTTP 500, 503,
504) from client errors (INVALID_ARGUMENT, NOT_FOUND, ...: HTTP 4xx) on both entrypoints;
the operator's canary analysis counts only the former (tests/server/test_metrics_faults.py).

TF Serving writes counters without the "_total" suffix that prometheus-client
adds to counter families; to keep the sample names identical those families
are exposed as "untyped" (Prometheus treats them the same for rate()).

The MonitoringConfig message is not in the tensorflow-serving-api wheel, so it
is declared in declared_protos.py.
"""

from __future__ import annotations

import bisect
import math
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf import text_format
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from tfmodel_server.declared_protos import MonitoringConfigProto
from tfmodel_server.flag_files import read_flag_file
from tfmodel_server.monitoring import request_context
from tfmodel_server.monitoring.observers import RequestObserver

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"  # PrometheusExporter::kPrometheusPath
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# TF Serving's "api" label values (prediction_service_impl.cc, http_rest_api_handler.cc).
API_PREDICT = "Predict"
API_CLASSIFY = "Classify"
API_REGRESS = "Regress"
API_MULTI_INFERENCE = "MultiInference"
ENTRYPOINT_GRPC = "GRPC"
ENTRYPOINT_REST = "REST"
RUNTIME_TF = "TF1"  # TF Serving labels SavedModel session runs "TF1"

# The API layers' own names for a call -> TF Serving's "API" label value.
_API_LABELS = {
    "predict": API_PREDICT,
    "classify": API_CLASSIFY,
    "regress": API_REGRESS,
    "multi_inference": API_MULTI_INFERENCE,
    "get_model_metadata": "GetModelMetadata",
}


def exponential_buckets(scale: float, growth: float, count: int) -> tuple[float, ...]:
    """tensorflow::monitoring::Buckets::Exponential limits (+Inf is implicit)."""
    return tuple(scale * growth**i for i in range(count))


LATENCY_BUCKETS = exponential_buckets(10, 1.8, 33)  # ~20 minutes, util.cc
QUEUING_BUCKETS = exponential_buckets(100, 1.2, 52)  # ~1 second, batching_session.cc
BATCH_SIZE_BUCKETS = exponential_buckets(1, 2, 15)  # 1 .. 16384, like request_example_counts


# ---- MonitoringConfig -------------------------------------------------------


class MonitoringConfigError(ValueError):
    """A monitoring config file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class MonitoringOptions:
    prometheus_enabled: bool = False
    prometheus_path: str = DEFAULT_PROMETHEUS_PATH


def parse_monitoring_config(text: str, source: str = "<monitoring config>") -> MonitoringOptions:
    proto = MonitoringConfigProto()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as e:
        raise MonitoringConfigError(f"Invalid monitoring config in {source}: {e}") from None
    prom = proto.prometheus_config
    path = prom.path or DEFAULT_PROMETHEUS_PATH
    if prom.enable and not path.startswith("/"):
        raise MonitoringConfigError(
            f"Invalid monitoring config in {source}: prometheus_config.path must start "
            f"with '/'; got {path!r}"
        )
    return MonitoringOptions(prometheus_enabled=prom.enable, prometheus_path=path)


def load_monitoring_config(path: str | os.PathLike | None) -> MonitoringOptions:
    """Read --monitoring_config_file; empty path -> monitoring off."""
    if not path:
        return MonitoringOptions()
    return parse_monitoring_config(
        read_flag_file(path, "monitoring config file", MonitoringConfigError), str(path)
    )


# ---- metric families (thread-safe, no _created samples) ---------------------


class _Counter:
    def __init__(self, name: str, doc: str, labels: Sequence[str], typ: str = "unknown"):
        # typ "unknown" renders as "untyped" and keeps TF Serving's sample name;
        # "counter" gives the usual <name>_total.
        self.name, self.doc, self.labels, self.typ = name, doc, tuple(labels), typ
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, labels: Sequence[str], amount: float = 1.0) -> None:
        key = tuple(str(v) for v in labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, *labels: str) -> float:
        with self._lock:
            return self._values.get(tuple(labels), 0.0)

    def remove_matching(self, match: dict[str, str]) -> None:
        """Drop every series whose labels include `match` (a retired version's)."""
        with self._lock:
            for key in [k for k in self._values if _matches(self.labels, k, match)]:
                del self._values[key]

    def collect(self) -> Metric:
        metric = Metric(self.name, self.doc, self.typ)
        sample_name = self.name + ("_total" if self.typ == "counter" else "")
        with self._lock:
            items = list(self._values.items())
        for key, value in items:
            metric.add_sample(sample_name, dict(zip(self.labels, key, strict=True)), value)
        return metric


class _Histogram:
    def __init__(self, name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]):
        self.name, self.doc, self.labels = name, doc, tuple(labels)
        self.bounds = tuple(buckets)
        self._cells: dict[tuple[str, ...], list] = {}  # key -> [counts..., sum]
        self._lock = threading.Lock()

    def observe(self, labels: Sequence[str], value: float) -> None:
        key = tuple(str(v) for v in labels)
        # TF's Histogram: a value lands in the first bucket whose limit exceeds it.
        index = bisect.bisect_right(self.bounds, value)
        with self._lock:
            cell = self._cells.get(key)
            if cell is None:
                cell = self._cells[key] = [0] * (len(self.bounds) + 1) + [0.0]
            cell[index] += 1
            cell[-1] += value

    def count(self, *labels: str) -> int:
        with self._lock:
            cell = self._cells.get(tuple(labels))
            return int(sum(cell[:-1])) if cell else 0

    def remove_matching(self, match: dict[str, str]) -> None:
        """Drop every series whose labels include `match` (a retired version's)."""
        with self._lock:
            for key in [k for k in self._cells if _matches(self.labels, k, match)]:
                del self._cells[key]

    def collect(self) -> Metric:
        metric = Metric(self.name, self.doc, "histogram")
        with self._lock:
            items = [(k, list(v)) for k, v in self._cells.items()]
        for key, cell in items:
            labels = dict(zip(self.labels, key, strict=True))
            cumulative = 0
            for bound, n in zip(self.bounds + (math.inf,), cell[:-1], strict=True):
                cumulative += n
                le = "+Inf" if math.isinf(bound) else _fmt(bound)
                metric.add_sample(self.name + "_bucket", {**labels, "le": le}, cumulative)
            metric.add_sample(self.name + "_sum", labels, cell[-1])
            metric.add_sample(self.name + "_count", labels, cumulative)
        return metric


def _matches(names: Sequence[str], key: tuple[str, ...], match: dict[str, str]) -> bool:
    labels = dict(zip(names, key, strict=True))
    return all(name in labels and labels[name] == value for name, value in match.items())


def _fmt(bound: float) -> str:
    # absl::StrCat(double) prints six significant digits, as TF Serving's "le" labels.
    return format(bound, ".6g")


class _Gauge:
    """Values read when scraped: `read()` -> {label values: value}."""

    def __init__(self, name: str, doc: str, labels: Sequence[str]) -> None:
        self.name, self.doc, self.labels = name, doc, tuple(labels)
        self.read: Callable[[], dict[tuple[str, ...], float]] | None = None

    def collect(self) -> Metric:
        metric = Metric(self.name, self.doc, "gauge")
        for key, value in (self.read() if self.read is not None else {}).items():
            metric.add_sample(self.name, dict(zip(self.labels, key, strict=True)), value)
        return metric


class _Families(Collector):
    def __init__(self, families: Iterable) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        for family in self.families:
            yield family.collect()


# ---- the object the server layers call ---------------------------------------


def _status_name(status: grpc.StatusCode | str | None) -> str:
    if status is None:
        return "OK"
    if isinstance(status, grpc.StatusCode):
        return status.name
    return str(status)


class ServingMetrics:
    """All server metrics, in a registry of its own (tests get fresh counters).

    Implements batching.BatchStats, so it can be passed as BatchingRunner(stats=...).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        tf = ":tensorflow:serving:"
        self.request_count = _Counter(
            tf + "request_count", "The total number of requests.", ["model_name", "status"]
        )
        self.request_latency = _Histogram(
            tf + "request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ["model_name", "API", "entrypoint"],
            LATENCY_BUCKETS,
        )
        self.runtime_latency = _Histogram(
            tf + "runtime_latency",
            "Distribution of wall time (in microseconds) for Tensorflow runtime.",
            ["model_name", "API", "runtime"],
            LATENCY_BUCKETS,
        )
        self.queuing_latency = _Histogram(
            tf + "batching_session:queuing_latency",
            "Distribution of wall time spent (in microseconds) in queuing",
            ["thread_pool_name"],
            QUEUING_BUCKETS,
        )
        self.wrapped_run_count = _Counter(
            tf + "batching_session:wrapped_run_count",
            "Total count of run calls on the wrapped session",
            [],
        )
        self.warmup_latency = _Histogram(
            tf + "model_warmup_latency",
            "Distribution of wall time (in microseconds) for warming up the model.",
            ["model_path", "status"],
            LATENCY_BUCKETS,
        )
        self.load_attempt_count = _Counter(
            ":tensorflow:cc:saved_model:load_attempt_count",
            "The number of times a SavedModel was successfully loaded.",
            ["model_path", "status"],
        )
        self.load_latency = _Counter(
            ":tensorflow:cc:saved_model:load_latency",
            "Latency in microseconds for SavedModels that were successfully loaded.",
            ["model_path"],
        )
        # tfmodel additions: per version and signature.
        self.version_request_count = _Counter(
            ":tfmodel:request_count",
            "Requests by model version, signature, API, entrypoint and status.",
            ["model_name", "version", "signature", "API", "entrypoint", "status"],
            typ="counter",
        )
        self.version_request_latency = _Histogram(
            ":tfmodel:request_latency",
            "Request wall time (in microseconds) by model version and signature.",
            ["model_name", "version", "signature", "API", "entrypoint"],
            LATENCY_BUCKETS,
        )
        self.batch_size = _Histogram(
            ":tfmodel:batch_size",
            "Rows per processed batch (before padding).",
            ["model_name", "version", "signature"],
            BATCH_SIZE_BUCKETS,
        )
        self.padded_batch_size = _Histogram(
            ":tfmodel:padded_batch_size",
            "Rows per processed batch after padding to allowed_batch_sizes.",
            ["model_name", "version", "signature"],
            BATCH_SIZE_BUCKETS,
        )
        self.batch_queueing_latency = _Histogram(
            ":tfmodel:batch_queueing_latency",
            "Wall time (in microseconds) a request waited in the batching queue.",
            ["model_name", "version", "signature"],
            QUEUING_BUCKETS,
        )
        self.model_load_latency = _Histogram(
            ":tfmodel:model_load_latency",
            "Wall time (in microseconds) to load one model version, warmup included.",
            ["model_name", "version", "status"],
            LATENCY_BUCKETS,
        )
        self.config_reload_count = _Counter(
            ":tfmodel:config_reload_count",
            "Model config reloads by outcome (success / failure).",
            ["status"],
            typ="counter",
        )
        self.requests_refused = _Counter(
            ":tfmodel:requests_refused",
            "Prediction requests refused by admission control before being read or decoded, "
            "by protocol (grpc / rest) and reason (inflight_bytes / inflight_requests / "
            "larger_than_budget).",
            ["protocol", "reason"],
            typ="counter",
        )
        self.inflight_requests = _Gauge(
            ":tfmodel:inflight_requests",
            "Prediction requests admitted and not yet answered, by protocol (grpc / rest).",
            ["protocol"],
        )
        self.inflight_request_bytes = _Gauge(
            ":tfmodel:inflight_request_bytes",
            "Bytes the admitted prediction requests are charged (their size on the wire, at "
            "least 64 KiB each), by protocol; --max_inflight_request_bytes bounds the sum.",
            ["protocol"],
        )
        self.registry.register(
            _Families(
                [
                    self.request_count,
                    self.request_latency,
                    self.runtime_latency,
                    self.queuing_latency,
                    self.wrapped_run_count,
                    self.warmup_latency,
                    self.load_attempt_count,
                    self.load_latency,
                    self.version_request_count,
                    self.version_request_latency,
                    self.batch_size,
                    self.padded_batch_size,
                    self.batch_queueing_latency,
                    self.model_load_latency,
                    self.config_reload_count,
                    self.requests_refused,
                    self.inflight_requests,
                    self.inflight_request_bytes,
                ]
            )
        )

    # -- requests (API layer) --

    def record_request(
        self,
        model_name: str,
        api: str,
        entrypoint: str,
        status: grpc.StatusCode | str | None,
        latency_us: float,
        version: int | None = None,
        signature: str | None = None,
    ) -> None:
        """One finished request. status: gRPC code (OK on success); api "predict" or "Predict"."""
        api = _API_LABELS.get(api, api)
        status_name = _status_name(status)
        self.request_count.inc((model_name, status_name))
        self.request_latency.observe((model_name, api, entrypoint), latency_us)
        version_label = "" if version is None else str(version)
        signature_label = signature or ""
        self.version_request_count.inc(
            (model_name, version_label, signature_label, api, entrypoint, status_name)
        )
        self.version_request_latency.observe(
            (model_name, version_label, signature_label, api, entrypoint), latency_us
        )

    def request_observer(self, entrypoint: str) -> RequestObserver:
        """Adapter for the API layers' (model, api, code, seconds) callback."""

        def observe(model_name: str, api: str, code: grpc.StatusCode, seconds: float) -> None:
            # Version, signature and TF run time of this request (request_context).
            record = request_context.current()
            version = record.version if record is not None else None
            signature = record.signature if record is not None else None
            self.record_request(
                model_name, api, entrypoint, code, seconds * 1e6, version, signature
            )
            if record is not None and record.runtime_seconds is not None:
                self.record_runtime(model_name, api, record.runtime_seconds * 1e6)

        return observe

    def record_runtime(
        self, model_name: str, api: str, latency_us: float, runtime: str = RUNTIME_TF
    ) -> None:
        self.runtime_latency.observe((model_name, _API_LABELS.get(api, api), runtime), latency_us)

    # -- batching (batching.BatchStats) --

    def record_batch(
        self,
        model_name: str,
        version: int,
        signature_key: str,
        batch_size: int,
        padded_size: int,
        queueing_latencies_us: Sequence[float],
        runtime_us: float,
        thread_pool_name: str = "batch_threads",
    ) -> None:
        labels = (model_name, str(version), signature_key)
        self.wrapped_run_count.inc(())
        self.batch_size.observe(labels, batch_size)
        self.padded_batch_size.observe(labels, padded_size)
        for latency in queueing_latencies_us:
            self.queuing_latency.observe((thread_pool_name,), latency)
            self.batch_queueing_latency.observe(labels, latency)

    # -- model lifecycle (manager / loader / warmup) --

    def record_model_load(
        self, model_name: str, version: int, model_path: str, latency_us: float, ok: bool
    ) -> None:
        self.load_attempt_count.inc((model_path, "success" if ok else "fail"))
        if ok:
            self.load_latency.inc((model_path,), latency_us)
        self.model_load_latency.observe(
            (model_name, str(version), "success" if ok else "fail"), latency_us
        )

    def record_warmup(self, model_path: str, status: str, latency_us: float) -> None:
        """status as TF Serving prints a Status ("OK" or "CODE: message")."""
        self.warmup_latency.observe((model_path, status), latency_us)

    def remove_version(self, model_name: str, version: int, model_path: str) -> None:
        """A version was unloaded or forgotten: its series go, so /metrics does not
        grow with every version a model ever had (the model-level families stay)."""
        by_version = {"model_name": model_name, "version": str(version)}
        for family in (
            self.version_request_count,
            self.version_request_latency,
            self.batch_size,
            self.padded_batch_size,
            self.batch_queueing_latency,
            self.model_load_latency,
        ):
            family.remove_matching(by_version)
        by_path = {"model_path": model_path}
        for family in (self.warmup_latency, self.load_attempt_count, self.load_latency):
            family.remove_matching(by_path)

    def record_config_reload(self, ok: bool) -> None:
        self.config_reload_count.inc(("success" if ok else "failure",))

    def record_refused(self, protocol: str, reason: str) -> None:
        """One request refused by admission control (model_servers/admission.py)."""
        self.requests_refused.inc((protocol, reason))

    def watch_inflight(self, snapshot: Callable[[], dict[str, tuple[int, int]]]) -> None:
        """The in-flight gauges read `snapshot()` (protocol -> (requests, bytes)) when scraped."""
        self.inflight_requests.read = lambda: {(p,): float(v[0]) for p, v in snapshot().items()}
        self.inflight_request_bytes.read = lambda: {
            (p,): float(v[1]) for p, v in snapshot().items()
        }

    def render(self) -> bytes:
        return generate_latest(self.registry)


def metrics_handler(metrics: ServingMetrics) -> Callable:
    """aiohttp GET handler serving the Prometheus text page."""
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    return handle
