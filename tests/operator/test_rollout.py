"""The canary rollout state machine and the Prometheus figures it reads (pure)."""

from __future__ import annotations

import datetime

import pytest
from tfmodel_operator import rollout
from tfmodel_operator.promtext import VersionFigures, summed, version_figures
from tfmodel_operator.spec import SpecError, parse_spec

T0 = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def model_spec(stable: int = 1, **rollout_extra):
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
                    "analysis": {"maxErrorRatio": 0.05, "minRequests": 20, "maxLatencyP99Ms": 50},
                    **rollout_extra,
                },
            }
        ],
        "storage": {"hostPath": {"path": "/srv"}},
    }
    return parse_spec(raw).models[0]


def figures(requests: int, errors: int = 0, latency_us: float = 1000.0) -> VersionFigures:
    return VersionFigures(
        requests=requests,
        errors=errors,
        buckets={latency_us: float(requests), float("inf"): float(requests)},
    )


def seen(requests: int = 0, errors: int = 0, available: bool = True, latency_us: float = 1000.0):
    return rollout.CanaryObservation(available, figures(requests, errors, latency_us))


def test_promotion_walks_every_step():
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

    state, event = rollout.advance(moved, state, seen(available=False), at(2))
    assert state.phase == "Waiting" and event is None  # not loaded everywhere yet
    state, event = rollout.advance(moved, state, seen(), at(3))
    assert (state.phase, state.weight, event.reason) == ("Progressing", 10, "RolloutProgressing")
    assert rollout.effective_model(moved, state).canary_traffic_percent == 10
    state, event = rollout.advance(moved, state, seen(100), at(10))  # pausing
    assert (state.weight, event, state.canary_requests) == (10, None, 100)
    state, event = rollout.advance(moved, state, seen(100), at(40))
    assert (state.step, state.weight) == (1, 50)
    state, event = rollout.advance(moved, state, seen(300), at(80))
    assert (state.phase, state.stable, event.reason) == ("Promoted", 2, "RolloutPromoted")
    served = rollout.effective_model(moved, state)
    assert dict(served.labels) == {"stable": 2} and served.canary_traffic_percent is None
    assert served.policy.versions == (2,)  # the spec no longer lists 1: dropped
    assert rollout.advance(moved, state, seen(), at(90)) == (state, None)


def test_too_many_errors_roll_back_at_once_with_the_figures():
    state, _ = rollout.advance(model_spec(1), None, None, at(0))
    moved = model_spec(2)
    state, _ = rollout.advance(moved, state, None, at(1))
    state, _ = rollout.advance(moved, state, seen(), at(2))
    state, event = rollout.advance(moved, state, seen(100, errors=30), at(5))  # mid-pause
    assert (state.phase, state.stable, event.type, event.reason) == (
        "RolledBack",
        1,
        "Warning",
        "RolloutRolledBack",
    )
    assert "error ratio 0.3000 > 0.05 (30 of 100 requests)" in state.message
    assert state.canary_error_ratio == 0.3
    served = rollout.effective_model(moved, state)
    assert dict(served.labels) == {"stable": 1} and served.canary_traffic_percent is None
    # It stays rolled back until the stable label changes again.
    assert rollout.advance(moved, state, seen(), at(100)) == (state, None)
    back, _ = rollout.advance(model_spec(1), state, None, at(101))
    assert (back.phase, back.stable) == ("Stable", 1)


def test_slow_canary_rolls_back():
    state, _ = rollout.advance(model_spec(1), None, None, at(0))
    moved = model_spec(2)
    state, _ = rollout.advance(moved, state, None, at(1))
    state, _ = rollout.advance(moved, state, seen(), at(2))
    state, _ = rollout.advance(moved, state, seen(50, latency_us=80_000), at(40))
    assert state.phase == "RolledBack" and "p99 latency 80 ms > 50 ms" in state.message


def test_too_few_requests_hold_the_step():
    state, _ = rollout.advance(model_spec(1), None, None, at(0))
    moved = model_spec(2)
    state, _ = rollout.advance(moved, state, None, at(1))
    state, _ = rollout.advance(moved, state, seen(), at(2))
    state, event = rollout.advance(moved, state, seen(5), at(100))
    assert (state.phase, state.step, event) == ("Progressing", 0, None)
    assert "waiting for 20 requests on 2 (have 5)" in state.message


def test_changing_the_stable_label_mid_rollout_restarts_or_aborts():
    state, _ = rollout.advance(model_spec(1), None, None, at(0))
    state, _ = rollout.advance(model_spec(2), state, None, at(1))
    state, _ = rollout.advance(model_spec(2), state, seen(), at(2))
    restarted, event = rollout.advance(model_spec(3), state, seen(), at(3))
    assert (restarted.phase, restarted.stable, restarted.target) == ("Waiting", 1, 3)
    aborted, event = rollout.advance(model_spec(1), state, seen(), at(3))
    assert (aborted.phase, aborted.stable, event.reason) == ("Stable", 1, "RolloutAborted")


def test_state_round_trips_through_status():
    state, _ = rollout.advance(model_spec(1), None, None, at(0))
    state, _ = rollout.advance(model_spec(2), state, None, at(1))
    state, _ = rollout.advance(model_spec(2), state, seen(), at(2))
    assert rollout.RolloutState.from_status(state.to_status()) == state
    assert rollout.summary([state]) == "lin:Progressing@10%"


@pytest.mark.parametrize(
    "change,message",
    [
        ({"versionLabels": {"stable": 1, "canary": 2}}, "sets the canary label"),
        ({"canaryTrafficPercent": 5, "versionLabels": {"stable": 1, "canary": 1}}, "sets the"),
        ({"versionPolicy": {"latest": {"numVersions": 1}}}, "numVersions >= 2"),
        ({"rollout": {"steps": []}}, "rollout.steps"),
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


SCRAPE = """# HELP :tfmodel:request_count Requests by model version.
# TYPE :tfmodel:request_count counter
:tfmodel:request_count_total{model_name="lin",version="2",signature="serving_default",API="Predict",entrypoint="GRPC",status="OK"} 90.0
:tfmodel:request_count_total{model_name="lin",version="2",signature="serving_default",API="Predict",entrypoint="GRPC",status="INVALID_ARGUMENT"} 10.0
:tfmodel:request_count_total{model_name="lin",version="1",signature="serving_default",API="Predict",entrypoint="GRPC",status="OK"} 500.0
:tfmodel:request_count_total{model_name="other",version="2",signature="serving_default",API="Predict",entrypoint="GRPC",status="OK"} 7.0
:tfmodel:request_latency_bucket{model_name="lin",version="2",signature="serving_default",API="Predict",entrypoint="GRPC",le="1000.0"} 95.0
:tfmodel:request_latency_bucket{model_name="lin",version="2",signature="serving_default",API="Predict",entrypoint="GRPC",le="30000.0"} 100.0
:tfmodel:request_latency_bucket{model_name="lin",version="2",signature="serving_default",API="Predict",entrypoint="GRPC",le="+Inf"} 100.0
"""


def test_prometheus_figures_per_version_summed_over_pods():
    one = version_figures(SCRAPE, "lin", 2)
    assert (one.requests, one.errors, one.error_ratio) == (100.0, 10.0, 0.1)
    assert one.latency_quantile_ms(0.5) == 1.0 and one.latency_quantile_ms(0.99) == 30.0
    both = summed([SCRAPE, SCRAPE], "lin", 2)
    assert (both.requests, both.errors) == (200.0, 20.0)
    assert version_figures(SCRAPE, "lin", 3).latency_quantile_ms(0.99) is None


def test_requests_before_the_canary_traffic_began_do_not_count():
    """A retried version's old errors (from a rolled-back attempt) are not held against it."""
    state, _ = rollout.advance(model_spec(1), None, None, at(0))
    moved = model_spec(2)
    state, _ = rollout.advance(moved, state, None, at(1))
    state, _ = rollout.advance(moved, state, seen(100, errors=100), at(2))  # old failures
    assert (state.phase, state.baseline_requests, state.baseline_errors) == (
        "Progressing",
        100,
        100,
    )
    state, _ = rollout.advance(moved, state, seen(150, errors=100), at(40))
    assert state.phase == "Progressing" and state.step == 1 and state.canary_requests == 50
    assert state.canary_error_ratio == 0.0
