"""Pure helpers of the peer benchmark: request bodies, labels, pins (no venvs, no servers)."""

from __future__ import annotations

import json

from bench.peers import launch, venvs


def test_v2_body_is_one_fp32_row():
    body = json.loads(launch.v2_body("x", [1.0, 2.5, 3.0]))
    assert body == {
        "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1.0, 2.5, 3.0]}]
    }


def test_peer_labels_name_the_protocol():
    config = launch.PeerConfig("mlserver", "MLServer, adaptive batching", max_batch_size=64)
    assert config.label("gRPC (v2)") == "MLServer, adaptive batching gRPC (v2)"


def test_requirements_pin_our_tensorflow():
    reqs = venvs.requirements("mlserver")
    assert "uvloop<0.22" in reqs
    assert reqs[-1] == venvs.tensorflow_pin() and reqs[-1].startswith("tensorflow==")
