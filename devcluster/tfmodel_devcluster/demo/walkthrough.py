"""`make demo-server`: export v1, serve, query, export v2, hot swap, query again.

Drives a real `tfmodel-server` process on free local ports and stops it with SIGTERM, which
must drain and exit 0. Returns non-zero if any step fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tfmodel_devcluster.demo.export import export_model
from tfmodel_devcluster.demo.mnist_client import do_inference, format_error_rate

MODEL_NAME = "mnist"
V1_ITERATIONS = 100
V2_ITERATIONS = 2000
READY_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 30.0


class WalkthroughError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command() -> list[str]:
    """The `tfmodel-server` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "tfmodel-server"
    if script.exists():
        return [str(script)]
    found = shutil.which("tfmodel-server")
    if found:
        return [found]
    raise WalkthroughError(
        "tfmodel-server not found; install the project (pip install -e .[server])"
    )


class ServerProcess:
    """A tfmodel-server subprocess serving one model, with its output in a log file."""

    def __init__(
        self, model_name: str, base_path: str, log_path: str, extra_args: tuple[str, ...] = ()
    ) -> None:
        self.grpc_port = free_port()
        self.rest_port = free_port()
        self.log_path = log_path
        args = [
            *server_command(),
            f"--port={self.grpc_port}",
            f"--rest_api_port={self.rest_port}",
            f"--model_name={model_name}",
            f"--model_base_path={base_path}",
            "--file_system_poll_wait_seconds=1",
            *extra_args,
        ]
        print("$", " ".join(args))
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise WalkthroughError(
                f"tfmodel-server exited with code {self.proc.returncode}:\n{self.log_tail()}"
            )

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Until GET /readyz answers 200 (every aspired version AVAILABLE)."""
        url = f"http://127.0.0.1:{self.rest_port}/readyz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise WalkthroughError(f"server not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def wait_version_available(
        self, model_name: str, version: int, timeout: float = READY_TIMEOUT_SECONDS
    ) -> None:
        """Until ModelService.GetModelStatus reports `version` AVAILABLE."""
        import grpc
        from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

        available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = model_name
        request.model_spec.version.value = version
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.grpc_target) as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            while time.monotonic() < deadline:
                self._check_alive()
                try:
                    response = stub.GetModelStatus(request, timeout=2)
                    if any(
                        s.version == version and s.state == available
                        for s in response.model_version_status
                    ):
                        return
                except grpc.RpcError:
                    pass  # NOT_FOUND until the poller sees the new directory
                time.sleep(0.2)
        raise WalkthroughError(
            f"version {version} not AVAILABLE after {timeout:.0f}s:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> int:
        """SIGTERM, wait for the drain; kill only if it hangs. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode


def _query(server: ServerProcess, num_tests: int, concurrency: int, expect_version: int) -> float:
    result = do_inference(server.grpc_target, concurrency, num_tests, MODEL_NAME)
    print("\n" + format_error_rate(result.error_rate))
    if result.failed_rpcs:
        raise WalkthroughError(f"{result.failed_rpcs} of {num_tests} requests failed")
    if set(result.versions) != {expect_version}:
        raise WalkthroughError(
            f"expected every answer from version {expect_version}, got {result.versions}"
        )
    return result.error_rate


def run_walkthrough(workdir: str | None, num_tests: int = 1000, concurrency: int = 10) -> int:
    owns_workdir = workdir is None
    root = tempfile.mkdtemp(prefix="tfmodel-demo-") if workdir is None else workdir
    base_path = os.path.abspath(os.path.join(root, MODEL_NAME))
    if os.path.isdir(base_path) and os.listdir(base_path):
        print(f"error: {base_path} is not empty; pass a fresh --workdir", file=sys.stderr)
        return 2
    server: ServerProcess | None = None
    try:
        print(f"== 1. Export version 1 ({V1_ITERATIONS} training iterations) to {base_path}")
        export_model(base_path, V1_ITERATIONS, 1)

        print("== 2. Start tfmodel-server")
        server = ServerProcess(MODEL_NAME, base_path, os.path.join(root, "server.log"))
        server.wait_ready()
        print(f"server ready (gRPC {server.grpc_target}, REST 127.0.0.1:{server.rest_port})")

        print("== 3. Query version 1")
        v1_rate = _query(server, num_tests, concurrency, expect_version=1)

        print(
            f"== 4. Export version 2 ({V2_ITERATIONS} training iterations) into the same base path"
        )
        export_model(base_path, V2_ITERATIONS, 2)
        server.wait_version_available(MODEL_NAME, 2)
        print("version 2 AVAILABLE, no restart")

        print("== 5. Query version 2")
        v2_rate = _query(server, num_tests, concurrency, expect_version=2)

        print("== 6. Stop the server (SIGTERM)")
        code = server.stop()
        server = None
        if code != 0:
            raise WalkthroughError(f"tfmodel-server exited with code {code} after SIGTERM")
        print("server drained and exited 0")

        print(f"\nversion 1: {format_error_rate(v1_rate)}")
        print(f"version 2: {format_error_rate(v2_rate)}")
        if v2_rate >= v1_rate:
            raise WalkthroughError("the error rate did not drop with the better model")
        print("Walk-through OK: the server picked up version 2 and the error rate dropped.")
        return 0
    except (WalkthroughError, OSError, ValueError) as exc:
        print(f"\nWalk-through FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.stop()
        if owns_workdir:
            shutil.rmtree(root, ignore_errors=True)
