"""The benchmark report's pure helpers: label selection and ratio math (no servers, no timing)."""

from __future__ import annotations

import math

from bench import report
from bench import results as names


def _r(target: str, rate: float, c: int = 64, ok: int = 100, requests: int = 100, p99=10.0):
    return {
        "target": target,
        "concurrency": c,
        "requests": requests,
        "ok": ok,
        "duration_s": ok / rate,
        "rows_per_s": rate,
        "p50_ms": 1.0,
        "p99_ms": p99,
    }


DATA = {
    "results": [
        _r(names.GRPC_OFF, 1000.0, p99=40.0),
        _r(names.GRPC_ON, 1500.0, p99=30.0),
        _r(names.REST_OFF, 1200.0, p99=50.0),
        _r(names.REST_ON, 2000.0, p99=45.0),
        _r("MLServer, no batching gRPC (v2)", 500.0),
        _r("MLServer, adaptive batching gRPC (v2)", 600.0),
        _r("KServe gRPC (v2)", 900.0, ok=90),  # failed requests: not a best
        _r("KServe REST (v1)", 400.0),
        _r("MLServer, no batching REST (v2)", 800.0),
        _r("bare grpc.aio echo", 2000.0),
        _r(names.MLP + names.GRPC_ON, 900.0),
        _r(names.MLP + names.REST_ON, 450.0),
        _r(names.MLP + "KServe gRPC (v2)", 300.0),
    ],
    "mlp_limit": {"best": {"rows_per_s": 1000.0, "batch": 64, "threads": 2}},
}


def test_labels_split_tfmodel_peers_and_models():
    assert report._labels(DATA, "", False, "gRPC") == [names.GRPC_OFF, names.GRPC_ON]
    assert report._labels(DATA, "", True, "REST") == [
        "KServe REST (v1)",
        "MLServer, no batching REST (v2)",
    ]
    assert report._labels(DATA, names.MLP, True, "gRPC") == [names.MLP + "KServe gRPC (v2)"]


def test_best_rate_skips_runs_with_errors_and_missing_levels():
    labels = report._labels(DATA, "", True, "gRPC")
    assert report.best_rate(DATA, labels) == ("MLServer, adaptive batching gRPC (v2)", 600.0)
    assert report.best_rate(DATA, labels, concurrency=8) == (None, None)


def test_peer_ratios_per_protocol():
    rows = {row[0]: row for row in report.peer_ratios(DATA)}
    assert rows["gRPC"][1] == names.GRPC_ON and rows["gRPC"][5] == 1500.0 / 600.0
    assert rows["REST"][5] == 2000.0 / 800.0
    mlp = {row[0]: row for row in report.peer_ratios(DATA, names.MLP)}
    assert mlp["gRPC"][5] == 3.0
    assert mlp["REST"][5] is None  # no peer REST run for the MLP


def test_issue11_targets_verdicts():
    rows = {
        name: (measured, verdict) for name, _, measured, verdict in report.issue11_targets(DATA)
    }
    assert rows["tfmodel gRPC / best peer gRPC (c=64)"] == ("2.50x", "missed")
    assert rows["tfmodel gRPC batched / grpc.aio echo ceiling (c=64)"] == ("0.75x", "missed")
    assert rows[f"{names.MLP}{names.GRPC_ON} / in-process batched limit (c=64)"] == ("0.90x", "met")
    assert rows[f"{names.REST_ON} p99 / {names.GRPC_ON} p99 (c=64)"] == ("1.50x", "met")


def test_ratio_guards():
    assert report._ratio(None, 1.0) is None
    assert report._ratio(1.0, 0.0) is None
    assert report._ratio(math.nan, 1.0) is None
    assert report.mlp_limit({}) is None


def test_workers_runs_are_not_the_one_process_best():
    data = {"results": [*DATA["results"], _r(names.REST_ON + ", --workers=2", 9000.0)]}
    rows = {row[0]: row for row in report.peer_ratios(data)}
    assert rows["REST"][1] == names.REST_ON
