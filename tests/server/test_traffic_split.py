"""Canary traffic split on a real server: --traffic_split_file beside models.config."""

from __future__ import annotations

import json
from pathlib import Path

import requests

from tests.server.savedmodels import export_linear
from tests.server.serverproc import ServerProcess
from tests.server.test_grpc_api import predict_request
from tests.server.test_server_process import model_config


def served_versions(server: ServerProcess, n: int, **spec) -> list[int]:
    stub = server.prediction_stub()
    return [
        stub.Predict(predict_request("m", [1.0], **spec), timeout=10).model_spec.version.value
        for _ in range(n)
    ]


def test_split_file_sends_a_share_to_the_canary_and_is_re_read(tmp_path: Path):
    base = tmp_path / "m"
    export_linear(base, 1, 1.0, 0.0)
    export_linear(base, 2, 2.0, 0.0)
    config = tmp_path / "models.config"
    config.write_text(
        model_config(base, "specific { versions: 1 versions: 2 }", {"stable": 1, "canary": 2})
    )
    split = tmp_path / "traffic-split.json"
    split.write_text(json.dumps({"models": {"m": {"canaryPercent": 30}}}))
    args = (
        f"--model_config_file={config}",
        "--model_config_file_poll_wait_seconds=1",
        f"--traffic_split_file={split}",
    )
    with ServerProcess(*args) as server:
        server.wait_ready()
        server.wait_versions("m", {1: "AVAILABLE", 2: "AVAILABLE"})
        for spec in ({}, {"version_label": "stable"}):
            served = served_versions(server, 600, **spec)
            share = served.count(2) / len(served)
            assert set(served) == {1, 2} and 0.22 < share < 0.38, (spec, share)
        assert set(served_versions(server, 100, version_label="canary")) == {2}
        assert set(served_versions(server, 100, version=1)) == {1}
        # REST takes the same path.
        rest = [
            requests.post(
                f"{server.rest}/v1/models/m:predict", json={"instances": [1.0]}, timeout=10
            ).json()["predictions"][0]
            for _ in range(200)
        ]
        assert {round(float(y)) for y in rest} == {1, 2}  # y = a*x, a = version

        split.write_text(json.dumps({"models": {"m": {"canaryPercent": 0}}}))
        server.wait_for(
            lambda: set(served_versions(server, 50, version_label="stable")) == {1},
            15,
            "split back to 0",
        )
        # A bad file keeps the split in force and is logged.
        split.write_text("{not json")
        server.wait_for(lambda: "traffic split rejected" in server.log(), 15, "rejection logged")
        assert set(served_versions(server, 50)) == {1}
