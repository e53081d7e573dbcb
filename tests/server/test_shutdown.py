"""SIGTERM drops nothing and fits the pod's grace period (issue 13 section 5).

Each test runs a real server process over a SavedModel that spins for as long
as the request asks (`n` loop iterations, about 4 µs each), with real
tensorflow-serving-api stubs and real HTTP, and sends it SIGTERM.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.server.serverproc import ServerProcess
from tests.server.test_server_process import _export_slow

# ~0.05-0.5 s of TF work a call on a busy 2-core machine.
SPIN = 10_000


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("shutdown") / "slow"
    _export_slow(base, 1)
    return base


def _server(base: Path, *flags: str) -> ServerProcess:
    server = ServerProcess("--model_name=slow", f"--model_base_path={base}", *flags)
    server.start()
    server.wait_ready()
    return server


@dataclass
class Call:
    kind: str
    start: float
    end: float
    ok: bool
    detail: str


class Load:
    """Closed-loop clients (gRPC stubs and HTTP sessions) recording every call."""

    def __init__(self, server: ServerProcess, grpc_clients: int, rest_clients: int) -> None:
        self.server = server
        self.calls: list[Call] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._grpc) for _ in range(grpc_clients)]
        self._threads += [threading.Thread(target=self._rest) for _ in range(rest_clients)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _loop(self, kind: str, call: Callable[[], tuple[bool, str]]) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            ok, detail = call()
            self.calls.append(Call(kind, start, time.monotonic(), ok, detail))
            if not ok:
                time.sleep(0.05)  # the port is closed: do not spin

    def _grpc(self) -> None:
        channel = grpc.insecure_channel(f"127.0.0.1:{self.server.grpc_port}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "slow"
        request.inputs["n"].CopyFrom(tf.make_tensor_proto(np.array([SPIN], np.int32)))

        def call() -> tuple[bool, str]:
            try:
                response = stub.Predict(request, timeout=30)
                return int(tf.make_ndarray(response.outputs["y"])[0]) == SPIN, ""
            except grpc.RpcError as e:
                return False, e.code().name

        self._loop("grpc", call)
        channel.close()

    def _rest(self) -> None:
        session = requests.Session()
        url = f"{self.server.rest}/v1/models/slow:predict"

        def call() -> tuple[bool, str]:
            try:
                r = session.post(url, json={"instances": [SPIN]}, timeout=30)
                return r.status_code == 200 and r.json() == {"predictions": [SPIN]}, r.text
            except requests.RequestException as e:
                return False, type(e).__name__

        self._loop("rest", call)
        session.close()

    def in_flight_at(self, moment: float) -> list[Call]:
        return [c for c in self.calls if c.start < moment <= c.end]


def _probe_readiness(server: ServerProcess, until: threading.Event, seen: list) -> None:
    """What a kubelet does: a new connection for each GET /readyz."""
    while not until.is_set():
        at = time.monotonic()
        try:
            status: int | str = requests.get(f"{server.rest}/readyz", timeout=2).status_code
        except requests.ConnectionError:
            status = "refused"
        seen.append((at, status))
        time.sleep(0.05)


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
def test_sigterm_under_load_fails_no_in_flight_request(slow_model: Path, event_loop: str) -> None:
    delay, drain = 2.0, 10.0
    server = _server(
        slow_model,
        f"--shutdown_readiness_delay_seconds={delay}",
        f"--drain_timeout_seconds={drain}",
        f"--event_loop={event_loop}",
    )
    try:
        probes: list[tuple[float, int | str]] = []
        probing = threading.Event()
        prober = threading.Thread(target=_probe_readiness, args=(server, probing, probes))
        with Load(server, grpc_clients=8, rest_clients=4) as load:
            time.sleep(2.0)
            prober.start()
            time.sleep(0.3)
            sigterm_at = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            assert server.proc.wait(delay + drain + 5) == 0
            exited_at = time.monotonic()
            probing.set()
        prober.join(10)

        in_flight = load.in_flight_at(sigterm_at)
        assert {c.kind for c in in_flight} == {"grpc", "rest"}
        assert [c for c in in_flight if not c.ok] == []
        # Calls sent during the readiness delay are served too (new connections
        # included: requests' sessions reconnect after `Connection: close`).
        during_delay = [c for c in load.calls if sigterm_at < c.start < sigterm_at + delay - 0.2]
        assert during_delay and all(c.ok for c in during_delay), during_delay
        assert {c.kind for c in during_delay} == {"grpc", "rest"}
        # Every call that got an answer got a right one; the rest were refused at
        # connect time, after the listener closed.
        failed = [c for c in load.calls if not c.ok]
        assert all(c.start >= sigterm_at + delay - 0.2 for c in failed), failed
        stop_at = sigterm_at + delay
        # grpc.aio's server.stop() cancels a call that arrives on a kept-alive
        # connection in the instant shutdown begins (grpc/grpc#41785): CANCELLED,
        # never later than that instant; afterwards the port is closed.
        refused = [c for c in failed if not (c.detail == "CANCELLED" and c.kind == "grpc")]
        raced = [c for c in failed if c not in refused]
        assert all(c.start <= stop_at + 0.5 for c in raced), raced
        assert {c.detail for c in refused} <= {"UNAVAILABLE", "ConnectionError"}, failed

        # The probe saw 200, then 503 for the delay, then a closed port.
        statuses = [s for _, s in probes]
        assert statuses[0] == 200 and statuses[-1] == "refused", statuses
        first_503 = next(at for at, s in probes if s == 503)
        first_refused = next(at for at, s in probes if s == "refused")
        assert first_503 < sigterm_at + 0.5
        assert first_refused > sigterm_at + delay - 0.2
        assert all(s == 503 for at, s in probes if first_503 <= at < first_refused)
        assert exited_at - sigterm_at < delay + drain
    finally:
        server.stop()


def test_stalled_rest_client_cannot_hold_exit_past_the_drain_timeout(slow_model: Path) -> None:
    drain = 2.0
    # The body deadline (60 s by default) is longer than the drain: only the
    # drain's own bound can end this connection in time.
    server = _server(slow_model, f"--drain_timeout_seconds={drain}")
    sock = socket.create_connection(("127.0.0.1", server.rest_port), timeout=10)
    try:
        sock.sendall(
            b"POST /v1/models/slow:predict HTTP/1.1\r\nHost: x\r\n"
            b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"instances": ['
        )
        time.sleep(0.5)  # the handler is now waiting for the rest of the body
        start = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(drain + 30) == 0
        elapsed = time.monotonic() - start
        assert drain - 0.2 < elapsed < drain + 2.0, elapsed
        assert "aborting 1 REST connection(s) still open" in server.log()
    finally:
        sock.close()
        server.stop()


def test_hours_of_tensorflow_work_in_flight_cannot_hold_exit(slow_model: Path) -> None:
    drain = 1.0
    server = _server(slow_model, f"--drain_timeout_seconds={drain}")
    try:
        # Hours of TF work on each surface: only the drain's deadline ends them.
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "slow"
        request.inputs["n"].CopyFrom(tf.make_tensor_proto(np.array([2**31 - 1], np.int32)))
        grpc_call = server.prediction_stub().Predict.future(request, timeout=120)
        rest_result: list[object] = []

        def rest_call() -> None:
            try:
                url = f"{server.rest}/v1/models/slow:predict"
                rest_result.append(requests.post(url, json={"instances": [2**31 - 1]}, timeout=120))
            except requests.RequestException as e:
                rest_result.append(e)

        rest_thread = threading.Thread(target=rest_call)
        rest_thread.start()
        time.sleep(1.0)
        start = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(drain + 30) == 0
        elapsed = time.monotonic() - start
        assert elapsed < drain + 2.0, elapsed
        with pytest.raises(grpc.RpcError) as info:
            grpc_call.result(timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        rest_thread.join(10)
        assert len(rest_result) == 1 and isinstance(rest_result[0], requests.ConnectionError)
    finally:
        server.stop()


def test_exit_deadline_ends_a_process_that_does_not_finish() -> None:
    # The last resort behind the drain (a call that ignores cancellation).
    code = (
        "import time; from tfmodel_server.shutdown import arm_exit_deadline; "
        "arm_exit_deadline(0.5); time.sleep(30)"
    )
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert done.returncode == 1
    assert time.monotonic() - start < 10


def _client_ports(server_port: int) -> set[int]:
    """Peer ports of the established TCP connections to `server_port` (from /proc/net)."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, remote, state = line.split()[1:4]
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == server_port:
                ports.add(int(remote.rsplit(":", 1)[1], 16))
    return ports


def test_connection_age_cycles_grpc_connections_without_failing_a_call(slow_model: Path) -> None:
    """The operator's gRPC channel arguments: each connection gets a graceful GOAWAY after
    about a second here, so clients reconnect (in Kubernetes: to a pod still among the
    endpoints) well before a terminating pod's drain; the cycling itself costs no call."""
    server = _server(
        slow_model,
        "--grpc_channel_arguments=grpc.max_connection_age_ms=1000,"
        "grpc.max_connection_age_grace_ms=30000",
    )
    seen: set[int] = set()
    try:
        with Load(server, grpc_clients=4, rest_clients=0) as load:
            until = time.monotonic() + 6.0
            while time.monotonic() < until:
                seen |= _client_ports(server.grpc_port)
                time.sleep(0.1)
    finally:
        server.stop()
    # The 4 channels share one connection (grpc's global subchannel pool): without the
    # argument one client port for the whole run, with it one per ~1 s lifetime.
    assert len(seen) >= 4, seen
    assert len(load.calls) > 20
    assert [c for c in load.calls if not c.ok] == []
