"""Shadow traffic metrics (tfmodel): per (model, stable version, canary version).

  :tfmodel:shadow_request_count_total{model_name,stable_version,canary_version,status}
      shadow runs by the canary's gRPC status (the same request succeeded on stable, so
      every non-OK status is the canary's failure);
  :tfmodel:shadow_latency{...,side}  histogram, us: the TF run time of stable ("stable")
      and of its shadow ("canary"), the same requests on both sides;
  :tfmodel:shadow_abs_diff{...}  histogram: per shadow run, the largest absolute
      difference between stable's and the canary's outputs (+Inf: shapes or non-numeric
      values differ);
  :tfmodel:shadow_top1_rows_total / _top1_agree_total{...}: rows of 2-D score outputs
      compared, and those whose argmax is the same;
  :tfmodel:shadow_shed_total{model_name,reason}: picked but not run (`concurrency`: the
      cap was reached; `load`: admission control is past half its budget;
      `canary_unavailable`: the canary version is not AVAILABLE).

Kept apart from metrics.py (as request_log_metrics.py) so shadowing counts with
Prometheus off; extensions.py registers them on the metrics page when it is on.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from tfmodel_server.monitoring.metrics import LATENCY_BUCKETS, _Counter, _Families, _Histogram

SHED_CONCURRENCY = "concurrency"
SHED_LOAD = "load"
SHED_UNAVAILABLE = "canary_unavailable"  # the canary version is not AVAILABLE (yet)
SIDE_STABLE, SIDE_CANARY = "stable", "canary"

# 1, 2, 5 x 10^e from 1e-9 to 500: the operator's maxAbsDiff is judged on this grid.
ABS_DIFF_BUCKETS = tuple(m * 10.0**e for e in range(-9, 3) for m in (1, 2, 5))

_PAIR = ["model_name", "stable_version", "canary_version"]


class ShadowStats:
    def __init__(self) -> None:
        self.requests = _Counter(
            ":tfmodel:shadow_request_count",
            "Shadow runs on the canary version, by its status.",
            [*_PAIR, "status"],
            typ="counter",
        )
        self.latency = _Histogram(
            ":tfmodel:shadow_latency",
            "TF run time (in microseconds) of shadowed requests on stable and on the canary.",
            [*_PAIR, "side"],
            LATENCY_BUCKETS,
        )
        self.abs_diff = _Histogram(
            ":tfmodel:shadow_abs_diff",
            "Largest absolute difference between stable's and the canary's outputs, per run.",
            _PAIR,
            ABS_DIFF_BUCKETS,
        )
        self.top1_rows = _Counter(
            ":tfmodel:shadow_top1_rows",
            "Rows of 2-D score outputs compared between stable and the canary.",
            _PAIR,
            typ="counter",
        )
        self.top1_agree = _Counter(
            ":tfmodel:shadow_top1_agree",
            "Rows of 2-D score outputs whose top-1 class is the same on stable and the canary.",
            _PAIR,
            typ="counter",
        )
        self.shed = _Counter(
            ":tfmodel:shadow_shed",
            "Requests picked for shadowing but not run, by reason (concurrency / load).",
            ["model_name", "reason"],
            typ="counter",
        )

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(
            _Families(
                [
                    self.requests,
                    self.latency,
                    self.abs_diff,
                    self.top1_rows,
                    self.top1_agree,
                    self.shed,
                ]
            )
        )

    def ran(
        self,
        pair: tuple[str, int, int],
        status: str,
        stable_seconds: float,
        canary_seconds: float | None,
    ) -> None:
        model, stable, canary = pair
        key = (model, str(stable), str(canary))
        self.requests.inc((*key, status))
        self.latency.observe((*key, SIDE_STABLE), stable_seconds * 1e6)
        if canary_seconds is not None:
            self.latency.observe((*key, SIDE_CANARY), canary_seconds * 1e6)

    def compared(
        self, pair: tuple[str, int, int], max_abs_diff: float, rows: int, agree: int
    ) -> None:
        model, stable, canary = pair
        key = (model, str(stable), str(canary))
        self.abs_diff.observe(key, max_abs_diff)
        if rows:
            self.top1_rows.inc(key, rows)
            self.top1_agree.inc(key, agree)

    def shed_one(self, model: str, reason: str) -> None:
        self.shed.inc((model, reason))

    def remove_version(self, model_name: str, version: int) -> None:
        """A version was unloaded or forgotten: every pair it was part of goes, as the
        per-version request series do (metrics.ServingMetrics.remove_version)."""
        pair_families = (
            self.requests,
            self.latency,
            self.abs_diff,
            self.top1_rows,
            self.top1_agree,
        )
        for side in ("stable_version", "canary_version"):
            match = {"model_name": model_name, side: str(version)}
            for family in pair_families:
                family.remove_matching(match)
