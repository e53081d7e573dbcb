"""Version churn leaves nothing behind: bounded status, metrics and RSS.

In process (ServingStack) for the retention rules; a real server process for
100 versions of churn (RSS from /proc, GET /v1/models, the metrics page).
"""

from __future__ import annotations

import asyncio
import shutil
import time

import pytest
from tfmodel_server.monitoring.metrics import ServingMetrics

from tests.server import churn, savedmodels
from tests.server.stack import ServingStack

POLL = 0.05


async def _wait(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _states(stack: ServingStack, name: str = "m") -> dict[int, str]:
    return {s.version: s.state for s in stack.model_status(name)}


async def _stack(base, retained: int | None, **options) -> ServingStack:
    from tests.server.test_manager import make_config

    stack = ServingStack(
        file_system_poll_wait_seconds=POLL,
        load_retry_interval_micros=50_000,
        max_retained_unloaded_versions=retained,
        **options,
    )
    await stack.start()
    await stack.apply_config(make_config(("m", base, "")))
    return stack


async def test_only_the_newest_unloaded_versions_are_kept(tmp_path):
    retired: list[tuple[str, int]] = []
    savedmodels.export_linear(tmp_path, 1)
    stack = await _stack(tmp_path, 2, retired_observer=lambda m, v, path: retired.append((m, v)))
    try:
        for version in range(2, 7):
            savedmodels.export_linear(tmp_path, version)
            await _wait(lambda v=version: _states(stack).get(v) == "AVAILABLE", f"v{version}")
            await _wait(lambda v=version: _states(stack).get(v - 1) == "END", f"v{version - 1} END")
        assert _states(stack) == {6: "AVAILABLE", 5: "END", 4: "END"}
        listed = stack.list_models()[0].versions
        assert [s.version for s in listed] == [6, 5, 4]
        # Every unloaded version was reported (its metric series go), 1..5.
        assert sorted({v for _, v in retired}) == [1, 2, 3, 4, 5]
    finally:
        await stack.stop()


async def test_minus_one_keeps_every_version_as_tf_serving(tmp_path):
    savedmodels.export_linear(tmp_path, 1)
    stack = await _stack(tmp_path, None)
    try:
        for version in range(2, 6):
            savedmodels.export_linear(tmp_path, version)
            await _wait(lambda v=version: _states(stack).get(v - 1) == "END", f"v{version - 1} END")
        assert _states(stack) == {5: "AVAILABLE", 4: "END", 3: "END", 2: "END", 1: "END"}
    finally:
        await stack.stop()


async def test_a_failed_aspired_version_is_kept_with_its_error(tmp_path):
    """Retention never forgets an aspired version: its record holds the retry budget
    (forgetting it would start its failed load again on every poll)."""
    savedmodels.export_linear(tmp_path, 1)
    stack = await _stack(tmp_path, 0, max_num_load_retries=0)
    try:
        savedmodels.write_corrupt_version(tmp_path, 2)
        await _wait(
            lambda: any(s.version == 2 and s.error_message for s in stack.model_status("m")),
            "v2 failed",
        )
        await asyncio.sleep(10 * POLL)
        statuses = {s.version: s for s in stack.model_status("m")}
        assert statuses[2].state == "END" and statuses[2].error_message
        assert statuses[1].state == "AVAILABLE"  # latest-1 keeps serving v1 after v2 failed
        # v2 leaves the disk: no longer aspired, so with 0 retained it is forgotten.
        shutil.rmtree(tmp_path / "2")
        await _wait(lambda: 2 not in _states(stack), "v2 forgotten")
    finally:
        await stack.stop()


def test_remove_version_drops_only_that_versions_series():
    metrics = ServingMetrics()
    for version in (1, 2):
        path = f"/models/m/{version}"
        metrics.record_model_load("m", version, path, 1000.0, True)
        metrics.record_warmup(path, "OK", 10.0)
        metrics.record_request("m", "predict", "GRPC", None, 50.0, version, "serving_default")
        metrics.record_batch("m", version, "serving_default", 4, 4, [10.0], 20.0)
    metrics.remove_version("m", 1, "/models/m/1")
    text = metrics.render().decode()
    assert 'version="1"' not in text and "/models/m/1" not in text
    assert 'version="2"' in text and "/models/m/2" in text
    # Model-level families stay: the request count of the model is not per version.
    assert metrics.request_count.value("m", "OK") == 2


@pytest.mark.slow
def test_100_versions_of_churn_leave_status_metrics_and_rss_bounded(tmp_path):
    server, base, staging = churn.start_server(
        tmp_path, keep_latest=1, extra_args=("--max_retained_unloaded_versions=2",)
    )
    try:
        run = churn.churn(server, base, staging, 101)
    finally:
        server.stop()
    warm, last = run.at(21), run.samples[-1]
    # One AVAILABLE and at most two END versions, whatever the number published.
    assert max(s.versions_listed for s in run.samples) <= 3
    assert last.models_bytes <= warm.models_bytes + 16  # version numbers grow a digit
    # The metrics page does not grow per version (counters' digits aside).
    assert last.metrics_bytes < warm.metrics_bytes * 1.05, (warm, last)
    growth = run.rss_growth(21)
    assert growth < 0.05, f"RSS grew {growth:.1%} over 80 versions: {warm.rss} -> {last.rss}"
