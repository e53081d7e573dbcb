"""Runs a real tfmodel-server process for tests and talks to it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import requests
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from tests.ports import free_port

STARTUP_TIMEOUT = 240.0


class ServerProcess:
    """`python -m tfmodel_server` on free loopback ports, log kept in a file."""

    def __init__(
        self,
        *args: str,
        grpc_port: int | None = None,
        rest_port: int | None = None,
        env: dict[str, str] | None = None,
    ):
        self.grpc_port = free_port() if grpc_port is None else grpc_port
        self.rest_port = free_port() if rest_port is None else rest_port
        self.args = [
            f"--port={self.grpc_port}",
            f"--rest_api_port={self.rest_port}",
            "--bind_address=127.0.0.1",
            *args,
        ]
        self.log_path = Path(tempfile.mkstemp(prefix="tfmodel-server-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None
        self.env = env
        self._channel: grpc.Channel | None = None

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def start(self) -> ServerProcess:
        env = dict(self.env or os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tfmodel_server", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = STARTUP_TIMEOUT) -> None:
        self._wait(
            lambda: requests.get(f"{self.rest}/healthz", timeout=2).status_code == 200, timeout
        )

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        self._wait(
            lambda: requests.get(f"{self.rest}/readyz", timeout=2).status_code == 200, timeout
        )

    def wait_for(self, predicate, timeout: float = 30.0, what: str = "condition") -> None:
        self._wait(predicate, timeout, what)

    def _wait(self, predicate, timeout: float, what: str = "server") -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"server exited with {self.proc.returncode} while waiting for {what}:\n{self.log()}"
                )
            try:
                if predicate():
                    return
            except (requests.RequestException, grpc.RpcError) as e:
                last = e
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what} ({last!r}):\n{self.log()[-5000:]}")

    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")
        return self._channel

    def prediction_stub(self) -> prediction_service_pb2_grpc.PredictionServiceStub:
        return prediction_service_pb2_grpc.PredictionServiceStub(self.channel())

    def model_stub(self) -> model_service_pb2_grpc.ModelServiceStub:
        return model_service_pb2_grpc.ModelServiceStub(self.channel())

    def version_states(self, model: str) -> dict[int, str]:
        """{version: state name} from GetModelStatus; {} if the model is unknown."""
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = model
        try:
            response = self.model_stub().GetModelStatus(request, timeout=5)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return {}
            raise
        state_name = get_model_status_pb2.ModelVersionStatus.State.Name
        return {s.version: state_name(s.state) for s in response.model_version_status}

    def wait_versions(self, model: str, expected: dict[int, str], timeout: float = 30.0) -> None:
        def matches() -> bool:
            states = self.version_states(model)
            return all(states.get(v) == s for v, s in expected.items())

        self._wait(matches, timeout, f"{model} versions {expected}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
