"""The canary rollout state machine, its analysis and the Prometheus figures it reads (pure).

A small simulated fleet (Fleet) keeps per-pod cumulative counters the way the servers do;
each round the rollout sees every pod's figures, as reconcile hands them over.
"""

from __future__ import annotations

import datetime
import itertools

import pytest
from tfmodel_operator import analysis, rollout
from tfmodel_operator.analysis import PodScrape
from tfmodel_operator.promtext import (
    VersionFigures,
    is_server_fault,
    model_figures,
    summed,
    version_figures,
)
from tfmodel_operator.spec import Analysis, SpecError, parse_spec

T0 = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def model_spec(stable: int = 1, analysis_spec: dict | None = None, **rollout_extra):
    raw = {
        "models": [
            {
                "name": "lin",
                "basePath": "/models/lin",
                "versionPolicy": {"specific": {"versions": [stable]}},
                "versionLabels": {"stable": stable},
                "rollout": {
                    "steps": [
                        {"trafficPercent": 10, "pauseSeconds": 30},
                        {"trafficPercent": 50, "pauseSeconds": 30},
                    ],
                    "analysis": {"minRequests": 20, **(analysis_spec or {})},
                    **rollout_extra,
                },
            }
        ],
        "storage": {"hostPath": {"path": "/srv"}},
    }
    return parse_spec(raw).models[0]


BOUNDS = (1000.0, 2000.0, 5000.0, 10_000.0, 50_000.0, 100_000.0, float("inf"))


class Fleet:
    """Pods with cumulative per-version counters, like the servers' /metrics."""

    def __init__(self, pods: int = 2) -> None:
        self.uids = [f"pod-{i}" for i in range(pods)]
        self.restarts = dict.fromkeys(self.uids, 0)
        self.counts: dict[str, dict[int, VersionFigures]] = {u: {} for u in self.uids}
        self.silent: set[str] = set()
        self._next = itertools.cycle(range(10**9))

    def serve(
        self, version: int, n: int, faults: int = 0, client: int = 0, latency_us: float = 800
    ) -> None:
        """n requests on `version` spread over the pods; `faults` and `client` of them failed."""
        for i in range(n):
            uid = self.uids[next(self._next) % len(self.uids)]
            fig = self.counts[uid].setdefault(version, VersionFigures())
            fig.requests += 1
            fig.faults += 1 if i < faults else 0
            fig.client_errors += 1 if faults <= i < faults + client else 0
            for bound in BOUNDS:
                if latency_us <= bound:
                    fig.buckets[bound] = fig.buckets.get(bound, 0.0) + 1
            for bound in BOUNDS:
                fig.buckets.setdefault(bound, 0.0)

    def restart(self, uid: str) -> None:
        self.restarts[uid] += 1
        self.counts[uid] = {}

    def add_pod(self, uid: str) -> None:
        self.uids.append(uid)
        self.restarts[uid] = 0
        self.counts[uid] = {}

    def seen(self, available: bool = True) -> rollout.CanaryObservation:
        pods = tuple(
            PodScrape(
                uid,
                self.restarts[uid],
                None if uid in self.silent else {v: _copy(f) for v, f in self.counts[uid].items()},
            )
            for uid in self.uids
        )
        return rollout.CanaryObservation(available, pods)


def _copy(figures: VersionFigures) -> VersionFigures:
    out = VersionFigures()
    out.add(figures)
    return out


def started(fleet: Fleet, spec=None, t: float = 2):
    """A rollout 1 -> 2 that has just entered step 1 (its window begins now)."""
    state, _ = rollout.advance(model_spec(1), None, None, at(0))
    moved = spec or model_spec(2)
    state, event = rollout.advance(moved, state, None, at(1))
    assert event.reason == "RolloutStarted"
    state, event = rollout.advance(moved, state, fleet.seen(), at(t))
    assert (state.phase, state.step, event.reason) == ("Progressing", 0, "RolloutProgressing")
    return moved, state


def test_promotion_walks_every_step():
    fleet = Fleet()
    first = model_spec(1)
    state, event = rollout.advance(first, None, None, at(0))
    assert (state.phase, state.stable, event) == ("Stable", 1, None)
    moved = model_spec(2)
    state, event = rollout.advance(moved, state, None, at(1))
    assert (state.phase, state.stable, state.target, event.reason) == (
        "Waiting",
        1,
        2,
        "RolloutStarted",
    )
    # The servers still get stable 1, canary 2 at 0%, both versions aspired.
    served = rollout.effective_model(moved, state)
    assert dict(served.labels) == {"stable": 1, "canary": 2}
    assert served.canary_traffic_percent == 0 and served.policy.versions == (1, 2)

    state, event = rollout.advance(moved, state, fleet.seen(available=False), at(2))
    assert state.phase == "Waiting" and event is None  # not loaded everywhere yet
    state, event = rollout.advance(moved, state, fleet.seen(), at(3))
    assert (state.phase, state.weight, event.reason) == ("Progressing", 10, "RolloutProgressing")
    assert rollout.effective_model(moved, state).canary_traffic_percent == 10
    fleet.serve(2, 30)
    fleet.serve(1, 270)
    state, event = rollout.advance(moved, state, fleet.seen(), at(10))  # pausing
    assert (state.weight, event, state.result) == (10, None, "Successful")
    assert (state.canary.requests, state.reference.requests) == (30, 270)
    state, event = rollout.advance(moved, state, fleet.seen(), at(40))
    assert (state.step, state.weight, event.reason) == (1, 50, "RolloutProgressing")
    assert "canary: 30 requests, 0 server faults" in event.message
    assert "stable: 270 requests" in event.message
    fleet.serve(2, 150)
    fleet.serve(1, 150)
    state, event = rollout.advance(moved, state, fleet.seen(), at(80))
    assert (state.phase, state.stable, event.reason) == ("Promoted", 2, "RolloutPromoted")
    assert state.canary.requests == 150  # the last step's window only
    served = rollout.effective_model(moved, state)
    assert dict(served.labels) == {"stable": 2} and served.canary_traffic_percent is None
    assert served.policy.versions == (2,)  # the spec no longer lists 1: dropped
    assert rollout.advance(moved, state, fleet.seen(), at(90)) == (state, None)


def test_client_errors_never_fail_a_canary():
    """3 % malformed requests on both versions (answered 4xx): promoted, even with a tight
    absolute threshold on the server-fault ratio."""
    fleet = Fleet()
    moved, state = started(fleet, model_spec(2, {"maxErrorRatio": 0.001}))
    fleet.serve(2, 100, client=3)
    fleet.serve(1, 900, client=27)
    state, event = rollout.advance(moved, state, fleet.seen(), at(40))
    assert (state.phase, state.step) == ("Progressing", 1)
    assert state.canary.client_errors == 3 and state.canary.fault_ratio == 0.0
    fleet.serve(2, 100, client=3)
    fleet.serve(1, 100, client=3)
    state, event = rollout.advance(moved, state, fleet.seen(), at(80))
    assert state.phase == "Promoted"


def test_server_faults_beyond_stables_roll_back_at_once_with_both_figures():
    fleet = Fleet()
    moved, state = started(fleet)
    fleet.serve(2, 100, faults=5)  # INTERNAL
    fleet.serve(1, 900, faults=9)
    state, event = rollout.advance(moved, state, fleet.seen(), at(5))  # mid-pause
    assert (state.phase, state.stable, event.type, event.reason) == (
        "RolledBack",
        1,
        "Warning",
        "RolloutRolledBack",
    )
    assert "server-fault ratio 0.0500 > stable 0.0100 + 0.01" in state.message
    assert state.result == "Failed"
    assert (state.canary.faults, state.canary.fault_ratio) == (5, 0.05)
    assert (state.reference.faults, state.reference.fault_ratio) == (9, 0.01)
    assert "canary: 100 requests, 5 server faults (ratio 0.0500)" in event.message
    assert "stable: 900 requests, 9 server faults (ratio 0.0100)" in event.message
    served = rollout.effective_model(moved, state)
    assert dict(served.labels) == {"stable": 1} and served.canary_traffic_percent is None
    # It stays rolled back until the stable label changes again.
    assert rollout.advance(moved, state, fleet.seen(), at(100)) == (state, None)
    back, _ = rollout.advance(model_spec(1), state, None, at(101))
    assert (back.phase, back.stable) == ("Stable", 1)


def test_faults_no_worse_than_stables_pass():
    """Stable itself fails 3 % (a backend hiccup both see): the canary is judged against it."""
    fleet = Fleet()
    moved, state = started(fleet)
    fleet.serve(2, 100, faults=3)
    fleet.serve(1, 900, faults=27)
    state, _ = rollout.advance(moved, state, fleet.seen(), at(40))
    assert (state.phase, state.step, state.result) == ("Progressing", 1, "Successful")


def test_absolute_thresholds_stay_available():
    fleet = Fleet()
    moved, state = started(fleet, model_spec(2, {"maxErrorRatio": 0.02, "maxLatencyP99Ms": 4}))
    fleet.serve(2, 100, faults=3)
    fleet.serve(1, 900, faults=27)
    state, _ = rollout.advance(moved, state, fleet.seen(), at(40))
    assert state.phase == "RolledBack" and "server-fault ratio 0.0300 > 0.02" in state.message
    fleet = Fleet()
    moved, state = started(fleet, model_spec(2, {"maxLatencyP99Ms": 4}))
    fleet.serve(2, 100, latency_us=8000)
    fleet.serve(1, 100, latency_us=8000)
    state, _ = rollout.advance(moved, state, fleet.seen(), at(40))
    assert state.phase == "RolledBack" and "> 4 ms" in state.message


def test_slow_canary_rolls_back_by_the_factor():
    fleet = Fleet()
    moved, state = started(fleet)
    fleet.serve(2, 1000, latency_us=40_000)
    fleet.serve(1, 9000, latency_us=8000)
    state, event = rollout.advance(moved, state, fleet.seen(), at(40))
    assert state.phase == "RolledBack", state.message
    assert "p99 49.6 ms > stable 9.95 ms x 2" in state.message
    assert state.canary.latency_p99_ms > 2 * state.reference.latency_p99_ms


def test_a_p99_of_few_requests_is_not_compared():
    """500 canary requests (under analysis.P99_SAMPLES): their p99 is a few slow calls, not a trend (absolute limits still
    apply when set)."""
    fleet = Fleet()
    moved, state = started(fleet)
    fleet.serve(2, 500, latency_us=40_000)
    fleet.serve(1, 9000, latency_us=800)
    state, _ = rollout.advance(moved, state, fleet.seen(), at(40))
    assert (state.phase, state.step) == ("Progressing", 1)


def test_latency_within_the_factor_or_the_tolerance_passes():
    fleet = Fleet()
    moved, state = started(fleet)
    fleet.serve(2, 1000, latency_us=1800)  # bucket (1, 2] ms vs (0, 1] ms: < 5 ms apart
    fleet.serve(1, 9000, latency_us=800)
    state, _ = rollout.advance(moved, state, fleet.seen(), at(40))
    assert (state.phase, state.step) == ("Progressing", 1)
    fleet.serve(2, 1000, latency_us=9000)  # (5, 10] ms vs (5, 10] ms
    fleet.serve(1, 9000, latency_us=6000)
    state, _ = rollout.advance(moved, state, fleet.seen(), at(80))
    assert state.phase == "Promoted"


def test_too_few_requests_wait_then_roll_back_at_the_deadline():
    fleet = Fleet()
    moved, state = started(fleet, model_spec(2, {"progressDeadlineSeconds": 100}))
    fleet.serve(2, 4)
    fleet.serve(1, 40)
    state, event = rollout.advance(moved, state, fleet.seen(), at(100))
    assert (state.phase, state.step, state.result, event) == (
        "Progressing",
        0,
        "Inconclusive",
        None,
    )
    assert "waiting for traffic: 4 of 20 requests" in state.message
    # The window began at 2 s: its 30 s pause and the 100 s deadline end at 132 s.
    state, event = rollout.advance(moved, state, fleet.seen(), at(131))
    assert state.phase == "Progressing" and event is None
    state, event = rollout.advance(moved, state, fleet.seen(), at(132))
    assert (state.phase, state.stable, event.reason) == ("RolledBack", 1, "RolloutRolledBack")
    assert "no verdict 100 s after step 1's pause (progressDeadlineSeconds)" in state.message
    assert "waiting for traffic: 4 of 20 requests" in state.message


def test_no_traffic_promotes_at_the_deadline_when_the_spec_says_so():
    fleet = Fleet()
    spec = model_spec(2, {"progressDeadlineSeconds": 10, "onProgressDeadline": "Promote"})
    moved, state = started(fleet, spec)
    state, event = rollout.advance(moved, state, fleet.seen(), at(42))
    assert (state.phase, state.stable, event.reason) == ("Promoted", 2, "RolloutPromoted")
    assert "waiting for traffic: 0 of 20 requests" in state.message


def test_a_pod_that_does_not_answer_makes_the_step_wait_never_lifetime_totals():
    fleet = Fleet(3)
    fleet.serve(2, 300, faults=300)  # an earlier attempt's failures, before the window
    moved, state = started(fleet, model_spec(2, {"progressDeadlineSeconds": 60}))
    fleet.serve(2, 60)
    fleet.serve(1, 60)
    fleet.silent.add("pod-1")
    state, event = rollout.advance(moved, state, fleet.seen(), at(40))
    assert (state.phase, state.step, state.result, event) == (
        "Progressing",
        0,
        "Inconclusive",
        None,
    )
    assert "waiting for metrics: 1 of 3 pods did not answer" in state.message
    fleet.silent.clear()
    state, event = rollout.advance(moved, state, fleet.seen(), at(50))
    assert (state.step, event.reason) == (1, "RolloutProgressing")  # old failures not counted
    fleet.silent.add("pod-2")
    state, event = rollout.advance(moved, state, fleet.seen(), at(50 + 30 + 60))
    assert state.phase == "RolledBack" and "did not answer" in state.message


def test_no_window_starts_while_a_pod_does_not_answer():
    fleet = Fleet(2)
    state, _ = rollout.advance(model_spec(1), None, None, at(0))
    moved = model_spec(2)
    state, _ = rollout.advance(moved, state, None, at(1))
    fleet.silent.add("pod-0")
    state, event = rollout.advance(moved, state, fleet.seen(), at(2))
    assert (state.phase, event) == ("Waiting", None)
    assert "waiting for metrics: 1 of 2 pods" in state.message


def test_a_retried_version_starts_clean():
    """The same version failed before (its counters and slow buckets stay on the pods); a new
    attempt is judged on its own window, latency buckets included."""
    fleet = Fleet()
    moved, state = started(fleet)
    fleet.serve(2, 100, faults=100, latency_us=90_000)
    fleet.serve(1, 100)
    state, _ = rollout.advance(moved, state, fleet.seen(), at(5))
    assert state.phase == "RolledBack"
    state, _ = rollout.advance(model_spec(1), state, None, at(6))
    assert state.phase == "Stable"
    state, _ = rollout.advance(moved, state, None, at(7))
    state, _ = rollout.advance(moved, state, fleet.seen(), at(8))
    assert state.phase == "Progressing"
    fleet.serve(2, 100)
    fleet.serve(1, 100)
    state, _ = rollout.advance(moved, state, fleet.seen(), at(40))
    assert (state.step, state.canary.faults, state.canary.latency_p99_ms) == (1, 0, 0.99)


def test_a_restarted_pod_counts_from_zero():
    fleet = Fleet(2)
    fleet.serve(2, 400)
    fleet.serve(1, 400)
    moved, state = started(fleet)
    fleet.restart("pod-0")  # restartCount + 1, counters back to zero
    fleet.serve(2, 400, faults=40)  # 200 a pod: more than pod-0's old count? no: check both
    fleet.serve(1, 400)
    state, _ = rollout.advance(moved, state, fleet.seen(), at(5))
    assert state.canary.requests == 400 and state.canary.faults == 40
    assert state.phase == "RolledBack"


def test_counters_that_went_down_are_a_reset():
    """No restartCount change (the server process was replaced in place), but counts fell."""
    fleet = Fleet(1)
    fleet.serve(2, 100)
    fleet.serve(1, 100)
    moved, state = started(fleet)
    fleet.counts["pod-0"] = {}
    fleet.serve(2, 30)
    fleet.serve(1, 30)
    state, _ = rollout.advance(moved, state, fleet.seen(), at(40))
    assert (state.step, state.canary.requests, state.reference.requests) == (1, 30, 30)


def test_a_pod_that_joined_mid_window_counts_entirely():
    fleet = Fleet(2)
    moved, state = started(fleet)
    fleet.add_pod("pod-new")
    fleet.serve(2, 30)
    fleet.serve(1, 30)
    state, _ = rollout.advance(moved, state, fleet.seen(), at(40))
    assert state.canary.requests == 30 and state.step == 1


def test_more_than_twenty_pods_are_summed():
    """25 pods (an HPA fleet): every one is read; one fault on each of the canary's pods adds
    up to a failing ratio no 20-pod subset shows."""
    fleet = Fleet(25)
    moved, state = started(fleet)
    for uid in fleet.uids:
        fig = fleet.counts[uid].setdefault(2, VersionFigures())
        fig.requests += 20
        fig.faults += 1
        fig.buckets = {b: 20.0 for b in BOUNDS}
        fleet.counts[uid].setdefault(
            1, VersionFigures(requests=200, buckets=dict.fromkeys(BOUNDS, 200.0))
        )
    state, event = rollout.advance(moved, state, fleet.seen(), at(5))
    assert (state.canary.requests, state.canary.faults) == (500, 25)
    assert state.reference.requests == 5000
    assert state.phase == "RolledBack" and "0.0500 > stable 0.0000" in state.message


def test_an_operator_without_the_window_in_memory_restarts_it():
    fleet = Fleet()
    moved, state = started(fleet)
    windows = rollout.AnalysisWindows()
    windows.remember("uid-a", [state])
    assert len(windows) == 1
    from_status = rollout.RolloutState.from_status(state.to_status())
    assert from_status.baseline is None and from_status == state
    assert windows.attach("uid-a", from_status).baseline is state.baseline
    assert windows.attach("uid-b", from_status).baseline is None  # another TFModel's
    # A new operator (empty memory): the step's window starts again, saying so.
    fleet.serve(2, 30)
    restarted, event = rollout.advance(moved, from_status, fleet.seen(), at(20))
    assert event is None and "analysis window restarted" in restarted.message
    assert restarted.step_started == "2030-01-01T00:00:20Z" and restarted.baseline is not None
    windows.remember("uid-a", [restarted])
    # Both windows are found: a status written before the restart (a write that lost to a
    # concurrent edit, or a stale read) must not restart the window again.
    assert windows.attach("uid-a", from_status).baseline is state.baseline
    assert windows.attach("uid-a", restarted).baseline is restarted.baseline
    # Only the last few are kept.
    for second in range(21, 21 + rollout.AnalysisWindows.KEPT_PER_MODEL):
        later, _ = rollout.advance(moved, from_status, fleet.seen(), at(second))
        windows.remember("uid-a", [later])
    assert len(windows) == rollout.AnalysisWindows.KEPT_PER_MODEL
    assert windows.attach("uid-a", from_status).baseline is None  # the oldest is gone
    windows.remember("uid-a", [])
    assert len(windows) == 0


def test_changing_the_stable_label_mid_rollout_restarts_or_aborts():
    fleet = Fleet()
    state, _ = rollout.advance(model_spec(1), None, None, at(0))
    state, _ = rollout.advance(model_spec(2), state, None, at(1))
    state, _ = rollout.advance(model_spec(2), state, fleet.seen(), at(2))
    restarted, event = rollout.advance(model_spec(3), state, fleet.seen(), at(3))
    assert (restarted.phase, restarted.stable, restarted.target) == ("Waiting", 1, 3)
    aborted, event = rollout.advance(model_spec(1), state, fleet.seen(), at(3))
    assert (aborted.phase, aborted.stable, event.reason) == ("Stable", 1, "RolloutAborted")


def test_state_round_trips_through_status():
    fleet = Fleet()
    moved, state = started(fleet)
    fleet.serve(2, 10, client=1)
    fleet.serve(1, 90)
    state, _ = rollout.advance(moved, state, fleet.seen(), at(10))
    raw = state.to_status()
    assert raw["analysis"]["result"] == "Inconclusive"
    assert raw["analysis"]["canary"] == {
        "requests": 10,
        "serverFaults": 0,
        "clientErrors": 1,
        "faultRatio": 0.0,
        "latencyP99Ms": 0.99,
    }
    assert raw["analysis"]["stable"]["requests"] == 90
    assert rollout.RolloutState.from_status(raw) == state
    assert rollout.summary([state]) == "lin:Progressing@10%"


@pytest.mark.parametrize(
    "change,message",
    [
        ({"versionLabels": {"stable": 1, "canary": 2}}, "sets the canary label"),
        ({"canaryTrafficPercent": 5, "versionLabels": {"stable": 1, "canary": 1}}, "sets the"),
        ({"versionPolicy": {"latest": {"numVersions": 1}}}, "numVersions >= 2"),
        ({"rollout": {"steps": []}}, "rollout.steps"),
        (
            {
                "rollout": {
                    "steps": [{"trafficPercent": 5}],
                    "analysis": {"onProgressDeadline": "x"},
                }
            },
            "onProgressDeadline must be RollBack or Promote",
        ),
    ],
)
def test_rollout_spec_errors(change, message):
    raw = {
        "models": [
            {
                "name": "lin",
                "basePath": "/models/lin",
                "versionPolicy": {"all": {}},
                "versionLabels": {"stable": 1},
                "rollout": {"steps": [{"trafficPercent": 10}]},
                **change,
            }
        ],
        "storage": {"hostPath": {"path": "/srv"}},
    }
    with pytest.raises(SpecError, match=message):
        parse_spec(raw)


def test_analysis_defaults_and_earlier_specs():
    """An existing TFModel's analysis block keeps working; the new fields take defaults."""
    old = model_spec(2, {"maxErrorRatio": 0.05, "minRequests": 20, "maxLatencyP99Ms": 50})
    assert old.rollout.analysis == Analysis(
        min_requests=20,
        max_fault_ratio_increase=0.01,
        max_latency_p99_factor=2.0,
        latency_tolerance_ms=5.0,
        max_error_ratio=0.05,
        max_latency_p99_ms=50.0,
        progress_deadline_seconds=600,
        on_progress_deadline="RollBack",
    )
    off = model_spec(2, {"compareWithStable": False}).rollout.analysis
    assert (off.max_fault_ratio_increase, off.max_latency_p99_factor) == (None, None)


def test_judge_without_a_stable_reference_holds_the_margin_alone():
    spec = Analysis(min_requests=10)
    canary = VersionFigures(requests=100, faults=2, buckets={1000.0: 100.0, float("inf"): 100.0})
    verdict = analysis.judge(spec, canary, VersionFigures(requests=3, faults=0))
    assert verdict.result == "Failed" and "0.0200 > stable 0.0000 + 0.01" in verdict.reason
    canary.faults = 1
    verdict = analysis.judge(spec, canary, VersionFigures(requests=3))
    assert verdict.result == "Successful" and "too few requests" in verdict.reason


SCRAPE = """# HELP :tfmodel:request_count Requests by model version.
# TYPE :tfmodel:request_count counter
:tfmodel:request_count_total{model_name="lin",version="2",signature="serving_default",API="Predict",entrypoint="GRPC",status="OK"} 80.0
:tfmodel:request_count_total{model_name="lin",version="2",signature="serving_default",API="Predict",entrypoint="REST",status="INVALID_ARGUMENT"} 10.0
:tfmodel:request_count_total{model_name="lin",version="2",signature="serving_default",API="Predict",entrypoint="GRPC",status="INTERNAL"} 6.0
:tfmodel:request_count_total{model_name="lin",version="2",signature="serving_default",API="Predict",entrypoint="GRPC",status="DEADLINE_EXCEEDED"} 4.0
:tfmodel:request_count_total{model_name="lin",version="1",signature="serving_default",API="Predict",entrypoint="GRPC",status="OK"} 500.0
:tfmodel:request_count_total{model_name="lin",version="",signature="",API="Predict",entrypoint="REST",status="INVALID_ARGUMENT"} 3.0
:tfmodel:request_count_total{model_name="other",version="2",signature="serving_default",API="Predict",entrypoint="GRPC",status="OK"} 7.0
# HELP :tfmodel:request_latency Request wall time.
# TYPE :tfmodel:request_latency histogram
:tfmodel:request_latency_bucket{model_name="lin",version="2",signature="serving_default",API="Predict",entrypoint="GRPC",le="1000"} 95.0
:tfmodel:request_latency_bucket{model_name="lin",version="2",signature="serving_default",API="Predict",entrypoint="GRPC",le="30000"} 100.0
:tfmodel:request_latency_bucket{model_name="lin",version="2",signature="serving_default",API="Predict",entrypoint="GRPC",le="+Inf"} 100.0
:tfmodel:request_latency_sum{model_name="lin",version="2",signature="serving_default",API="Predict",entrypoint="GRPC"} 1e6
:tfmodel:request_latency_count{model_name="lin",version="2",signature="serving_default",API="Predict",entrypoint="GRPC"} 100.0
"""


def test_prometheus_figures_count_server_faults_only():
    one = version_figures(SCRAPE, "lin", 2)
    assert (one.requests, one.faults, one.client_errors) == (100.0, 10.0, 10.0)
    assert one.fault_ratio == 0.1
    assert one.latency_quantile_ms(0.5) == pytest.approx(0.5263, abs=1e-4)  # interpolated
    assert one.latency_quantile_ms(0.99) == pytest.approx(24.2, abs=0.01)
    assert set(model_figures(SCRAPE, "lin")) == {1, 2}  # the version-less failure: nobody's
    both = summed([model_figures(SCRAPE, "lin")] * 2, 2)
    assert (both.requests, both.faults) == (200.0, 20.0)
    assert version_figures(SCRAPE, "lin", 3).latency_quantile_ms(0.99) is None
    with pytest.raises(ValueError):
        model_figures(':tfmodel:request_count_total{model_name="lin",version="2" x\n', "lin")


@pytest.mark.parametrize(
    "status,fault",
    [
        ("INTERNAL", True),
        ("UNKNOWN", True),
        ("UNAVAILABLE", True),
        ("DEADLINE_EXCEEDED", True),
        ("DATA_LOSS", True),
        ("INVALID_ARGUMENT", False),
        ("NOT_FOUND", False),
        ("FAILED_PRECONDITION", False),
        ("UNAUTHENTICATED", False),
        ("PERMISSION_DENIED", False),
        ("RESOURCE_EXHAUSTED", False),
        ("OK", False),
        ("503", True),
        ("404", False),
    ],
)
def test_server_fault_classification(status, fault):
    assert is_server_fault(status) is fault


def test_latency_in_the_overflow_bucket_is_the_highest_finite_bound():
    figures = VersionFigures(requests=10, buckets={1000.0: 1.0, 5000.0: 2.0, float("inf"): 10.0})
    assert figures.latency_quantile_ms(0.99) == 5.0


def test_minus_detects_a_reset():
    now = VersionFigures(requests=5, buckets={1000.0: 5.0, float("inf"): 5.0})
    before = VersionFigures(requests=8, buckets={1000.0: 8.0, float("inf"): 8.0})
    assert now.minus(before) is None
    assert before.minus(now) == VersionFigures(requests=3, buckets={1000.0: 3.0, float("inf"): 3.0})


def test_pod_answers_become_the_analysis_input():
    """reconcile's hand-over: every running pod with its UID and restarts; a pod whose page is
    missing or not Prometheus text counts as not answering."""
    from tfmodel_operator.probe import PodAnswer
    from tfmodel_operator.reconcile import PodView, canary_observation

    available = {
        "models": [
            {"name": "lin", "model_version_status": [{"version": "2", "state": "AVAILABLE"}]}
        ]
    }
    view = PodView.of(
        [
            PodAnswer("a", 0, available, SCRAPE),
            PodAnswer("b", 3, available, None),
            PodAnswer("c", 0, available, ':tfmodel:request_count_total{model_name="lin" x'),
        ]
    )
    assert (len(view.reports), view.unreachable) == (3, 0)
    seen = canary_observation("lin", 2, view)
    assert seen.available_everywhere
    assert [(p.uid, p.restarts) for p in seen.pods] == [("a", 0), ("b", 3), ("c", 0)]
    assert seen.pods[0].versions[2].faults == 10.0
    assert seen.pods[1].versions is None and seen.pods[2].versions is None
    assert analysis.take_baseline(seen.pods) is None
