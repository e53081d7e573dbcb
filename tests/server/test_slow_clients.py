"""Slow and idle REST clients cannot hold sockets (issue 13 section 3).

Real sockets against a real server process with short limits: a client that
sends its headers or body a byte at a time, or nothing at all, is answered 408
(or simply closed when idle) after the limit, the server keeps answering
others meanwhile, and connections past --rest_api_max_connections get 503.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
import requests
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

from tests.server.savedmodels import export_linear
from tests.server.serverproc import ServerProcess

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
IDLE_TIMEOUT = 2.0
MAX_CONNECTIONS = 6


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("slow_clients") / "m"
    export_linear(base, 1, 2.0, 1.0)
    proc = ServerProcess(
        "--model_name=m",
        f"--model_base_path={base}",
        f"--rest_api_header_timeout_seconds={HEADER_TIMEOUT}",
        f"--rest_api_body_timeout_seconds={BODY_TIMEOUT}",
        f"--rest_api_idle_timeout_seconds={IDLE_TIMEOUT}",
        f"--rest_api_max_connections={MAX_CONNECTIONS}",
        f"--grpc_channel_arguments=grpc.max_allowed_incoming_connections={MAX_CONNECTIONS}",
    )
    with proc:
        proc.wait_ready()
        yield proc


def _connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.rest_port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _trickle(sock: socket.socket, data: bytes, interval: float, stop: threading.Event) -> None:
    """Send `data` one byte every `interval` seconds until the server closes."""
    for byte in data:
        if stop.wait(interval):
            return
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return


def _read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes; and when it closed (monotonic)."""
    sock.settimeout(timeout)
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks), time.monotonic()


def _predict_ok(server: ServerProcess) -> bool:
    r = requests.post(f"{server.rest}/v1/models/m:predict", json={"instances": [1.0]}, timeout=5)
    return r.status_code == 200 and r.json() == {"predictions": [3.0]}


def _slow_client(server: ServerProcess, head: bytes, trickled: bytes) -> tuple[bytes, float]:
    """Send `head` at once, then `trickled` a byte every 0.2 s; while it trickles,
    other clients are served. Returns the reply and seconds until the close."""
    sock = _connect(server)
    stop = threading.Event()
    try:
        start = time.monotonic()
        sock.sendall(head)
        sender = threading.Thread(target=_trickle, args=(sock, trickled, 0.2, stop))
        sender.start()
        # The slow client does not hold up anyone else.
        assert all(_predict_ok(server) for _ in range(5))
        reply, closed_at = _read_until_closed(sock, timeout=15)
        stop.set()
        sender.join(5)
        return reply, closed_at - start
    finally:
        stop.set()
        sock.close()


def test_headers_sent_a_byte_at_a_time_get_408_and_close(server: ServerProcess) -> None:
    request = b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200 + b"\r\n\r\n"
    reply, elapsed = _slow_client(server, b"", request)
    assert reply.startswith(b"HTTP/1.1 408"), reply
    assert b"Connection: close" in reply
    # Closed at the header deadline, long before the 40 s the trickle would take.
    assert HEADER_TIMEOUT - 0.1 <= elapsed < HEADER_TIMEOUT + 2.0, elapsed


def test_body_sent_a_byte_at_a_time_gets_408_and_close(server: ServerProcess) -> None:
    body = b'{"instances": [' + b"1.0, " * 100 + b"1.0]}"
    head = (
        f"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    reply, elapsed = _slow_client(server, head, body)
    assert reply.startswith(b"HTTP/1.1 408"), reply
    assert b"Request body not received within 1 s." in reply
    assert BODY_TIMEOUT - 0.1 <= elapsed < BODY_TIMEOUT + 2.0, elapsed


def test_a_complete_request_on_a_slow_connection_is_served(server: ServerProcess) -> None:
    # The deadlines are per request: a keep-alive connection with several quick
    # requests, each well within the limits, is served throughout.
    with requests.Session() as session:
        for _ in range(3):
            r = session.get(f"{server.rest}/v1/models/m", timeout=5)
            assert r.status_code == 200
            time.sleep(HEADER_TIMEOUT * 0.8)


def test_idle_keep_alive_connection_is_closed(server: ServerProcess) -> None:
    sock = _connect(server)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        idle_since = time.monotonic()
        rest, closed_at = _read_until_closed(sock, timeout=15)
        assert rest == b""
        assert IDLE_TIMEOUT - 0.1 <= closed_at - idle_since < IDLE_TIMEOUT + 2.0
    finally:
        sock.close()


def test_connection_that_never_sends_is_closed(server: ServerProcess) -> None:
    sock = _connect(server)
    try:
        start = time.monotonic()
        reply, closed_at = _read_until_closed(sock, timeout=15)
        assert reply == b""
        assert closed_at - start < IDLE_TIMEOUT + 2.0
    finally:
        sock.close()


def test_connections_past_the_limit_get_503_and_are_logged(server: ServerProcess) -> None:
    held = [_connect(server) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)  # the server has accepted all of them
        extra = _connect(server)
        try:
            reply, _ = _read_until_closed(extra, timeout=5)
        finally:
            extra.close()
        assert reply.startswith(b"HTTP/1.1 503"), reply
        assert b"Too many open connections" in reply
    finally:
        for sock in held:
            sock.close()
    # Slots free again once the held connections close.
    server.wait_for(lambda: _predict_ok(server), timeout=10, what="a free connection slot")
    log = server.log()
    assert "REST connection limit reached (--rest_api_max_connections=6)" in log


def test_grpc_connections_past_the_channel_argument_cap_are_refused(server: ServerProcess) -> None:
    # gRPC core's own cap, passed through --grpc_channel_arguments (README).
    channels = [
        grpc.insecure_channel(
            f"127.0.0.1:{server.grpc_port}", options=[("grpc.use_local_subchannel_pool", 1)]
        )
        for _ in range(MAX_CONNECTIONS + 1)
    ]
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "m"
    codes = []
    try:
        for channel in channels:
            try:
                model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=5)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as e:
                codes.append(e.code())
    finally:
        for channel in channels:
            channel.close()
    assert codes == [grpc.StatusCode.OK] * MAX_CONNECTIONS + [grpc.StatusCode.UNAVAILABLE]
