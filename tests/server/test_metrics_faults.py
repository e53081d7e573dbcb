"""The status label tells server faults from client errors, for gRPC and REST alike.

The operator's canary analysis reads `:tfmodel:request_count_total{status}` (a gRPC code
name for both entrypoints) and counts only server faults. Here real requests of each kind
meet a real server, and the operator's own parser classifies the scrape: every REST answer
in 5xx is a fault there, every 4xx is not, and gRPC agrees code for code.
"""

from __future__ import annotations

import grpc
import pytest
import requests
from tfmodel_operator.promtext import model_figures

from tests.server.savedmodels import export_faulty, export_linear
from tests.server.serverproc import ServerProcess
from tests.server.test_server_process import predict_request

CONFIG = """
model_config_list {{
  config {{
    name: "m"
    base_path: "{base}"
    model_platform: "tensorflow"
    model_version_policy {{ specific {{ versions: 1 versions: 2 }} }}
  }}
}}
"""
METRICS = "/monitoring/prometheus/metrics"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("faults")
    export_linear(root / "m", 1, 1.0, 0.0)
    export_faulty(root / "m", 2)  # every run fails server-side (DEADLINE_EXCEEDED)
    (root / "models.config").write_text(CONFIG.format(base=root / "m"))
    (root / "monitoring.config").write_text(
        f'prometheus_config {{ enable: true path: "{METRICS}" }}\n'
    )
    proc = ServerProcess(
        f"--model_config_file={root / 'models.config'}",
        f"--monitoring_config_file={root / 'monitoring.config'}",
    )
    with proc:
        proc.wait_ready()
        proc.wait_versions("m", {1: "AVAILABLE", 2: "AVAILABLE"})
        yield proc


def figures(server: ServerProcess):
    text = requests.get(f"{server.rest}{METRICS}", timeout=10).text
    return model_figures(text, "m")


def test_rest_and_grpc_statuses_classify_alike(server):
    before = figures(server)
    rest = f"{server.rest}/v1/models/m/versions"
    answers = [
        requests.post(f"{rest}/1:predict", json={"instances": [1.0]}, timeout=10),
        requests.post(f"{rest}/1:predict", json={"inputs": {"nope": [1.0]}}, timeout=10),
        requests.post(f"{rest}/1:predict", data=b"{not json", timeout=10),
        requests.post(f"{rest}/2:predict", json={"instances": [1.0]}, timeout=10),
    ]
    assert [a.status_code for a in answers] == [200, 400, 400, 504]
    stub = server.prediction_stub()
    codes = []
    for version, name in ((1, "x"), (1, "nope"), (2, "x")):
        request = predict_request("m", [1.0])
        if name != "x":
            request.inputs[name].CopyFrom(request.inputs["x"])
            del request.inputs["x"]
        request.model_spec.version.value = version
        try:
            stub.Predict(request, timeout=10)
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as err:
            codes.append(err.code())
    assert codes == [
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    ]
    after = figures(server)
    one = after[1].minus(before.get(1) or type(after[1])())
    two = after[2].minus(before.get(2) or type(after[2])())
    assert one is not None and two is not None
    # Version 1: 2 OK, 2 client errors (REST 400 and gRPC INVALID_ARGUMENT on an unknown
    # input), no fault. A body that is not JSON fails before a version is resolved: it is no
    # version's request.
    assert (one.requests, one.client_errors, one.faults) == (4, 2, 0)
    # Version 2: REST 504 and gRPC DEADLINE_EXCEEDED: both server faults.
    assert (two.requests, two.client_errors, two.faults) == (2, 0, 2)
