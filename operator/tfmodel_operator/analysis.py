"""The canary analysis (pure): per-pod windows over the servers' counters, and the verdict.

A window starts when a rollout step starts: the operator snapshots every running pod's
counters and latency buckets (the baseline, keyed by pod UID). At each round the window's
figures are, per pod, now minus the baseline:

  - a pod absent from the baseline started after the window began: all its counts are in it;
  - a pod whose container restarted (restartCount moved) or whose counters went down
    (reset) counts from zero: everything it has now is in the window;
  - a running pod that did not answer makes the round Inconclusive: nothing is decided
    on part of the fleet, and nothing falls back to lifetime totals.

The canary (target version) and stable are judged over the same window, so over the same
traffic split. Result names follow Argo Rollouts' AnalysisPhase (Successful, Failed,
Inconclusive).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .promtext import VersionFigures
from .spec import Analysis

SUCCESSFUL, FAILED, INCONCLUSIVE = "Successful", "Failed", "Inconclusive"
# The relative p99 check needs this many requests on both sides: at 1,000 a p99 is the tenth
# slowest request, a trend; at 100 it was the slowest one, and a healthy canary's first calls
# on a freshly loaded version (20 ms against stable's 6 ms on a loaded machine) rolled it back.
P99_SAMPLES = 1000


@dataclass(frozen=True)
class PodScrape:
    """One running pod's figures for one model this round (versions None: no answer)."""

    uid: str
    restarts: int
    versions: Mapping[int, VersionFigures] | None


@dataclass(frozen=True)
class PodBaseline:
    restarts: int
    versions: Mapping[int, VersionFigures]


Baseline = Mapping[str, PodBaseline]  # pod UID -> its counters when the window began


def unanswered(pods: Sequence[PodScrape]) -> int:
    return sum(1 for p in pods if p.versions is None)


def take_baseline(pods: Sequence[PodScrape]) -> Baseline | None:
    """The window's start; None when a pod did not answer (no window starts on part)."""
    if unanswered(pods):
        return None
    return {p.uid: PodBaseline(p.restarts, p.versions or {}) for p in pods}


def window(baseline: Baseline, pods: Sequence[PodScrape], version: int) -> VersionFigures | None:
    """`version`'s figures since `baseline`, summed over `pods`; None if a pod did not answer."""
    total = VersionFigures()
    for pod in pods:
        if pod.versions is None:
            return None
        now = pod.versions.get(version, VersionFigures())
        before = baseline.get(pod.uid)
        since = None
        if before is not None and before.restarts == pod.restarts:
            since = now.minus(before.versions.get(version, VersionFigures()))
        total.add(since if since is not None else now)
    return total


@dataclass(frozen=True)
class Side:
    """One version's figures over the window, as status shows them."""

    requests: int
    faults: int
    client_errors: int
    fault_ratio: float | None
    latency_p99_ms: float | None

    @classmethod
    def of(cls, figures: VersionFigures) -> Side:
        p99 = figures.latency_quantile_ms(0.99)
        return cls(
            requests=int(figures.requests),
            faults=int(figures.faults),
            client_errors=int(figures.client_errors),
            fault_ratio=round(figures.fault_ratio, 6) if figures.requests else None,
            latency_p99_ms=round(p99, 3) if p99 is not None and not math.isinf(p99) else None,
        )

    def text(self) -> str:
        ratio = f"{self.fault_ratio:.4f}" if self.fault_ratio is not None else "-"
        p99 = f"{self.latency_p99_ms:g} ms" if self.latency_p99_ms is not None else "-"
        return (
            f"{self.requests} requests, {self.faults} server faults (ratio {ratio}), "
            f"{self.client_errors} client errors, p99 {p99}"
        )


@dataclass(frozen=True)
class Verdict:
    result: str  # SUCCESSFUL | FAILED | INCONCLUSIVE
    reason: str  # why (the failed checks, or what it waits for)
    canary: Side | None = None
    stable: Side | None = None

    def figures(self) -> str:
        """Canary and stable side by side, for messages and events."""
        if self.canary is None or self.stable is None:
            return ""
        return f"canary: {self.canary.text()}; stable: {self.stable.text()}"


def judge(analysis: Analysis, canary: VersionFigures, stable: VersionFigures) -> Verdict:
    """Compare the canary with stable over one window.

    Failed when (with at least minRequests canary requests) any check fails:
      - relative: canary fault ratio > stable's + maxFaultRatioIncrease; canary p99 >
        stable p99 * maxLatencyP99Factor (and by more than latencyToleranceMs). Stable's
        figures are the reference only with minRequests of its own in the window; else the
        fault ratio is held to the margin alone. p99s are compared only with at least
        max(minRequests, P99_SAMPLES) requests on both sides.
      - absolute (when set): fault ratio > maxErrorRatio; p99 > maxLatencyP99Ms.
    Inconclusive with fewer than minRequests canary requests.
    """
    c, s = Side.of(canary), Side.of(stable)
    if c.requests < analysis.min_requests:
        return Verdict(
            INCONCLUSIVE,
            f"waiting for traffic: {c.requests} of {analysis.min_requests} requests",
            c,
            s,
        )
    failures = []
    stable_ok = s.requests >= analysis.min_requests
    c_ratio = canary.fault_ratio
    s_ratio = stable.fault_ratio if stable_ok else 0.0
    if analysis.max_fault_ratio_increase is not None:
        if c_ratio > s_ratio + analysis.max_fault_ratio_increase:
            failures.append(
                f"server-fault ratio {c_ratio:.4f} > stable {s_ratio:.4f} + "
                f"{analysis.max_fault_ratio_increase:g}"
            )
    c_p99, s_p99 = c.latency_p99_ms, s.latency_p99_ms
    # Below P99_SAMPLES a p99 is one of the few slowest requests: a hiccup, not a trend.
    sampled = min(c.requests, s.requests) >= max(analysis.min_requests, P99_SAMPLES)
    if analysis.max_latency_p99_factor is not None and sampled and c_p99 and s_p99:
        limit = max(s_p99 * analysis.max_latency_p99_factor, s_p99 + analysis.latency_tolerance_ms)
        if c_p99 > limit:
            failures.append(
                f"p99 {c_p99:g} ms > stable {s_p99:g} ms x {analysis.max_latency_p99_factor:g}"
            )
    if analysis.max_error_ratio is not None and c_ratio > analysis.max_error_ratio:
        failures.append(f"server-fault ratio {c_ratio:.4f} > {analysis.max_error_ratio:g}")
    if analysis.max_latency_p99_ms is not None and c_p99 is not None:
        if c_p99 > analysis.max_latency_p99_ms:
            failures.append(f"p99 {c_p99:g} ms > {analysis.max_latency_p99_ms:g} ms")
    if failures:
        return Verdict(FAILED, "; ".join(failures), c, s)
    note = "" if stable_ok else " (stable had too few requests to compare with)"
    return Verdict(SUCCESSFUL, "passed" + note, c, s)
