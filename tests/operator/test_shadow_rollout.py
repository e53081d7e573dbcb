"""Rollout shadow steps (pure): spec, split file, the shadow figures' parser, the verdicts,
and the state machine rolling back before any real traffic moves."""

from __future__ import annotations

import json

import pytest
from tfmodel_operator import analysis, rollout
from tfmodel_operator.analysis import PodScrape
from tfmodel_operator.model_config import render_traffic_split
from tfmodel_operator.promtext import ShadowFigures, VersionFigures, shadow_figures
from tfmodel_operator.spec import SpecError, parse_spec

from tests.operator.test_rollout import BOUNDS, at

DIFF_BOUNDS = tuple(m * 10.0**e for e in range(-9, 3) for m in (1, 2, 5)) + (float("inf"),)


def spec_with(steps: list[dict], shadow: dict | None = None, stable: int = 1, **model_extra):
    raw = {
        "models": [
            {
                "name": "lin",
                "basePath": "/models/lin",
                "versionPolicy": {"specific": {"versions": [stable]}},
                "versionLabels": {"stable": stable},
                "rollout": {
                    "steps": steps,
                    "analysis": {"minRequests": 20, "shadow": shadow or {}},
                },
                **model_extra,
            }
        ],
        "storage": {"hostPath": {"path": "/srv"}},
    }
    return parse_spec(raw)


STEPS = [
    {"shadowPercent": 50, "pauseSeconds": 30},
    {"trafficPercent": 20, "pauseSeconds": 30},
]
CHECKS = {"minTop1Agreement": 0.95, "maxAbsDiff": 0.01}


def lin(stable: int, steps=STEPS, shadow=CHECKS):
    return spec_with(steps, shadow, stable).models[0]


class ShadowFleet:
    """Pods with cumulative shadow counters for the pair (1, 2), like the servers' /metrics."""

    def __init__(self, pods: int = 2) -> None:
        self.uids = [f"pod-{i}" for i in range(pods)]
        self.figures = {u: ShadowFigures() for u in self.uids}
        self.turn = 0

    def shadow(
        self,
        n: int,
        failures: int = 0,
        diff: float = 0.0,
        rows: int = 4,
        agree: int = 4,
        latency_us: float = 800,
        stable_latency_us: float = 800,
    ) -> None:
        for i in range(n):
            fig = self.figures[self.uids[self.turn % len(self.uids)]]
            self.turn += 1
            fig.canary.requests += 1
            failed = i < failures
            fig.canary.faults += 1 if failed else 0
            for side, us in ((fig.canary, latency_us), (fig.stable, stable_latency_us)):
                for bound in BOUNDS:
                    side.buckets[bound] = side.buckets.get(bound, 0.0) + (us <= bound)
            if failed:
                continue
            for bound in DIFF_BOUNDS:
                fig.abs_diff[bound] = fig.abs_diff.get(bound, 0.0) + (diff < bound)
            fig.top1_rows += rows
            fig.top1_agree += agree

    def seen(self) -> rollout.CanaryObservation:
        pods = []
        for uid in self.uids:
            copy = ShadowFigures()
            copy.add(self.figures[uid])
            pods.append(PodScrape(uid, 0, {1: VersionFigures()}, {(1, 2): copy}))
        return rollout.CanaryObservation(True, tuple(pods))


def in_shadow_step(fleet: ShadowFleet, moved):
    state, _ = rollout.advance(lin(1), None, None, at(0))
    state, _ = rollout.advance(moved, state, None, at(1))
    state, event = rollout.advance(moved, state, fleet.seen(), at(2))
    assert (state.phase, state.step, state.shadow, state.weight) == ("Progressing", 0, 50, 0)
    assert event.message == "lin: step 1/2: shadow 50% of stable's requests on 2"
    served = rollout.effective_model(moved, state)
    # Real traffic stays on stable: the canary gets 0 %, the shadow share 50 %.
    assert served.canary_traffic_percent == 0 and served.shadow_traffic_percent == 50
    tfmodel = spec_with(STEPS, CHECKS, 2)
    split = json.loads(render_traffic_split(rollout.effective_spec(tfmodel, {"lin": state})))
    assert split == {"models": {"lin": {"canaryPercent": 0, "shadowPercent": 50}}}
    return state


def test_an_agreeing_canary_passes_the_shadow_step_then_gets_real_traffic():
    fleet, moved = ShadowFleet(), lin(2)
    state = in_shadow_step(fleet, moved)
    fleet.shadow(30)
    state, event = rollout.advance(moved, state, fleet.seen(), at(10))
    assert (state.result, event) == ("Successful", None)
    assert state.agreement == analysis.Agreement(30, 0, 120, 1.0)
    assert rollout.summary([state]) == "lin:Progressing@shadow50%"
    state, event = rollout.advance(moved, state, fleet.seen(), at(40))
    assert (state.step, state.weight, state.shadow) == (1, 20, 0)
    assert (
        "shadow canary: 30 requests" in event.message and "top-1 agreement 1.0000" in event.message
    )
    served = rollout.effective_model(moved, state)
    assert served.canary_traffic_percent == 20 and served.shadow_traffic_percent is None


def test_a_disagreeing_canary_rolls_back_in_the_shadow_step():
    fleet, moved = ShadowFleet(), lin(2)
    state = in_shadow_step(fleet, moved)
    fleet.shadow(30, diff=3.0, agree=0)
    state, event = rollout.advance(moved, state, fleet.seen(), at(10))  # mid-pause: at once
    assert (state.phase, state.stable, state.weight, state.shadow) == ("RolledBack", 1, 0, 0)
    assert event.type == "Warning" and event.reason == "RolloutRolledBack"
    assert "failed the shadow analysis: top-1 agreement 0.0000 < 0.95" in state.message
    assert "1.0000 of the answers differ from stable's by more than 0.01" in state.message
    served = rollout.effective_model(moved, state)
    assert dict(served.labels) == {"stable": 1} and served.canary_traffic_percent is None
    assert served.shadow_traffic_percent is None
    # Status keeps the figures, and reads back.
    status = state.to_status()
    assert status["analysis"]["agreement"] == {
        "compared": 30,
        "absDiffOver": 30,
        "top1Rows": 120,
        "top1Agreement": 0.0,
    }
    assert rollout.RolloutState.from_status(status) == state


def test_failing_shadow_runs_roll_back():
    fleet, moved = ShadowFleet(), lin(2, shadow={})
    state = in_shadow_step(fleet, moved)
    fleet.shadow(30, failures=30)
    state, _ = rollout.advance(moved, state, fleet.seen(), at(10))
    assert state.phase == "RolledBack"
    assert "shadow failure ratio 1.0000 > 0.01" in state.message


def test_a_slow_canary_rolls_back_on_the_shadow_latency():
    fleet, moved = ShadowFleet(), lin(2, shadow={})
    state = in_shadow_step(fleet, moved)
    fleet.shadow(1000, latency_us=50_000, stable_latency_us=800)
    state, _ = rollout.advance(moved, state, fleet.seen(), at(10))
    assert state.phase == "RolledBack" and "shadow run p99" in state.message


def test_small_differences_within_the_limits_pass():
    fleet, moved = ShadowFleet(), lin(2, shadow={**CHECKS, "maxAbsDiffRatio": 0.2})
    state = in_shadow_step(fleet, moved)
    fleet.shadow(25, diff=0.003, agree=4)
    fleet.shadow(5, diff=0.5, agree=3)  # 5 of 30 beyond 0.01: under 0.2; top-1 0.96
    state, _ = rollout.advance(moved, state, fleet.seen(), at(40))
    assert state.step == 1, state.message


def test_too_few_shadow_requests_wait_then_roll_back_at_the_deadline():
    fleet, moved = ShadowFleet(), lin(2)
    state = in_shadow_step(fleet, moved)
    fleet.shadow(5)
    state, event = rollout.advance(moved, state, fleet.seen(), at(40))
    assert (state.phase, state.result, event) == ("Progressing", "Inconclusive", None)
    assert "waiting for shadow traffic: 5 of 20 requests" in state.message
    state, event = rollout.advance(moved, state, fleet.seen(), at(2 + 30 + 600))
    assert state.phase == "RolledBack" and event.reason == "RolloutRolledBack"


def test_the_window_starts_at_the_step():
    """Earlier disagreeing runs of the same pair (a rolled-back try) do not count."""
    fleet, moved = ShadowFleet(), lin(2)
    fleet.shadow(50, diff=9.0, agree=0)
    state = in_shadow_step(fleet, moved)
    fleet.shadow(30)
    state, _ = rollout.advance(moved, state, fleet.seen(), at(10))
    assert state.result == "Successful" and state.agreement.compared == 30


@pytest.mark.parametrize(
    ("steps", "model_extra", "message"),
    [
        ([{"trafficPercent": 10, "shadowPercent": 10}], {}, "exactly one of trafficPercent"),
        ([{"pauseSeconds": 10}], {}, "exactly one of trafficPercent"),
        ([{"shadowPercent": 0}], {}, "shadowPercent 0 is not in 1..100"),
        (
            [{"trafficPercent": 10}, {"shadowPercent": 10}],
            {},
            "shadow steps (shadowPercent) must come before",
        ),
        ([{"shadowPercent": 10}], {"shadowTrafficPercent": 5}, "a rollout sets it itself"),
    ],
)
def test_shadow_spec_errors(steps, model_extra, message):
    with pytest.raises(
        SpecError, match="model lin: .*" + message.replace("(", r"\(").replace(")", r"\)")
    ):
        spec_with(steps, **model_extra)


def test_shadow_analysis_fields_and_bounds():
    parsed = lin(1, shadow={"minTop1Agreement": 0.9, "maxAbsDiff": 0.5, "maxAbsDiffRatio": 0.1})
    assert parsed.rollout is not None
    got = parsed.rollout.analysis.shadow
    assert (got.min_top1_agreement, got.max_abs_diff, got.max_abs_diff_ratio) == (0.9, 0.5, 0.1)
    assert lin(1, shadow={}).rollout.analysis.shadow.min_top1_agreement is None
    with pytest.raises(SpecError, match="minTop1Agreement 1.5 is not in 0..1"):
        lin(1, shadow={"minTop1Agreement": 1.5})


def test_a_static_shadow_share_goes_to_the_split_file():
    raw = {
        "models": [
            {
                "name": "m",
                "basePath": "/models/m",
                "versionPolicy": {"specific": {"versions": [1, 2]}},
                "versionLabels": {"stable": 1, "canary": 2},
                "shadowTrafficPercent": 10,
            }
        ],
        "storage": {"hostPath": {"path": "/srv"}},
    }
    split = json.loads(render_traffic_split(parse_spec(raw)))
    assert split == {"models": {"m": {"canaryPercent": 0, "shadowPercent": 10}}}
    raw["models"][0]["versionLabels"] = {"stable": 1}
    with pytest.raises(SpecError, match="shadowTrafficPercent needs both"):
        parse_spec(raw)


SCRAPE = """\
# TYPE :tfmodel:shadow_request_count counter
:tfmodel:shadow_request_count_total{model_name="lin",stable_version="1",canary_version="2",status="OK"} 8.0
:tfmodel:shadow_request_count_total{model_name="lin",stable_version="1",canary_version="2",status="INVALID_ARGUMENT"} 2.0
:tfmodel:shadow_request_count_total{model_name="other",stable_version="1",canary_version="2",status="OK"} 99.0
# TYPE :tfmodel:shadow_latency histogram
:tfmodel:shadow_latency_bucket{model_name="lin",stable_version="1",canary_version="2",side="canary",le="1000"} 7.0
:tfmodel:shadow_latency_bucket{model_name="lin",stable_version="1",canary_version="2",side="canary",le="+Inf"} 8.0
:tfmodel:shadow_latency_bucket{model_name="lin",stable_version="1",canary_version="2",side="stable",le="1000"} 10.0
:tfmodel:shadow_latency_bucket{model_name="lin",stable_version="1",canary_version="2",side="stable",le="+Inf"} 10.0
# TYPE :tfmodel:shadow_abs_diff histogram
:tfmodel:shadow_abs_diff_bucket{model_name="lin",stable_version="1",canary_version="2",le="1e-09"} 5.0
:tfmodel:shadow_abs_diff_bucket{model_name="lin",stable_version="1",canary_version="2",le="0.01"} 6.0
:tfmodel:shadow_abs_diff_bucket{model_name="lin",stable_version="1",canary_version="2",le="0.02"} 7.0
:tfmodel:shadow_abs_diff_bucket{model_name="lin",stable_version="1",canary_version="2",le="+Inf"} 8.0
# TYPE :tfmodel:shadow_top1_rows counter
:tfmodel:shadow_top1_rows_total{model_name="lin",stable_version="1",canary_version="2"} 16.0
# TYPE :tfmodel:shadow_top1_agree counter
:tfmodel:shadow_top1_agree_total{model_name="lin",stable_version="1",canary_version="2"} 12.0
"""


def test_shadow_figures_from_a_scrape():
    figures = shadow_figures(SCRAPE, "lin")
    assert list(figures) == [(1, 2)]
    got = figures[(1, 2)]
    # Every non-OK shadow run is a failure, INVALID_ARGUMENT included.
    assert (got.canary.requests, got.canary.faults) == (10.0, 2.0)
    assert got.compared == 8.0 and (got.top1_rows, got.top1_agree) == (16.0, 12.0)
    assert got.abs_diff_over(0.01) == 2.0  # 0.01 is a bound: the runs below it are within
    assert got.abs_diff_over(0.015) == 2.0  # rounded down to the grid
    assert got.abs_diff_over(1e-10) == 8.0
    assert got.stable.buckets == {1000.0: 10.0, float("inf"): 10.0}
    later = shadow_figures(SCRAPE.replace("} 8.0", "} 9.0"), "lin")[(1, 2)]
    assert later.minus(got) is not None
    assert got.minus(later) is None  # counters went down: a reset
