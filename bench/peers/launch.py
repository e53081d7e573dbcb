"""Start a peer server (in its own venv) on 127.0.0.1 for one SavedModel signature."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
V2_GRPC_MODULE = {
    "mlserver": "mlserver.grpc.dataplane_pb2",
    "kserve": "kserve.protocol.grpc.grpc_predict_v2_pb2",
}
V2_INFER_METHOD = "inference.GRPCInferenceService.ModelInfer"


QUIET_LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "WARNING"},
    "loggers": {
        name: {"level": "WARNING"}
        for name in ("mlserver", "mlserver.grpc", "mlserver.rest", "uvicorn", "uvicorn.access")
    },
}


@dataclass(frozen=True)
class PeerConfig:
    peer: str  # "mlserver" or "kserve"
    name: str  # shown in labels, e.g. "MLServer, adaptive batching"
    max_batch_size: int = 0  # MLServer adaptive batching when > 1
    max_batch_time_s: float = 0.0
    rest_v1: bool = False  # KServe also answers TF Serving-style v1 REST

    def label(self, protocol: str) -> str:
        return f"{self.name} {protocol}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PeerProcess:
    proc: subprocess.Popen
    http_port: int
    grpc_port: int
    log: object

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()
        return self.proc.returncode


def start(
    config: PeerConfig,
    python: Path,
    model_name: str,
    model_dir: Path,
    signature: str,
    work: Path,
    log_path: Path,
) -> PeerProcess:
    http_port, grpc_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": f"{HERE}{os.pathsep}{REPO}",
    }
    if config.peer == "mlserver":
        root = work / f"mlserver-{config.max_batch_size}-{model_name}"
        model_root = root / model_name
        model_root.mkdir(parents=True, exist_ok=True)
        (root / "settings.json").write_text(
            json.dumps(
                {
                    "host": "127.0.0.1",
                    "http_port": http_port,
                    "grpc_port": grpc_port,
                    "metrics_port": _free_port(),
                    # 0: the model runs in the server process, like tfmodel --workers=1
                    # (1, the default, adds a worker process and a queue hop per request)
                    "parallel_workers": 0,
                    # no per-request access log lines (tfmodel writes none either)
                    "logging_settings": QUIET_LOGGING,
                }
            )
        )
        model_settings = {
            "name": model_name,
            "implementation": "mlserver_runtime.TFSavedModel",
            "parameters": {"uri": str(model_dir), "extra": {"signature": signature}},
        }
        if config.max_batch_size > 1:
            model_settings["max_batch_size"] = config.max_batch_size
            model_settings["max_batch_time"] = config.max_batch_time_s
        (model_root / "model-settings.json").write_text(json.dumps(model_settings))
        args = [str(python.parent / "mlserver"), "start", str(root)]
    elif config.peer == "kserve":
        args = [
            str(python), str(HERE / "kserve_model.py"), f"--model_name={model_name}",
            f"--model_dir={model_dir}", f"--signature={signature}",
            f"--http_port={http_port}", f"--grpc_port={grpc_port}",
        ]  # fmt: skip
    else:
        raise ValueError(config.peer)
    log = open(log_path, "wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
    return PeerProcess(proc, http_port, grpc_port, log)


def v2_request(python: Path, peer: str, work: Path, model: str, input_name: str, row) -> tuple:
    """(protoset, request_bin) for ghz, written by the peer's own protos."""
    protoset = work / f"v2-{peer}.protoset"
    request_bin = work / f"v2-{peer}-{model}.bin"
    subprocess.run(
        [str(python), "-m", "bench.peers.v2_request", V2_GRPC_MODULE[peer], str(protoset),
         str(request_bin), model, input_name, json.dumps([float(v) for v in row])],
        check=True, timeout=300, cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )  # fmt: skip
    return protoset, request_bin


def v2_body(input_name: str, row) -> str:
    values = [float(v) for v in row]
    return json.dumps(
        {"inputs": [{"name": input_name, "shape": [1, len(values)], "datatype": "FP32",
                     "data": values}]}
    )  # fmt: skip
