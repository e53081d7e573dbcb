"""`make demo`'s steps (tests/cluster/demo/steps.py) on the suite's session cluster, so the
demo cannot rot: helm install, export v1+v2, apply, Ready, gRPC+REST error rates through the
Service, the automated canary rollout with a client looping (0 failed, 0 restarts), the plot.

Runs after test_cluster.py (file order), whose operator release is uninstalled by then.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tfmodel_devcluster.cluster import Cluster
from tfmodel_devcluster.demo import report, steps
from tfmodel_devcluster.demo.cluster_demo import NUM_TESTS, REPLICAS

pytestmark = pytest.mark.cluster


@pytest.fixture
def demo(cluster: Cluster, tmp_path: Path) -> Iterator[Path]:
    log_file = tmp_path / "demo.log"
    try:
        yield log_file
    finally:
        steps.uninstall(cluster)


def test_demo_steps_rollout_without_failures(cluster: Cluster, demo: Path, tmp_path: Path):
    log_file = demo
    assert steps.RELEASE in steps.install_operator(cluster)
    base = steps.export_models(cluster, log_file)
    assert (base / "1" / "saved_model.pb").exists() and (base / "2" / "saved_model.pb").exists()

    steps.apply_tfmodel(cluster, REPLICAS)
    seen: list[str] = []
    steps.wait_ready(cluster, REPLICAS, seen.append)
    assert seen and f"{REPLICAS}/{REPLICAS} Ready" in seen[-1]

    stable = steps.query(cluster, "stable", NUM_TESTS, log_file)
    canary = steps.query(cluster, "canary", NUM_TESTS, log_file)
    assert stable["grpc"]["versions"] == {"1": NUM_TESTS}
    assert canary["grpc"]["versions"] == {"2": NUM_TESTS}
    for got in (stable, canary):
        assert got["grpc"]["failed"] == got["rest"]["failed"] == 0
        assert got["grpc"]["error_rate"] == pytest.approx(got["rest"]["error_rate"])
    assert canary["grpc"]["error_rate"] < stable["grpc"]["error_rate"]  # v2 is the better model

    before = steps.restart_counts(cluster)
    assert "mnist" in steps.get_tfm(cluster)
    loop = steps.Loop(cluster, log_file)
    try:
        steps.enable_rollout(cluster, lambda _line: None)
        phases: list[str] = []
        steps.roll_out(cluster, 2, phases.append)
        steps.wait_served(cluster, 2, lambda _line: None)
        time.sleep(2)
    finally:
        result = loop.finish(check=False)
    assert result["failed"] == 0, result["errors"]
    assert steps.restart_counts(cluster) == before  # same pods, no restarts
    assert any("Progressing" in p for p in phases), phases
    rows = report.per_second(result)
    assert rows[0][1].get("1") and not rows[-1][1].get("1"), rows  # v1 first, only v2 at the end
    assert any("v2" in line and "v1" in line for line in report.timeline(result))
    png = report.plot(result, tmp_path / "rollout.png", {"stable: 2": 3.0})
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    state = steps.rollout_state(cluster)
    assert state["phase"] == "Promoted" and state["stable"] == 2
