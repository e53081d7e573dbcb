"""Request log metrics (tfmodel): requests sampled, records written, dropped (and why), bytes.

sampled = records + dropped once the writer has caught up.

Kept apart from metrics.py so the request logger counts even when Prometheus is
off; extensions.py registers these families on the metrics page when it is on.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from tfmodel_server.monitoring.metrics import _Counter, _Families

DROP_QUEUE_FULL = "queue_full"  # the writer fell behind: shed, never wait
DROP_WRITE_ERROR = "write_error"  # the file could not be opened or written
DROP_ENCODE_ERROR = "encode_error"  # the record could not be built (a bug)
DROP_SHUTDOWN = "shutdown"  # still queued when the drain deadline passed


class RequestLogStats:
    def __init__(self) -> None:
        self.sampled = _Counter(
            ":tfmodel:request_log_sampled",
            "Successful requests the sampling_rate picked for the request log.",
            ["model_name"],
            typ="counter",
        )
        self.records = _Counter(
            ":tfmodel:request_log_records",
            "PredictionLog records written to the request log.",
            ["model_name"],
            typ="counter",
        )
        self.dropped = _Counter(
            ":tfmodel:request_log_dropped",
            "Sampled requests not written to the request log, by reason.",
            ["model_name", "reason"],
            typ="counter",
        )
        self.bytes = _Counter(
            ":tfmodel:request_log_bytes",
            "Bytes written to request log files (TFRecord framing included).",
            ["model_name"],
            typ="counter",
        )

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(_Families([self.sampled, self.records, self.dropped, self.bytes]))

    def picked(self, model_name: str) -> None:
        self.sampled.inc((model_name,))

    def written(self, model_name: str, nbytes: int) -> None:
        self.records.inc((model_name,))
        self.bytes.inc((model_name,), nbytes)

    def drop(self, model_name: str, reason: str) -> None:
        self.dropped.inc((model_name, reason))
