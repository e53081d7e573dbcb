"""--enable_per_model_batching_parameters: each version's assets.extra/batching_params.pbtxt.

Real servers over gRPC. The shared --batching_parameters_file allows batches of
2 rows, so a 3-row request is refused by a queue using it; a version with its
own file (max 8 rows) takes it, a version without one is not batched at all
(bundle_factory_util.cc GetPerModelBatchingParams).
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from tests.server.savedmodels import export_linear
from tests.server.serverproc import ServerProcess
from tests.server.test_grpc_api import predict_request, y_of

COMMON = "max_batch_size { value: 2 }\nbatch_timeout_micros { value: 0 }\n"
OWN = "max_batch_size { value: 8 }\nbatch_timeout_micros { value: 0 }\n"


def _models(root: Path) -> Path:
    own = export_linear(root / "own", 1, a=2.0, b=0.0)
    (own / "assets.extra").mkdir()
    (own / "assets.extra" / "batching_params.pbtxt").write_text(OWN)
    export_linear(root / "plain", 1, a=3.0, b=0.0)
    bad = export_linear(root / "bad", 1, a=1.0, b=0.0)
    (bad / "assets.extra").mkdir()
    (bad / "assets.extra" / "batching_params.pbtxt").write_text("max_batch_size { value: -1 }\n")
    config = root / "models.config"
    config.write_text(
        "model_config_list {\n"
        + "".join(
            f'  config {{ name: "{name}" base_path: "{root / name}" model_platform: "tensorflow" }}\n'
            for name in ("own", "plain", "bad")
        )
        + "}\n"
    )
    (root / "batching.txt").write_text(COMMON)
    return config


def _server(root: Path, *extra: str) -> ServerProcess:
    return ServerProcess(
        f"--model_config_file={_models(root)}",
        "--enable_batching=true",
        f"--batching_parameters_file={root / 'batching.txt'}",
        "--listen_before_models_load=true",  # "bad" never loads; the others must serve
        *extra,
    )


def _predict(server: ServerProcess, model: str, rows: int):
    return server.prediction_stub().Predict(
        predict_request(model, [float(i) for i in range(rows)]), timeout=30
    )


def test_each_version_batches_with_its_own_file_or_not_at_all(tmp_path):
    with _server(tmp_path, "--enable_per_model_batching_parameters=true") as server:
        server.wait_versions("own", {1: "AVAILABLE"}, timeout=120)
        server.wait_versions("plain", {1: "AVAILABLE"}, timeout=120)
        assert list(y_of(_predict(server, "own", 3))) == [0.0, 2.0, 4.0]
        with pytest.raises(grpc.RpcError) as raised:
            _predict(server, "own", 9)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "larger than maximum input batch size 8" in raised.value.details()
        # No file: not batched, so the shared file's 2-row limit does not apply.
        assert list(y_of(_predict(server, "plain", 5))) == [0.0, 3.0, 6.0, 9.0, 12.0]
        # A file that does not parse fails the version's load, naming the file.
        server.wait_for(
            lambda: (
                "batching_params.pbtxt" in server.log()
                and "max_batch_size must be positive" in server.log()
            ),
            timeout=120,
            what="the bad file's load error",
        )
        assert server.version_states("bad").get(1) != "AVAILABLE"


def test_without_the_flag_every_version_uses_the_shared_file(tmp_path):
    with _server(tmp_path) as server:
        for model in ("own", "plain", "bad"):
            server.wait_versions(model, {1: "AVAILABLE"}, timeout=120)
        for model in ("own", "plain"):
            with pytest.raises(grpc.RpcError) as raised:
                _predict(server, model, 3)
            assert "larger than maximum input batch size 2" in raised.value.details()
