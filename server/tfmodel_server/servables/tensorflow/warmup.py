"""SavedModel warmup: replay <version>/assets.extra/tf_serving_warmup_requests.

As TF Serving's saved_model_warmup.cc / saved_model_warmup_util.cc: the file
is a TFRecord of PredictionLog; each record (predict, classify, regress or
multi_inference log) is replayed num_request_iterations times against the
freshly loaded version, before it becomes AVAILABLE. A missing file is fine;
more than 1000 records, an unparsable record, a corrupt TFRecord or any failing
request fails the load. Runs synchronously in the load thread.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc
import numpy as np
from tensorflow_serving.apis import prediction_log_pb2

from tfmodel_server.errors import ServingError, invalid_argument

if TYPE_CHECKING:
    from tfmodel_server.monitoring.metrics import ServingMetrics
    from tfmodel_server.servables.tensorflow.servable import Servable, Signature

log = logging.getLogger(__name__)

ASSETS_EXTRA_DIR = "assets.extra"  # kSavedModelAssetsExtraDirectory
WARMUP_FILE_NAME = "tf_serving_warmup_requests"  # WarmupConsts::kRequestsFileName
MAX_NUM_RECORDS = 1000  # WarmupConsts::kMaxNumRecords
DEFAULT_NUM_REQUEST_ITERATIONS = 1  # ModelWarmupOptions default


def warmup_file(version_dir: str | os.PathLike) -> str:
    return os.path.join(os.fspath(version_dir), ASSETS_EXTRA_DIR, WARMUP_FILE_NAME)


def read_warmup_records(version_dir: str | os.PathLike) -> list[prediction_log_pb2.PredictionLog]:
    """PredictionLogs of a version's warmup file; [] when there is none."""
    path = warmup_file(version_dir)
    if not os.path.exists(path):
        return []
    import tensorflow as tf

    records: list[prediction_log_pb2.PredictionLog] = []
    try:
        for index, raw in enumerate(tf.compat.v1.io.tf_record_iterator(path)):
            if index >= MAX_NUM_RECORDS:
                raise invalid_argument(
                    f"Number of warmup records exceeds the maximum ({MAX_NUM_RECORDS}) at {path}"
                )
            record = prediction_log_pb2.PredictionLog()
            try:
                record.ParseFromString(raw)
            except Exception:
                raise invalid_argument(
                    f"Failed to parse warmup record {index} ({len(raw)} bytes) from {path}"
                ) from None
            records.append(record)
    except ServingError:
        raise
    except tf.errors.DataLossError as e:
        raise ServingError(
            grpc.StatusCode.DATA_LOSS,
            f"{e.message} ({path}). Please verify your warmup data is in TFRecord format.",
        ) from None
    except (tf.errors.OpError, OSError) as e:
        raise ServingError(
            grpc.StatusCode.DATA_LOSS, f"Cannot read warmup data {path}: {e}"
        ) from None
    return records


def run_warmup(
    servable: Servable,
    records: list[prediction_log_pb2.PredictionLog],
    iterations: int = DEFAULT_NUM_REQUEST_ITERATIONS,
) -> None:
    """Replay every record `iterations` times; the first failure raises ServingError."""
    iterations = max(1, iterations)
    for index, record in enumerate(records):
        for _ in range(iterations):
            try:
                _run_record(servable, record)
            except ServingError as e:
                raise ServingError(
                    e.code,
                    f"Warmup record {index} failed for {servable.name} version "
                    f"{servable.version}: {e.message}",
                ) from None


def warmup_servable(
    servable: Servable,
    iterations: int = DEFAULT_NUM_REQUEST_ITERATIONS,
    metrics: ServingMetrics | None = None,
) -> int:
    """Read and replay the servable's warmup file; returns the number of records."""
    start = time.perf_counter()
    status = "OK"
    try:
        records = read_warmup_records(servable.path)
        if records:
            run_warmup(servable, records, iterations)
            log.info(
                "Finished warmup of %s version %d: %d records x %d iterations in %.1f ms",
                servable.name,
                servable.version,
                len(records),
                iterations,
                (time.perf_counter() - start) * 1e3,
            )
        return len(records)
    except ServingError as e:
        status = f"{e.code.name}: {e.message}"
        raise
    finally:
        if metrics is not None:
            metrics.record_warmup(servable.path, status, (time.perf_counter() - start) * 1e6)


def make_warmup_hook(
    iterations: int = DEFAULT_NUM_REQUEST_ITERATIONS,
    metrics: ServingMetrics | None = None,
) -> Callable[[Servable], None]:
    """A post-load hook for the manager (--enable_model_warmup)."""

    def hook(servable: Servable) -> None:
        warmup_servable(servable, iterations, metrics)

    return hook


# ---- one record ----------------------------------------------------------


def _run_record(servable: Servable, record: prediction_log_pb2.PredictionLog) -> None:
    from tfmodel_server.servables.tensorflow import classify_regress

    kind = record.WhichOneof("log_type")
    if kind == "predict_log":
        _predict(servable, record.predict_log.request)
    elif kind == "classify_log":
        request = record.classify_log.request
        signature = servable.signature(request.model_spec.signature_name)
        classify_regress.run_classification(signature, request.input, _run)
    elif kind == "regress_log":
        request = record.regress_log.request
        signature = servable.signature(request.model_spec.signature_name)
        classify_regress.run_regression(signature, request.input, _run)
    elif kind == "multi_inference_log":
        request = record.multi_inference_log.request
        if not request.tasks:
            raise invalid_argument("Found no inference tasks in request.")
        classify_regress.run_multi_inference(request, servable.signatures, _run, servable.version)
    elif kind is not None:
        raise ServingError(
            grpc.StatusCode.UNIMPLEMENTED, f"Unsupported log_type for warmup: {kind}"
        )


def _run(
    signature: Signature, feed: dict[str, np.ndarray], outputs: tuple[str, ...]
) -> dict[str, np.ndarray]:
    return signature.run(feed, outputs)


def _predict(servable: Servable, request) -> None:
    from tfmodel_server.codecs.tensor_proto import to_ndarray

    signature = servable.signature(request.model_spec.signature_name)
    inputs = {alias: to_ndarray(proto) for alias, proto in request.inputs.items()}
    arrays = signature.validate_inputs(inputs)
    signature.run(arrays, tuple(request.output_filter))
