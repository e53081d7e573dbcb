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
from dataclasses import dataclass, field

from .promtext import ShadowFigures, VersionFigures
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
    # Shadow runs by (stable, canary) pair; read from the same scrape as `versions`.
    shadow: Mapping[tuple[int, int], ShadowFigures] = field(default_factory=dict)


@dataclass(frozen=True)
class PodBaseline:
    restarts: int
    versions: Mapping[int, VersionFigures]
    shadow: Mapping[tuple[int, int], ShadowFigures] = field(default_factory=dict)


Baseline = Mapping[str, PodBaseline]  # pod UID -> its counters when the window began


def unanswered(pods: Sequence[PodScrape]) -> int:
    return sum(1 for p in pods if p.versions is None)


def take_baseline(pods: Sequence[PodScrape]) -> Baseline | None:
    """The window's start; None when a pod did not answer (no window starts on part)."""
    if unanswered(pods):
        return None
    return {p.uid: PodBaseline(p.restarts, p.versions or {}, p.shadow) for p in pods}


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


def shadow_window(
    baseline: Baseline, pods: Sequence[PodScrape], stable: int, canary: int
) -> ShadowFigures | None:
    """The (stable, canary) pair's shadow runs since `baseline`, summed over `pods`, by the
    same rules as `window`; None if a pod did not answer."""
    total = ShadowFigures()
    pair = (stable, canary)
    for pod in pods:
        if pod.versions is None:
            return None
        now = pod.shadow.get(pair, ShadowFigures())
        before = baseline.get(pod.uid)
        since = None
        if before is not None and before.restarts == pod.restarts:
            since = now.minus(before.shadow.get(pair, ShadowFigures()))
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
class Agreement:
    """A shadow window's comparison of the canary's answers with stable's, as status shows it."""

    compared: int
    abs_diff_over: int | None  # compared runs beyond maxAbsDiff (None: that check is off)
    top1_rows: int
    top1_agreement: float | None  # None: no 2-D score rows compared

    @classmethod
    def of(cls, figures: ShadowFigures, max_abs_diff: float | None) -> Agreement:
        rows = int(figures.top1_rows)
        return cls(
            compared=int(figures.compared),
            abs_diff_over=(
                int(figures.abs_diff_over(max_abs_diff)) if max_abs_diff is not None else None
            ),
            top1_rows=rows,
            top1_agreement=round(figures.top1_agree / rows, 6) if rows else None,
        )

    def text(self) -> str:
        parts = [f"{self.compared} answers compared"]
        if self.abs_diff_over is not None:
            parts.append(f"{self.abs_diff_over} beyond maxAbsDiff")
        if self.top1_agreement is not None:
            parts.append(f"top-1 agreement {self.top1_agreement:.4f} over {self.top1_rows} rows")
        return ", ".join(parts)


@dataclass(frozen=True)
class Verdict:
    result: str  # SUCCESSFUL | FAILED | INCONCLUSIVE
    reason: str  # why (the failed checks, or what it waits for)
    canary: Side | None = None
    stable: Side | None = None
    agreement: Agreement | None = None  # shadow steps

    def figures(self) -> str:
        """Canary and stable side by side, for messages and events."""
        if self.canary is None or self.stable is None:
            return ""
        text = f"canary: {self.canary.text()}; stable: {self.stable.text()}"
        if self.agreement is not None:
            text = f"shadow {text}; {self.agreement.text()}"
        return text


def judge_shadow(analysis: Analysis, figures: ShadowFigures) -> Verdict:
    """A shadow step: the canary's shadow runs against stable's answers to the same requests.

    Inconclusive until the window has minRequests shadow runs. Failed when any check fails:
      - faults: every non-OK shadow run counts (stable answered the same request), held to
        maxFaultRatioIncrease (stable's ratio on these requests is 0) and maxErrorRatio;
      - latency: the canary's run-time p99 against stable's on the same requests, as in
        `judge` (maxLatencyP99Factor with latencyToleranceMs, maxLatencyP99Ms);
      - agreement (analysis.shadow): top-1 agreement below minTop1Agreement (over the rows
        of 2-D score outputs); more than maxAbsDiffRatio of the compared runs differing by
        more than maxAbsDiff.
    """
    shadow = analysis.shadow
    canary = figures.canary
    stable = VersionFigures(requests=canary.requests, buckets=dict(figures.stable.buckets))
    agreement = Agreement.of(figures, shadow.max_abs_diff)
    c, s = Side.of(canary), Side.of(stable)
    if c.requests < analysis.min_requests:
        reason = f"waiting for shadow traffic: {c.requests} of {analysis.min_requests} requests"
        return Verdict(INCONCLUSIVE, reason, c, s, agreement)
    failures = []
    ratio = canary.fault_ratio
    if analysis.max_fault_ratio_increase is not None and ratio > analysis.max_fault_ratio_increase:
        failures.append(
            f"shadow failure ratio {ratio:.4f} > {analysis.max_fault_ratio_increase:g} "
            "(every failure counts: stable answered the same requests)"
        )
    if analysis.max_error_ratio is not None and ratio > analysis.max_error_ratio:
        failures.append(f"shadow failure ratio {ratio:.4f} > {analysis.max_error_ratio:g}")
    c_p99, s_p99 = c.latency_p99_ms, s.latency_p99_ms
    sampled = c.requests >= max(analysis.min_requests, P99_SAMPLES)
    if analysis.max_latency_p99_factor is not None and sampled and c_p99 and s_p99:
        limit = max(s_p99 * analysis.max_latency_p99_factor, s_p99 + analysis.latency_tolerance_ms)
        if c_p99 > limit:
            failures.append(
                f"shadow run p99 {c_p99:g} ms > stable {s_p99:g} ms x "
                f"{analysis.max_latency_p99_factor:g}"
            )
    if analysis.max_latency_p99_ms is not None and c_p99 is not None:
        if c_p99 > analysis.max_latency_p99_ms:
            failures.append(f"shadow run p99 {c_p99:g} ms > {analysis.max_latency_p99_ms:g} ms")
    top1 = agreement.top1_agreement
    if shadow.min_top1_agreement is not None and top1 is not None:
        if top1 < shadow.min_top1_agreement:
            failures.append(f"top-1 agreement {top1:.4f} < {shadow.min_top1_agreement:g}")
    if shadow.max_abs_diff is not None and agreement.compared:
        over = (agreement.abs_diff_over or 0) / agreement.compared
        if over > shadow.max_abs_diff_ratio:
            failures.append(
                f"{over:.4f} of the answers differ from stable's by more than "
                f"{shadow.max_abs_diff:g} (allowed {shadow.max_abs_diff_ratio:g})"
            )
    if failures:
        return Verdict(FAILED, "; ".join(failures), c, s, agreement)
    return Verdict(SUCCESSFUL, "passed", c, s, agreement)


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
