"""Automated canary rollouts (pure): one state per model with `rollout`, kept in status.

The user moves a model by editing one field, `versionLabels.stable: N -> M`. With a
`rollout` block the operator does not flip the label; it keeps serving N as `stable` and

  Waiting      labels M `canary`, 0% split, until every reachable pod reports M AVAILABLE
  Progressing  step by step: the servers send steps[i].trafficPercent of the stable (and
               unversioned) requests to M; after each step's pause, with at least
               minRequests on M, the analysis (error ratio, p99 latency of M summed over the
               pods' Prometheus figures) passes to the next step, or fails at once
  Promoted     `stable` -> M, canary label and split gone (the policy then drops N if the
               spec no longer lists it)
  RolledBack   `stable` stays N, canary label and split gone; the figures are in status and
               a Warning event. It stays so until versionLabels.stable changes again.

The spec is the desired end state; the state says what is served until it is reached.
"""

from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass
from typing import Any

from .promtext import VersionFigures
from .spec import ModelSpec, TFModelSpec, VersionPolicy

STABLE, WAITING, PROGRESSING, PROMOTED, ROLLED_BACK = (
    "Stable",
    "Waiting",
    "Progressing",
    "Promoted",
    "RolledBack",
)
RUNNING = (WAITING, PROGRESSING)


@dataclass(frozen=True)
class RolloutState:
    model: str
    phase: str
    stable: int  # the version served as `stable` now
    target: int | None = None  # the version being (or last) rolled out
    step: int = 0
    weight: int = 0
    step_started: str | None = None  # RFC 3339
    message: str = ""
    canary_requests: int = 0
    canary_error_ratio: float | None = None
    canary_latency_p99_ms: float | None = None
    # The canary's counters when its traffic began: earlier requests (an earlier, rolled-back
    # attempt at the same version) do not count.
    baseline_requests: int = 0
    baseline_errors: int = 0

    def to_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "phase": self.phase,
            "stable": self.stable,
            "step": self.step,
            "weight": self.weight,
            "message": self.message,
            "canaryRequests": self.canary_requests,
            "baselineRequests": self.baseline_requests,
            "baselineErrors": self.baseline_errors,
        }
        for key, value in (
            ("target", self.target),
            ("stepStarted", self.step_started),
            ("canaryErrorRatio", self.canary_error_ratio),
            ("canaryLatencyP99Ms", self.canary_latency_p99_ms),
        ):
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_status(cls, raw: dict[str, Any]) -> RolloutState:
        return cls(
            model=str(raw["model"]),
            phase=str(raw["phase"]),
            stable=int(raw["stable"]),
            target=int(raw["target"]) if raw.get("target") is not None else None,
            step=int(raw.get("step", 0)),
            weight=int(raw.get("weight", 0)),
            step_started=raw.get("stepStarted"),
            message=str(raw.get("message", "")),
            canary_requests=int(raw.get("canaryRequests", 0)),
            canary_error_ratio=raw.get("canaryErrorRatio"),
            canary_latency_p99_ms=raw.get("canaryLatencyP99Ms"),
            baseline_requests=int(raw.get("baselineRequests", 0)),
            baseline_errors=int(raw.get("baselineErrors", 0)),
        )


@dataclass(frozen=True)
class CanaryObservation:
    """What the pods said about the target version this round."""

    available_everywhere: bool  # every reachable pod reports it AVAILABLE (and none unreachable)
    figures: VersionFigures


@dataclass(frozen=True)
class Event:
    type: str  # "Normal" | "Warning"
    reason: str
    message: str


def _stamp(now: datetime.datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(stamp: str | None) -> datetime.datetime | None:
    if not stamp:
        return None
    return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc
    )


def advance(
    model: ModelSpec,
    state: RolloutState | None,
    observation: CanaryObservation | None,
    now: datetime.datetime,
) -> tuple[RolloutState | None, Event | None]:
    """The next state of `model`'s rollout, and the event to post for the change (if any)."""
    if model.rollout is None:
        return None, None
    wanted = dict(model.labels)["stable"]
    if state is None:
        return RolloutState(model.name, STABLE, stable=wanted), None
    if state.phase in (STABLE, PROMOTED):
        if wanted == state.stable:
            return state, None
        return _start(model, state.stable, wanted)
    if state.phase == ROLLED_BACK:
        if wanted == state.target:
            return state, None
        if wanted == state.stable:
            return RolloutState(
                model.name, STABLE, stable=wanted, message="rollback accepted"
            ), None
        return _start(model, state.stable, wanted)
    # Waiting or Progressing
    if wanted != state.target:
        if wanted == state.stable:
            done = RolloutState(model.name, STABLE, stable=wanted, message="rollout aborted")
            return done, Event("Normal", "RolloutAborted", f"{model.name}: stable back to {wanted}")
        return _start(model, state.stable, wanted)
    if state.phase == WAITING:
        if observation is None or not observation.available_everywhere:
            return state, None
        step = model.rollout.steps[0]
        nxt = dataclasses.replace(
            state,
            phase=PROGRESSING,
            step=0,
            weight=step.traffic_percent,
            step_started=_stamp(now),
            baseline_requests=int(observation.figures.requests),
            baseline_errors=int(observation.figures.errors),
            message=f"step 1/{len(model.rollout.steps)}: {step.traffic_percent}% to {state.target}",
        )
        return nxt, Event("Normal", "RolloutProgressing", f"{model.name}: {nxt.message}")
    return _progress(model, state, observation, now)


def _start(model: ModelSpec, stable: int, target: int) -> tuple[RolloutState, Event]:
    state = RolloutState(
        model.name,
        WAITING,
        stable=stable,
        target=target,
        message=f"canary {target} loading on every pod; stable {stable} serves all traffic",
    )
    return state, Event("Normal", "RolloutStarted", f"{model.name}: {stable} -> {target}")


def _progress(
    model: ModelSpec,
    state: RolloutState,
    observation: CanaryObservation | None,
    now: datetime.datetime,
) -> tuple[RolloutState, Event | None]:
    assert model.rollout is not None and state.target is not None
    analysis = model.rollout.analysis
    total = observation.figures if observation is not None else VersionFigures()
    figures = VersionFigures(
        requests=total.requests - state.baseline_requests,
        errors=total.errors - state.baseline_errors,
        buckets=total.buckets,  # latency: since the pods started
    )
    if figures.requests < 0 or figures.errors < 0:  # counters reset (pods restarted)
        figures = total
    p99 = figures.latency_quantile_ms(0.99)
    measured = dataclasses.replace(
        state,
        canary_requests=int(figures.requests),
        canary_error_ratio=round(figures.error_ratio, 6) if figures.requests else None,
        canary_latency_p99_ms=p99 if p99 is not None and p99 != float("inf") else None,
    )
    enough = figures.requests >= analysis.min_requests
    failures = []
    if enough and analysis.max_error_ratio is not None:
        if figures.error_ratio > analysis.max_error_ratio:
            failures.append(
                f"error ratio {figures.error_ratio:.4f} > {analysis.max_error_ratio} "
                f"({int(figures.errors)} of {int(figures.requests)} requests)"
            )
    if enough and analysis.max_latency_p99_ms is not None and p99 is not None:
        if p99 > analysis.max_latency_p99_ms:
            failures.append(f"p99 latency {p99:g} ms > {analysis.max_latency_p99_ms:g} ms")
    if failures:
        message = f"canary {state.target} failed the analysis: {'; '.join(failures)}"
        back = dataclasses.replace(
            measured, phase=ROLLED_BACK, weight=0, step_started=None, message=message
        )
        return back, Event("Warning", "RolloutRolledBack", f"{model.name}: {message}")
    started = _parse(state.step_started) or now
    pause = model.rollout.steps[state.step].pause_seconds
    if (now - started).total_seconds() < pause:
        return measured, None
    if not enough:
        message = (
            f"step {state.step + 1}/{len(model.rollout.steps)}: waiting for "
            f"{analysis.min_requests} requests on {state.target} (have {int(figures.requests)})"
        )
        return dataclasses.replace(measured, message=message), None
    if state.step + 1 < len(model.rollout.steps):
        step_no = state.step + 1
        step = model.rollout.steps[step_no]
        nxt = dataclasses.replace(
            measured,
            step=step_no,
            weight=step.traffic_percent,
            step_started=_stamp(now),
            message=(
                f"step {step_no + 1}/{len(model.rollout.steps)}: "
                f"{step.traffic_percent}% to {state.target}"
            ),
        )
        return nxt, Event("Normal", "RolloutProgressing", f"{model.name}: {nxt.message}")
    done = dataclasses.replace(
        measured,
        phase=PROMOTED,
        stable=state.target,
        weight=0,
        step_started=None,
        message=f"promoted {state.target} (was {state.stable})",
    )
    return done, Event("Normal", "RolloutPromoted", f"{model.name}: {done.message}")


def effective_model(model: ModelSpec, state: RolloutState | None) -> ModelSpec:
    """What the servers are told for `model` given its rollout state."""
    if model.rollout is None or state is None:
        return model
    labels = dict(model.labels)
    labels["stable"] = state.stable
    keep = {state.stable}
    percent: int | None = None
    if state.phase in RUNNING and state.target is not None:
        labels["canary"] = state.target
        keep.add(state.target)
        percent = state.weight if state.phase == PROGRESSING else 0
    policy = model.policy
    if policy.kind == "specific":
        policy = VersionPolicy("specific", versions=tuple(sorted(set(policy.versions) | keep)))
    return dataclasses.replace(
        model,
        labels=tuple(sorted(labels.items())),
        policy=policy,
        canary_traffic_percent=percent,
    )


def effective_spec(spec: TFModelSpec, states: dict[str, RolloutState]) -> TFModelSpec:
    models = tuple(effective_model(m, states.get(m.name)) for m in spec.models)
    return dataclasses.replace(spec, models=models)


def summary(states: list[RolloutState]) -> str:
    """For the printer column: `model:Phase[@weight%]` per model with a rollout."""
    parts = []
    for s in states:
        part = f"{s.model}:{s.phase}"
        if s.phase == PROGRESSING:
            part += f"@{s.weight}%"
        parts.append(part)
    return ",".join(parts)
