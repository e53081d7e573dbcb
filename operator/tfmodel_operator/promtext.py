"""Per-version request figures from one tfmodel-server scrape (pure; prometheus_client's parser).

The server exports `:tfmodel:request_count_total{model_name, version, signature, API,
entrypoint, status}` and the histogram `:tfmodel:request_latency{model_name, version, ...}`
in microseconds. `status` is the request's gRPC status code name for both entrypoints (a REST
answer's HTTP code is TF Serving's mapping of that code), so one classification serves both.

Only server faults count against a version (Flagger's request-success-rate likewise counts
only 5xx answers): a client's malformed request is answered the same by every version.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

REQUEST_COUNT = ":tfmodel:request_count_total"
LATENCY_BUCKET = ":tfmodel:request_latency_bucket"

# gRPC codes that say the server failed a request it should have served (HTTP 500, 503, 504).
SERVER_FAULTS = frozenset({"INTERNAL", "UNKNOWN", "UNAVAILABLE", "DEADLINE_EXCEEDED", "DATA_LOSS"})


def is_server_fault(status: str) -> bool:
    """A status label value that counts against the version (anything else non-OK is the
    client's: INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, UNAUTHENTICATED, ...).

    A label written as an HTTP code (a server that records them) counts when it is 5xx.
    """
    return status in SERVER_FAULTS or (status.isdigit() and len(status) == 3 and status[0] == "5")


@dataclass
class VersionFigures:
    """One model version's requests, server faults, client errors and latency histogram."""

    requests: float = 0.0
    faults: float = 0.0  # server faults (SERVER_FAULTS)
    client_errors: float = 0.0  # every other non-OK status
    buckets: dict[float, float] = field(default_factory=dict)  # upper bound (us) -> cumulative

    @property
    def fault_ratio(self) -> float:
        return self.faults / self.requests if self.requests else 0.0

    def latency_quantile_ms(self, q: float) -> float | None:
        """The q-quantile (ms), interpolated linearly inside its bucket as Prometheus'
        histogram_quantile does; None without samples. In the +Inf bucket: the highest
        finite bound (as histogram_quantile)."""
        bounds = sorted(self.buckets)
        if not bounds:
            return None
        total = self.buckets[bounds[-1]]
        if total <= 0:
            return None
        rank = q * total
        lower, below = 0.0, 0.0
        for bound in bounds:
            count = self.buckets[bound]
            if count >= rank:
                if math.isinf(bound):
                    return lower / 1000.0
                inside = count - below
                share = (rank - below) / inside if inside > 0 else 1.0
                return (lower + (bound - lower) * share) / 1000.0
            lower, below = bound, count
        return lower / 1000.0

    def add(self, other: VersionFigures) -> None:
        self.requests += other.requests
        self.faults += other.faults
        self.client_errors += other.client_errors
        for bound, count in other.buckets.items():
            self.buckets[bound] = self.buckets.get(bound, 0.0) + count

    def minus(self, earlier: VersionFigures) -> VersionFigures | None:
        """These counters less `earlier`'s; None when any went down (the counters reset)."""
        diff = VersionFigures(
            requests=self.requests - earlier.requests,
            faults=self.faults - earlier.faults,
            client_errors=self.client_errors - earlier.client_errors,
            buckets={b: c - earlier.buckets.get(b, 0.0) for b, c in self.buckets.items()},
        )
        counts = (diff.requests, diff.faults, diff.client_errors, *diff.buckets.values())
        if any(c < 0 for c in counts) or any(b not in self.buckets for b in earlier.buckets):
            return None
        return diff


def model_figures(text: str, model: str) -> dict[int, VersionFigures]:
    """Every version of `model` in one scrape (ValueError: not Prometheus text)."""
    out: dict[int, VersionFigures] = {}
    # The parser reads only the two families' lines of this model: a server's page is
    # mostly other families (TF Serving's, batching, loads). Filtered, it costs 2-2.6x the
    # regex scan it replaced per pod, unfiltered about 4x (`python -m bench.promtext_parse`,
    # a 261-line page on the loaded 2-core machine: 38-43 ms against 17-19 ms); kept for
    # the format's escapes and number forms, which the regex only approximated.
    label = f'model_name="{model}"'
    lines = "\n".join(
        line
        for line in text.splitlines()
        if line.startswith((REQUEST_COUNT, LATENCY_BUCKET)) and label in line
    )
    for family in text_string_to_metric_families(lines):
        for sample in family.samples:
            if sample.name not in (REQUEST_COUNT, LATENCY_BUCKET):
                continue
            labels = sample.labels
            if labels.get("model_name") != model:
                continue
            try:
                version = int(labels.get("version", ""))
            except ValueError:
                continue  # failed before a version was resolved: no version's doing
            figures = out.setdefault(version, VersionFigures())
            value = float(sample.value)
            if sample.name == REQUEST_COUNT:
                status = labels.get("status", "OK")
                figures.requests += value
                if is_server_fault(status):
                    figures.faults += value
                elif status != "OK":
                    figures.client_errors += value
            else:
                bound = float(labels.get("le", "+Inf"))  # float() reads "+Inf"
                figures.buckets[bound] = figures.buckets.get(bound, 0.0) + value
    return out


# Shadow traffic (the server's monitoring/shadow_metrics.py), per (stable, canary) version pair.
SHADOW_COUNT = ":tfmodel:shadow_request_count_total"
SHADOW_LATENCY_BUCKET = ":tfmodel:shadow_latency_bucket"
SHADOW_ABS_DIFF_BUCKET = ":tfmodel:shadow_abs_diff_bucket"
SHADOW_TOP1_ROWS = ":tfmodel:shadow_top1_rows_total"
SHADOW_TOP1_AGREE = ":tfmodel:shadow_top1_agree_total"
_SHADOW_FAMILIES = (
    SHADOW_COUNT,
    SHADOW_LATENCY_BUCKET,
    SHADOW_ABS_DIFF_BUCKET,
    SHADOW_TOP1_ROWS,
    SHADOW_TOP1_AGREE,
)


@dataclass
class ShadowFigures:
    """One (stable, canary) pair's shadow runs: the canary side as VersionFigures (every
    non-OK status is a fault: the same request succeeded on stable), stable's run times
    for the same requests, and the agreement counters."""

    canary: VersionFigures = field(default_factory=VersionFigures)
    stable: VersionFigures = field(default_factory=VersionFigures)  # latency buckets only
    abs_diff: dict[float, float] = field(default_factory=dict)  # upper bound -> cumulative
    top1_rows: float = 0.0
    top1_agree: float = 0.0

    @property
    def compared(self) -> float:
        return max(self.abs_diff.values(), default=0.0)

    def abs_diff_over(self, limit: float) -> float:
        """Compared runs whose largest difference may exceed `limit`: everything above the
        highest bucket bound <= limit (a run in a bucket straddling the limit counts)."""
        within = max((c for b, c in self.abs_diff.items() if b <= limit), default=0.0)
        return self.compared - within

    def add(self, other: ShadowFigures) -> None:
        self.canary.add(other.canary)
        self.stable.add(other.stable)
        for bound, count in other.abs_diff.items():
            self.abs_diff[bound] = self.abs_diff.get(bound, 0.0) + count
        self.top1_rows += other.top1_rows
        self.top1_agree += other.top1_agree

    def minus(self, earlier: ShadowFigures) -> ShadowFigures | None:
        """These counters less `earlier`'s; None when any went down (the counters reset)."""
        canary, stable = self.canary.minus(earlier.canary), self.stable.minus(earlier.stable)
        diff = {b: c - earlier.abs_diff.get(b, 0.0) for b, c in self.abs_diff.items()}
        rows = self.top1_rows - earlier.top1_rows
        agree = self.top1_agree - earlier.top1_agree
        if canary is None or stable is None or rows < 0 or agree < 0:
            return None
        if any(c < 0 for c in diff.values()) or any(
            b not in self.abs_diff for b in earlier.abs_diff
        ):
            return None
        return ShadowFigures(canary, stable, diff, rows, agree)


def shadow_figures(text: str, model: str) -> dict[tuple[int, int], ShadowFigures]:
    """Every (stable, canary) shadow pair of `model` in one scrape."""
    out: dict[tuple[int, int], ShadowFigures] = {}
    label = f'model_name="{model}"'
    lines = "\n".join(
        line for line in text.splitlines() if line.startswith(_SHADOW_FAMILIES) and label in line
    )
    for family in text_string_to_metric_families(lines):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("model_name") != model:
                continue
            try:
                pair = (int(labels["stable_version"]), int(labels["canary_version"]))
            except (KeyError, ValueError):
                continue
            figures = out.setdefault(pair, ShadowFigures())
            value = float(sample.value)
            if sample.name == SHADOW_COUNT:
                figures.canary.requests += value
                if labels.get("status", "OK") != "OK":
                    figures.canary.faults += value
            elif sample.name == SHADOW_LATENCY_BUCKET:
                side = figures.canary if labels.get("side") == "canary" else figures.stable
                bound = float(labels.get("le", "+Inf"))
                side.buckets[bound] = side.buckets.get(bound, 0.0) + value
            elif sample.name == SHADOW_ABS_DIFF_BUCKET:
                bound = float(labels.get("le", "+Inf"))
                figures.abs_diff[bound] = figures.abs_diff.get(bound, 0.0) + value
            elif sample.name == SHADOW_TOP1_ROWS:
                figures.top1_rows += value
            elif sample.name == SHADOW_TOP1_AGREE:
                figures.top1_agree += value
    return out


def version_figures(text: str, model: str, version: int) -> VersionFigures:
    """Figures of `model` version `version` in one scrape."""
    return model_figures(text, model).get(version, VersionFigures())


def summed(per_pod: Iterable[Mapping[int, VersionFigures]], version: int) -> VersionFigures:
    total = VersionFigures()
    for versions in per_pod:
        if version in versions:
            total.add(versions[version])
    return total
