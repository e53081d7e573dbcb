"""Automated canary rollouts (pure): one state per model with `rollout`, kept in status.

The user moves a model by editing one field, `versionLabels.stable: N -> M`. With a
`rollout` block the operator does not flip the label; it keeps serving N as `stable` and

  Waiting      labels M `canary`, 0% split, until every reachable pod reports M AVAILABLE
  Progressing  step by step: the servers send steps[i].trafficPercent of the stable (and
               unversioned) requests to M -- or, in a shadow step (shadowPercent), run that
               share of stable's requests on M too after the reply, and compare the answers
               (no client sees M's); each step is a window over every pod's counters
               (analysis.py) that compares M with N. A failed check rolls back at once;
               after the pause a Successful step moves on; an Inconclusive one (too few
               requests, a pod not answering) waits, up to progressDeadlineSeconds after
               the pause, then does onProgressDeadline (RollBack by default)
  Promoted     `stable` -> M, canary label and split gone (the policy then drops N if the
               spec no longer lists it)
  RolledBack   `stable` stays N, canary label and split gone; the figures are in status and
               a Warning event. It stays so until versionLabels.stable changes again.

A window's baseline (every pod's counters when the step began) is held in memory only
(AnalysisWindows): an operator that restarts mid-step starts that step's window again.

The spec is the desired end state; the state says what is served until it is reached.
"""

from __future__ import annotations

import dataclasses
import datetime
import threading
from dataclasses import dataclass
from typing import Any

from . import analysis
from .analysis import Agreement, Baseline, PodScrape, Side, Verdict
from .spec import PROMOTE, ModelSpec, TFModelSpec, VersionPolicy

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
    shadow: int = 0  # a shadow step's shadowPercent (weight is then 0)
    step_started: str | None = None  # RFC 3339; the analysis window's start
    message: str = ""
    result: str = ""  # the last analysis verdict (analysis.SUCCESSFUL, ...)
    canary: Side | None = None  # the target's figures over the window
    reference: Side | None = None  # stable's figures over the same window
    agreement: Agreement | None = None  # a shadow step's comparison of the answers
    # The window's start (per pod UID); not in status (see AnalysisWindows).
    baseline: Baseline | None = dataclasses.field(default=None, compare=False, repr=False)

    def window_key(self) -> tuple[Any, ...]:
        return (self.model, self.target, self.step, self.step_started)

    def to_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "phase": self.phase,
            "stable": self.stable,
            "step": self.step,
            "weight": self.weight,
            "message": self.message,
        }
        if self.shadow:
            out["shadow"] = self.shadow
        for key, value in (("target", self.target), ("stepStarted", self.step_started)):
            if value is not None:
                out[key] = value
        if self.result or self.canary is not None:
            figures: dict[str, Any] = {"result": self.result}
            if self.canary is not None:
                figures["canary"] = _side_status(self.canary)
            if self.reference is not None:
                figures["stable"] = _side_status(self.reference)
            if self.agreement is not None:
                figures["agreement"] = _agreement_status(self.agreement)
            out["analysis"] = figures
        return out

    @classmethod
    def from_status(cls, raw: dict[str, Any]) -> RolloutState:
        figures = raw.get("analysis") or {}
        return cls(
            model=str(raw["model"]),
            phase=str(raw["phase"]),
            stable=int(raw["stable"]),
            target=int(raw["target"]) if raw.get("target") is not None else None,
            step=int(raw.get("step", 0)),
            weight=int(raw.get("weight", 0)),
            shadow=int(raw.get("shadow", 0)),
            step_started=raw.get("stepStarted"),
            message=str(raw.get("message", "")),
            result=str(figures.get("result", "")),
            canary=_side_from(figures.get("canary")),
            reference=_side_from(figures.get("stable")),
            agreement=_agreement_from(figures.get("agreement")),
        )


def _side_status(side: Side) -> dict[str, Any]:
    out: dict[str, Any] = {
        "requests": side.requests,
        "serverFaults": side.faults,
        "clientErrors": side.client_errors,
    }
    if side.fault_ratio is not None:
        out["faultRatio"] = side.fault_ratio
    if side.latency_p99_ms is not None:
        out["latencyP99Ms"] = side.latency_p99_ms
    return out


def _agreement_status(agreement: Agreement) -> dict[str, Any]:
    out: dict[str, Any] = {"compared": agreement.compared, "top1Rows": agreement.top1_rows}
    if agreement.abs_diff_over is not None:
        out["absDiffOver"] = agreement.abs_diff_over
    if agreement.top1_agreement is not None:
        out["top1Agreement"] = agreement.top1_agreement
    return out


def _agreement_from(raw: dict[str, Any] | None) -> Agreement | None:
    if not raw:
        return None
    over = raw.get("absDiffOver")
    return Agreement(
        compared=int(raw.get("compared", 0)),
        abs_diff_over=int(over) if over is not None else None,
        top1_rows=int(raw.get("top1Rows", 0)),
        top1_agreement=raw.get("top1Agreement"),
    )


def _side_from(raw: dict[str, Any] | None) -> Side | None:
    if not raw:
        return None
    return Side(
        requests=int(raw.get("requests", 0)),
        faults=int(raw.get("serverFaults", 0)),
        client_errors=int(raw.get("clientErrors", 0)),
        fault_ratio=raw.get("faultRatio"),
        latency_p99_ms=raw.get("latencyP99Ms"),
    )


@dataclass(frozen=True)
class CanaryObservation:
    """What the pods said about the rollout's model this round."""

    available_everywhere: (
        bool  # every reachable pod reports the target AVAILABLE (none unreachable)
    )
    pods: tuple[PodScrape, ...] = ()  # every running pod's figures for the model


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
    pods = observation.pods if observation is not None else ()
    if state.phase == WAITING:
        if observation is None or not observation.available_everywhere:
            return state, None
        baseline = analysis.take_baseline(pods)
        if baseline is None:
            return dataclasses.replace(state, message=_no_metrics(state, pods)), None
        nxt = _enter_step(model, state, 0, baseline, now)
        return nxt, Event("Normal", "RolloutProgressing", f"{model.name}: {nxt.message}")
    return _progress(model, state, pods, now)


def _start(model: ModelSpec, stable: int, target: int) -> tuple[RolloutState, Event]:
    state = RolloutState(
        model.name,
        WAITING,
        stable=stable,
        target=target,
        message=f"canary {target} loading on every pod; stable {stable} serves all traffic",
    )
    return state, Event("Normal", "RolloutStarted", f"{model.name}: {stable} -> {target}")


def _no_metrics(state: RolloutState, pods: tuple[PodScrape, ...]) -> str:
    return (
        f"waiting for metrics: {analysis.unanswered(pods)} of {len(pods)} pods did not "
        f"answer (canary {state.target})"
    )


def _step_text(model: ModelSpec, state: RolloutState) -> str:
    assert model.rollout is not None
    where = f"step {state.step + 1}/{len(model.rollout.steps)}"
    if state.shadow:
        return f"{where}: shadow {state.shadow}% of stable's requests on {state.target}"
    return f"{where}: {state.weight}% to {state.target}"


def _enter_step(
    model: ModelSpec, state: RolloutState, step: int, baseline: Baseline, now: datetime.datetime
) -> RolloutState:
    """Step `step` starts now: a new window from `baseline`."""
    assert model.rollout is not None
    nxt = dataclasses.replace(
        state,
        phase=PROGRESSING,
        step=step,
        weight=model.rollout.steps[step].traffic_percent,
        shadow=model.rollout.steps[step].shadow_percent,
        step_started=_stamp(now),
        baseline=baseline,
    )
    return dataclasses.replace(nxt, message=_step_text(model, nxt))


def _progress(
    model: ModelSpec, state: RolloutState, pods: tuple[PodScrape, ...], now: datetime.datetime
) -> tuple[RolloutState, Event | None]:
    assert model.rollout is not None and state.target is not None
    spec = model.rollout.analysis
    started = _parse(state.step_started) or now
    pause = model.rollout.steps[state.step].pause_seconds
    overdue = (now - started).total_seconds() >= pause + spec.progress_deadline_seconds
    if state.baseline is None:
        # No window for this step in memory (the operator restarted): start it again.
        baseline = analysis.take_baseline(pods)
        if baseline is not None:
            restarted = _enter_step(model, state, state.step, baseline, now)
            message = f"{restarted.message}; analysis window restarted (no baseline in memory)"
            return dataclasses.replace(restarted, message=message), None
        return _inconclusive(
            model, state, Verdict(analysis.INCONCLUSIVE, _no_metrics(state, pods)), overdue
        )
    verdict = _judge_step(model, state, pods)
    if verdict is None:
        verdict = Verdict(analysis.INCONCLUSIVE, _no_metrics(state, pods))
        return _inconclusive(model, state, verdict, overdue)
    measured = dataclasses.replace(
        state,
        result=verdict.result,
        canary=verdict.canary,
        reference=verdict.stable,
        agreement=verdict.agreement,
    )
    if verdict.result == analysis.FAILED:
        what = "shadow analysis" if state.shadow else "analysis"
        return _roll_back(
            model, measured, f"canary {state.target} failed the {what}: {verdict.reason}", verdict
        )
    if (now - started).total_seconds() < pause:
        message = f"{_step_text(model, state)}; pausing {pause} s; {verdict.reason}"
        return dataclasses.replace(measured, message=message), None
    if verdict.result == analysis.INCONCLUSIVE:
        return _inconclusive(model, measured, verdict, overdue)
    if state.step + 1 < len(model.rollout.steps):
        baseline = analysis.take_baseline(pods)
        assert baseline is not None  # every pod answered: the windows above exist
        nxt = _enter_step(model, measured, state.step + 1, baseline, now)
        text = f"{model.name}: {nxt.message} (step {state.step + 1} passed: {verdict.figures()})"
        return nxt, Event("Normal", "RolloutProgressing", text)
    return _promote(model, measured, f"promoted {state.target} (was {state.stable})", verdict)


def _judge_step(
    model: ModelSpec, state: RolloutState, pods: tuple[PodScrape, ...]
) -> Verdict | None:
    """This round's verdict on the step's window; None when a pod did not answer."""
    assert model.rollout is not None and state.baseline is not None and state.target is not None
    spec = model.rollout.analysis
    if state.shadow:
        figures = analysis.shadow_window(state.baseline, pods, state.stable, state.target)
        return analysis.judge_shadow(spec, figures) if figures is not None else None
    canary = analysis.window(state.baseline, pods, state.target)
    stable = analysis.window(state.baseline, pods, state.stable)
    if canary is None or stable is None:
        return None
    return analysis.judge(spec, canary, stable)


def _inconclusive(
    model: ModelSpec, state: RolloutState, verdict: Verdict, overdue: bool
) -> tuple[RolloutState, Event | None]:
    """No verdict this round: wait, or past the deadline do what the spec says."""
    assert model.rollout is not None
    spec = model.rollout.analysis
    waiting = dataclasses.replace(
        state,
        result=analysis.INCONCLUSIVE,
        message=f"{_step_text(model, state)}; {verdict.reason}",
    )
    if not overdue:
        return waiting, None
    why = (
        f"no verdict {spec.progress_deadline_seconds} s after step {state.step + 1}'s pause "
        f"(progressDeadlineSeconds): {verdict.reason}"
    )
    if spec.on_progress_deadline == PROMOTE:
        return _promote(
            model, waiting, f"promoted {state.target} (was {state.stable}): {why}", verdict
        )
    return _roll_back(model, waiting, f"canary {state.target} rolled back: {why}", verdict)


def _with_figures(message: str, verdict: Verdict) -> str:
    figures = verdict.figures()
    return f"{message} ({figures})" if figures else message


def _roll_back(
    model: ModelSpec, state: RolloutState, message: str, verdict: Verdict
) -> tuple[RolloutState, Event]:
    back = dataclasses.replace(
        state,
        phase=ROLLED_BACK,
        weight=0,
        shadow=0,
        step_started=None,
        message=message,
        baseline=None,
    )
    return back, Event(
        "Warning", "RolloutRolledBack", f"{model.name}: {_with_figures(message, verdict)}"
    )


def _promote(
    model: ModelSpec, state: RolloutState, message: str, verdict: Verdict
) -> tuple[RolloutState, Event]:
    assert state.target is not None
    done = dataclasses.replace(
        state,
        phase=PROMOTED,
        stable=state.target,
        weight=0,
        shadow=0,
        step_started=None,
        message=message,
        baseline=None,
    )
    return done, Event(
        "Normal", "RolloutPromoted", f"{model.name}: {_with_figures(message, verdict)}"
    )


class AnalysisWindows:
    """Each running step's baseline by (TFModel UID, model), in the operator's memory.

    Only a window matching the state in status is attached, so a state written by an
    earlier step (or an operator that lost its memory) gets none and restarts its window.
    The last few windows of a model are kept, not only the newest: a decision whose status
    write lost to a concurrent edit (409), or a round that reads a status older than the
    last write, must still find the window that status names; keeping only the newest
    restarted the window on every such round and a busy rollout never finished.
    """

    KEPT_PER_MODEL = 4

    def __init__(self) -> None:
        self._by: dict[tuple[str, str], dict[tuple[Any, ...], Baseline]] = {}
        self._lock = threading.Lock()

    def attach(self, owner: str, state: RolloutState) -> RolloutState:
        if state.phase != PROGRESSING:
            return state
        with self._lock:
            baseline = self._by.get((owner, state.model), {}).get(state.window_key())
        if baseline is None:
            return state
        return dataclasses.replace(state, baseline=baseline)

    def remember(self, owner: str, states: list[RolloutState]) -> None:
        """Keep the windows of `owner`'s running steps; forget models no longer running."""
        with self._lock:
            running = {s.model: s for s in states if s.phase == PROGRESSING}
            for key in [k for k in self._by if k[0] == owner and k[1] not in running]:
                del self._by[key]
            for model, state in running.items():
                if state.baseline is None:
                    continue
                kept = self._by.setdefault((owner, model), {})
                kept.pop(state.window_key(), None)
                kept[state.window_key()] = state.baseline  # newest last
                while len(kept) > self.KEPT_PER_MODEL:
                    del kept[next(iter(kept))]

    def __len__(self) -> int:
        with self._lock:
            return sum(len(kept) for kept in self._by.values())


def effective_model(model: ModelSpec, state: RolloutState | None) -> ModelSpec:
    """What the servers are told for `model` given its rollout state."""
    if model.rollout is None or state is None:
        return model
    labels = dict(model.labels)
    labels["stable"] = state.stable
    keep = {state.stable}
    percent: int | None = None
    shadow: int | None = None
    if state.phase in RUNNING and state.target is not None:
        labels["canary"] = state.target
        keep.add(state.target)
        percent = state.weight if state.phase == PROGRESSING else 0
        shadow = state.shadow if state.phase == PROGRESSING and state.shadow else None
    policy = model.policy
    if policy.kind == "specific":
        policy = VersionPolicy("specific", versions=tuple(sorted(set(policy.versions) | keep)))
    return dataclasses.replace(
        model,
        labels=tuple(sorted(labels.items())),
        policy=policy,
        canary_traffic_percent=percent,
        shadow_traffic_percent=shadow,
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
            part += f"@shadow{s.shadow}%" if s.shadow else f"@{s.weight}%"
        parts.append(part)
    return ",".join(parts)
