"""One batched tfmodel-server on the demo model, for the focused A/B scripts
(bench/event_loop.py, bench/batch_sizes.py); bench/run.py drives the full matrix itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.protoset import build_protoset
from bench.run import (
    BATCHING_PARAMETERS,
    MODEL_NAME,
    REPO,
    SIGNATURE,
    Case,
    _free_port,
    _wait_http_200,
)


def demo_case(work: Path) -> tuple[Case, Path]:
    """The demo model exported under `work`, its batch-1 requests, and the ghz protoset."""
    from tfmodel_devcluster.demo.data import load_digits_split
    from tfmodel_devcluster.demo.export import export_model

    protoset = work / "serving.protoset"
    build_protoset(str(protoset))
    case = Case(work, MODEL_NAME, SIGNATURE, "images", load_digits_split().test_images[:1], "")
    export_model(str(case.base_path), 200, 1, verbose=False)
    return case, protoset


def start_batched(
    case: Case, work: Path, log: Path, *extra: str, batch_timeout_micros: int = 1000
) -> tuple[subprocess.Popen, int, int]:
    """tfmodel-server with bench.run's batching parameters; returns (process, gRPC, REST port)
    once the model answers."""
    grpc_port, rest_port = _free_port(), _free_port()
    params = work / "batching_parameters.txt"
    params.write_text(BATCHING_PARAMETERS % batch_timeout_micros)
    cmd = [
        str(Path(sys.executable).parent / "tfmodel-server"),
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        f"--model_name={case.name}",
        f"--model_base_path={case.base_path}",
        "--enable_batching=true",
        f"--batching_parameters_file={params}",
        *extra,
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    _wait_http_200(f"http://127.0.0.1:{rest_port}/v1/models/{case.name}", proc)
    return proc, grpc_port, rest_port
