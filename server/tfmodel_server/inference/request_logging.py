"""Request logging as TF Serving's ModelConfig.logging_config declares it.

TF Serving's open-source build parses `logging_config` but has no log collector
(tensorflow/serving#408). Here a sampled share of each model's successful
Predict / Classify / Regress / MultiInference calls (gRPC and REST alike: both go
through InferenceService) is written as tensorflow.serving.PredictionLog records
to rotating TFRecord files -- the warmup file's format, so
`python -m tfmodel_server.servables.tensorflow.log_to_warmup` turns a log into
the next version's warmup file.

Never on the request path: a sampled request costs a random draw and a queue
append; the protos are built and written by one writer thread. The queue is
bounded by records and by bytes; when it is full the record is dropped and
counted, the client never waits. A file that cannot be written drops (and
counts) its records and logs the error, at most once a minute per file prefix.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    input_pb2,
    predict_pb2,
    prediction_log_pb2,
    regression_pb2,
)
from tensorflow_serving.config import logging_config_pb2, model_server_config_pb2

from tfmodel_server.codecs.tensor_proto import to_tensor_proto
from tfmodel_server.errors import invalid_argument
from tfmodel_server.monitoring.request_log_metrics import (
    DROP_ENCODE_ERROR,
    DROP_QUEUE_FULL,
    DROP_SHUTDOWN,
    DROP_WRITE_ERROR,
    RequestLogStats,
)
from tfmodel_server.servables.tensorflow.prediction_log_files import RotatingRecordWriter

log = logging.getLogger(__name__)

# LogCollectorConfig.type values this server implements (TF Serving looks the type up
# in a registry and fails the config for an unknown one).
COLLECTOR_TYPES = ("", "tfrecord")
DEFAULT_MAX_FILE_BYTES = 64 << 20
DEFAULT_QUEUE_RECORDS = 1024
DEFAULT_QUEUE_BYTES = 64 << 20
_ERROR_LOG_INTERVAL = 60.0  # seconds between two error lines for one prefix
_RETRY_AFTER_ERROR = 5.0  # seconds a failing prefix drops records before trying again
# The writer wakes this often, or sooner when the queue is half full: waking it for
# every record would make it fight the event loop for the GIL at request rate.
WRITE_INTERVAL_SECONDS = 0.1


@dataclass(frozen=True)
class RequestLogOptions:
    directory: str = ""  # --request_log_dir: relative filename_prefix values live here
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    queue_records: int = DEFAULT_QUEUE_RECORDS
    queue_bytes: int = DEFAULT_QUEUE_BYTES


@dataclass(frozen=True)
class LogPlan:
    """One model's logging: its share of requests and where its files go."""

    model_name: str
    sampling_rate: float
    prefix: str  # path prefix of its files
    sampling_config: logging_config_pb2.SamplingConfig = field(compare=False, hash=False)


def plans_from_config(
    config: model_server_config_pb2.ModelServerConfig, options: RequestLogOptions
) -> dict[str, LogPlan]:
    """The models whose logging_config asks for logging; INVALID_ARGUMENT naming the
    model for a bad rate, an unknown collector type or a prefix with nowhere to go."""
    plans: dict[str, LogPlan] = {}
    if config.WhichOneof("config") != "model_config_list":
        return plans
    for model in config.model_config_list.config:
        if not model.HasField("logging_config"):
            continue
        logging_config = model.logging_config
        where = f"logging_config of model {model.name}"
        rate = logging_config.sampling_config.sampling_rate
        if not 0.0 <= rate <= 1.0:
            raise invalid_argument(f"{where}: sampling_rate must be in [0, 1], got {rate}")
        collector = logging_config.log_collector_config
        if collector.type not in COLLECTOR_TYPES:
            raise invalid_argument(
                f"{where}: Cannot find LogCollector::Factory for type: {collector.type!r} "
                f'(this server writes TFRecord files: type "" or "tfrecord")'
            )
        prefix = collector.filename_prefix or model.name
        if not os.path.isabs(prefix) and not options.directory:
            raise invalid_argument(
                f"{where}: filename_prefix {prefix!r} is not an absolute path and "
                "--request_log_dir is not set"
            )
        if rate <= 0.0:
            continue
        plans[model.name] = LogPlan(
            model.name,
            rate,
            os.path.join(options.directory, prefix),
            logging_config_pb2.SamplingConfig(sampling_rate=rate),
        )
    return plans


# ---- records ----------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """A ModelSpec's fields: the request's (version or label as sent) or the served one."""

    name: str
    version: int | None
    label: str | None
    signature_name: str


def _fill_spec(proto, spec: Spec) -> None:
    proto.name = spec.name
    if spec.version is not None:
        proto.version.value = spec.version
    elif spec.label is not None:
        proto.version_label = spec.label
    proto.signature_name = spec.signature_name


def predict_record(
    request_spec: Spec,
    served: Spec,
    inputs: Mapping[str, np.ndarray],
    output_filter: tuple[str, ...],
    outputs: Mapping[str, np.ndarray],
) -> prediction_log_pb2.PredictionLog:
    record = prediction_log_pb2.PredictionLog()
    request = predict_pb2.PredictRequest(output_filter=output_filter)
    _fill_spec(request.model_spec, request_spec)
    for alias, array in inputs.items():
        request.inputs[alias].CopyFrom(to_tensor_proto(array, as_tensor_content=True))
    response = predict_pb2.PredictResponse()
    _fill_spec(response.model_spec, served)
    for alias, array in outputs.items():
        response.outputs[alias].CopyFrom(to_tensor_proto(array, as_tensor_content=True))
    record.predict_log.request.CopyFrom(request)
    record.predict_log.response.CopyFrom(response)
    return record


def classify_record(
    request_spec: Spec,
    served: Spec,
    request_input: input_pb2.Input,
    result: classification_pb2.ClassificationResult,
) -> prediction_log_pb2.PredictionLog:
    record = prediction_log_pb2.PredictionLog()
    _fill_spec(record.classify_log.request.model_spec, request_spec)
    record.classify_log.request.input.CopyFrom(request_input)
    _fill_spec(record.classify_log.response.model_spec, served)
    record.classify_log.response.result.CopyFrom(result)
    return record


def regress_record(
    request_spec: Spec,
    served: Spec,
    request_input: input_pb2.Input,
    result: regression_pb2.RegressionResult,
) -> prediction_log_pb2.PredictionLog:
    record = prediction_log_pb2.PredictionLog()
    _fill_spec(record.regress_log.request.model_spec, request_spec)
    record.regress_log.request.input.CopyFrom(request_input)
    _fill_spec(record.regress_log.response.model_spec, served)
    record.regress_log.response.result.CopyFrom(result)
    return record


def multi_inference_record(
    request: inference_pb2.MultiInferenceRequest,
    response: inference_pb2.MultiInferenceResponse,
) -> prediction_log_pb2.PredictionLog:
    record = prediction_log_pb2.PredictionLog()
    record.multi_inference_log.request.CopyFrom(request)
    record.multi_inference_log.response.CopyFrom(response)
    return record


def arrays_nbytes(*groups: Mapping[str, np.ndarray]) -> int:
    return sum(int(a.nbytes) for group in groups for a in group.values())


# ---- the logger ---------------------------------------------------------------


@dataclass
class _Item:
    plan: LogPlan
    served: Spec
    timestamp: float
    build: Callable[[], prediction_log_pb2.PredictionLog]
    nbytes: int


class RequestLogger:
    """Samples requests per model and writes their records on a thread of its own."""

    def __init__(
        self,
        options: RequestLogOptions,
        stats: RequestLogStats | None = None,
        sample: Callable[[], float] = random.random,
    ) -> None:
        self.options = options
        self.stats = stats or RequestLogStats()
        self._sample = sample
        self._plans: dict[str, LogPlan] = {}
        self._cond = threading.Condition()
        self._queue: deque[_Item] = deque()
        self._queued_bytes = 0
        self._closing = False
        self._prune = False
        self._idle = False
        self._writers: dict[str, RotatingRecordWriter] = {}
        self._last_error_log: dict[str, float] = {}
        self._failing_until: dict[str, float] = {}
        self._thread: threading.Thread | None = None

    # -- config (event loop) --

    def configure(self, plans: dict[str, LogPlan]) -> None:
        """Replace the per-model plans (one dict swap: the request path reads it unlocked)."""
        self._plans = dict(plans)
        if plans and self._thread is None:
            self.start()
        with self._cond:
            self._prune = True
            self._cond.notify()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="request-log-writer", daemon=True
            )
            self._thread.start()

    # -- request path --

    def sample(self, model_name: str) -> LogPlan | None:
        """The model's plan when this request is to be logged, else None (cheap)."""
        plan = self._plans.get(model_name)
        if plan is None or (plan.sampling_rate < 1.0 and self._sample() >= plan.sampling_rate):
            return None
        return plan

    def submit(
        self,
        plan: LogPlan,
        served: Spec,
        build: Callable[[], prediction_log_pb2.PredictionLog],
        nbytes: int,
    ) -> bool:
        """Queue one record's builder; never blocks. False (and counted) when full."""
        item = _Item(plan, served, time.time(), build, nbytes)
        self.stats.picked(plan.model_name)
        with self._cond:
            if self._closing or (
                self._queue
                and (
                    len(self._queue) >= self.options.queue_records
                    or self._queued_bytes + nbytes > self.options.queue_bytes
                )
            ):
                full = True
            else:
                full = False
                self._queue.append(item)
                self._queued_bytes += nbytes
                if self._idle or self._half_full():
                    self._idle = False
                    self._cond.notify()
        if full:
            self.stats.drop(plan.model_name, DROP_QUEUE_FULL)
        return not full

    def _half_full(self) -> bool:
        return (
            len(self._queue) * 2 >= self.options.queue_records
            or self._queued_bytes * 2 >= self.options.queue_bytes
        )

    # -- shutdown --

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (up to `timeout` seconds), then close the files."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("request log writer did not finish within %.0fs", timeout)
        with self._cond:
            for item in self._queue:
                self.stats.drop(item.plan.model_name, DROP_SHUTDOWN)
            self._queue.clear()

    # -- writer thread --

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing and not self._prune:
                    self._idle = True  # the next record wakes it
                    self._cond.wait()
                self._idle = False
                if not self._closing and not self._prune and not self._half_full():
                    self._cond.wait(WRITE_INTERVAL_SECONDS)  # let a batch gather
                batch = list(self._queue)
                self._queue.clear()
                self._queued_bytes = 0
                prune, self._prune = self._prune, False
                closing = self._closing
            if prune:
                self._close_unused()
            for item in batch:
                self._write(item)
            for writer in self._writers.values():
                self._flush(writer)
            if closing and not batch:
                break
        for writer in self._writers.values():
            self._close(writer)
        self._writers.clear()

    def _write(self, item: _Item) -> None:
        name = item.plan.model_name
        try:
            record = item.build()
            metadata = record.log_metadata
            _fill_spec(metadata.model_spec, item.served)
            metadata.sampling_config.CopyFrom(item.plan.sampling_config)
            metadata.timestamp_secs = int(item.timestamp)
            data = record.SerializeToString()
        except Exception:
            log.exception("request log: cannot build the record of a %s request", name)
            self.stats.drop(name, DROP_ENCODE_ERROR)
            return
        prefix = item.plan.prefix
        if time.monotonic() < self._failing_until.get(prefix, 0.0):
            self.stats.drop(name, DROP_WRITE_ERROR)
            return
        writer = self._writers.get(prefix)
        if writer is None:
            writer = self._writers[prefix] = RotatingRecordWriter(
                prefix, self.options.max_file_bytes
            )
        try:
            nbytes = writer.write(data)
        except Exception as e:  # OSError, tf.errors.OpError: the file, not the request
            self._failed(prefix, writer, e)
            self.stats.drop(name, DROP_WRITE_ERROR)
            return
        self.stats.written(name, nbytes)

    def _failed(self, prefix: str, writer: RotatingRecordWriter, error: Exception) -> None:
        now = time.monotonic()
        self._failing_until[prefix] = now + _RETRY_AFTER_ERROR
        self._close(writer)
        if now - self._last_error_log.get(prefix, -_ERROR_LOG_INTERVAL) >= _ERROR_LOG_INTERVAL:
            self._last_error_log[prefix] = now
            log.error(
                "request log %s: cannot write (%s: %s); dropping its records "
                "(:tfmodel:request_log_dropped{reason=%r})",
                prefix,
                type(error).__name__,
                error,
                DROP_WRITE_ERROR,
            )

    def _flush(self, writer: RotatingRecordWriter) -> None:
        try:
            writer.flush()
        except Exception as e:
            self._failed(writer.prefix, writer, e)

    def _close(self, writer: RotatingRecordWriter) -> None:
        try:
            writer.close()
        except Exception as e:
            log.error("request log %s: close failed: %s", writer.prefix, e)

    def _close_unused(self) -> None:
        wanted = {plan.prefix for plan in self._plans.values()}
        for prefix in [p for p in self._writers if p not in wanted]:
            self._close(self._writers.pop(prefix))
