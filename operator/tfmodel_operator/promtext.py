"""Per-version request figures from tfmodel-server's Prometheus text (pure; no client library).

The server exports `:tfmodel:request_count_total{model_name, version, signature, API,
entrypoint, status}` and the histogram `:tfmodel:request_latency{model_name, version, ...}`
in microseconds. A rollout compares the canary's figures summed over every pod.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

REQUEST_COUNT = ":tfmodel:request_count_total"
LATENCY_BUCKET = ":tfmodel:request_latency_bucket"

_SAMPLE = re.compile(r"^(?P<name>[^\s{]+)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass
class VersionFigures:
    """One model version's requests, failed requests and latency histogram (summed)."""

    requests: float = 0.0
    errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # upper bound (us) -> cumulative

    @property
    def error_ratio(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def latency_quantile_ms(self, q: float) -> float | None:
        """Upper bound (ms) of the bucket holding the q-quantile; None without samples."""
        bounds = sorted(self.buckets)
        total = self.buckets.get(math.inf, self.buckets[bounds[-1]] if bounds else 0.0)
        if total <= 0:
            return None
        for bound in bounds:
            if self.buckets[bound] >= q * total:
                return bound / 1000.0
        return math.inf

    def add(self, other: VersionFigures) -> None:
        self.requests += other.requests
        self.errors += other.errors
        for bound, count in other.buckets.items():
            self.buckets[bound] = self.buckets.get(bound, 0.0) + count


def version_figures(text: str, model: str, version: int) -> VersionFigures:
    """Figures of `model` version `version` in one scrape."""
    figures = VersionFigures()
    wanted = str(version)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None or match["name"] not in (REQUEST_COUNT, LATENCY_BUCKET):
            continue
        labels = dict(_LABEL.findall(match["labels"] or ""))
        if labels.get("model_name") != model or labels.get("version") != wanted:
            continue
        try:
            value = float(match["value"])
        except ValueError:
            continue
        if match["name"] == REQUEST_COUNT:
            figures.requests += value
            if labels.get("status", "OK") != "OK":
                figures.errors += value
        else:
            bound = math.inf if labels.get("le") == "+Inf" else float(labels.get("le", "inf"))
            figures.buckets[bound] = figures.buckets.get(bound, 0.0) + value
    return figures


def summed(scrapes: Iterable[str], model: str, version: int) -> VersionFigures:
    total = VersionFigures()
    for text in scrapes:
        total.add(version_figures(text, model, version))
    return total
