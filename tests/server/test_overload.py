"""The server under a burst of legal requests: it refuses what it cannot hold, never dies.

A real tfmodel-server in a memory cgroup created here (768 MiB, like a pod's limit;
the admission budget derived from it, the default), a burst of large REST and gRPC
predicts adding up to over 3x that limit: the server is not OOM-killed, every request
is answered 200 / OK or 429 (Retry-After) / RESOURCE_EXHAUSTED, probes and metrics are
answered throughout, and a valid request succeeds right after. Then, on a server with
a one-request budget, the refusals themselves: shared across protocols, the flag named,
probes and status never refused, chunked bodies counted.
"""

from __future__ import annotations

import http.client
import select
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import orjson
import pytest
import requests
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import get_model_status_pb2, predict_pb2

from tests.server.memcgroup import MemoryCgroup
from tests.server.savedmodels import export_image
from tests.server.serverproc import ServerProcess

MiB = 1 << 20
LIMIT = 768 * MiB
FEATURES = 784  # export_image: images f32[-1, 784] -> scores f32[-1] (row sums)
MONITORING = 'prometheus_config { enable: true path: "/metrics" }\n'
PREDICT = "/tensorflow.serving.PredictionService/Predict"


def _rest_body(rows: int) -> bytes:
    rng = np.random.default_rng(rows)
    return orjson.dumps({"instances": rng.random((rows, FEATURES)).tolist()})


def _grpc_request(rows: int) -> bytes:
    rng = np.random.default_rng(rows)
    values = rng.random((rows, FEATURES), dtype=np.float32)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "image"
    tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_content=values.tobytes())
    tensor.tensor_shape.dim.add(size=rows)
    tensor.tensor_shape.dim.add(size=FEATURES)
    request.inputs["images"].CopyFrom(tensor)
    return request.SerializeToString()


def _server_args(root: Path, *flags: str) -> list[str]:
    export_image(root / "image", 1)
    (root / "monitoring.config").write_text(MONITORING)
    return [
        "--model_name=image",
        f"--model_base_path={root / 'image'}",
        f"--monitoring_config_file={root / 'monitoring.config'}",
        *flags,
    ]


def _refused_counts(server: ServerProcess) -> dict[tuple[str, str], float]:
    counts = {}
    for line in requests.get(f"{server.rest}/metrics", timeout=10).text.splitlines():
        if line.startswith(":tfmodel:requests_refused_total{"):
            labels, value = line.rsplit(" ", 1)
            protocol = labels.split('protocol="')[1].split('"')[0]
            reason = labels.split('reason="')[1].split('"')[0]
            counts[(protocol, reason)] = float(value)
    return counts


def _inflight(server: ServerProcess) -> dict[tuple[str, str], float]:
    """(family, protocol) -> value of the in-flight gauges."""
    values = {}
    for line in requests.get(f"{server.rest}/metrics", timeout=10).text.splitlines():
        for family in (":tfmodel:inflight_requests{", ":tfmodel:inflight_request_bytes{"):
            if line.startswith(family):
                labels, value = line.rsplit(" ", 1)
                protocol = labels.split('protocol="')[1].split('"')[0]
                values[(family[:-1], protocol)] = float(value)
    return values


def _valid_predict_ok(server: ServerProcess) -> None:
    row = [float(i % 7) for i in range(FEATURES)]
    r = requests.post(
        f"{server.rest}/v1/models/image:predict", json={"instances": [row]}, timeout=60
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": [pytest.approx(sum(row))]}


# ---- a burst 3x the memory limit -----------------------------------------------------------


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("overload")
    with MemoryCgroup(LIMIT) as cgroup:
        server = ServerProcess(*_server_args(root), preexec_fn=cgroup.enter)
        with server:
            server.wait_ready()
            yield server, cgroup


def test_burst_of_three_times_the_memory_limit(limited):
    server, cgroup = limited
    assert "admission control: in-flight prediction requests up to" in server.log()
    # 1700 rows (25.7 MB): under the derived budget (about 28 MB here once the REST decode
    # processes' own memory is counted), so REST requests are admitted or refused (429),
    # never too large for the server (413).
    rest_body, grpc_raw = _rest_body(1700), _grpc_request(4000)
    # gRPC messages are received whole by grpc core before any Python code (or the budget)
    # sees them, so concurrent gRPC calls x message size is outside the budget's reach
    # (docs/overload.md); the burst's bulk is REST, which is refused before its body is read.
    n_rest, n_grpc = 92, 8
    total = n_rest * len(rest_body) + n_grpc * len(grpc_raw)
    assert total >= 3 * LIMIT, f"burst of {total / MiB:.0f} MiB"
    url = f"{server.rest}/v1/models/image:predict"
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    predict = channel.unary_unary(PREDICT)

    def rest_call(_: int) -> str:
        try:
            r = requests.post(url, data=rest_body, timeout=300)
        except requests.RequestException as e:
            return f"REST {type(e).__name__}: {e}"
        if r.status_code == 429:
            assert r.headers["Retry-After"] == "1"
            assert "--max_inflight_request_bytes" in r.json()["error"]
            return "refused"
        assert r.status_code == 200, r.text[:500]
        assert len(r.json()["predictions"]) == 1700
        return "ok"

    def grpc_call(_: int) -> str:
        try:
            response = predict_pb2.PredictResponse.FromString(predict(grpc_raw, timeout=300))
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                return f"gRPC {e.code().name}: {e.details()}"
            assert "--max_inflight_request_bytes" in e.details()
            return "refused"
        assert response.outputs["scores"].tensor_shape.dim[0].size == 4000
        return "ok"

    probes: list[int] = []
    done = threading.Event()

    def probe() -> None:
        # Probes and the metrics page are never refused, and answered during the burst.
        with requests.Session() as session:
            while not done.is_set():
                for path in ("/healthz", "/readyz", "/metrics"):
                    try:
                        probes.append(session.get(f"{server.rest}{path}", timeout=60).status_code)
                    except requests.RequestException:
                        probes.append(-1)
                done.wait(0.1)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        with ThreadPoolExecutor(n_rest + n_grpc) as pool:
            rest = pool.map(rest_call, range(n_rest))
            grpc_ = pool.map(grpc_call, range(n_grpc))
            outcomes = list(rest) + list(grpc_)
    finally:
        done.set()
        prober.join()
        channel.close()
    failed = [o for o in outcomes if o not in ("ok", "refused")]
    alive = server.proc is not None and server.proc.poll() is None
    assert alive and not failed, (failed[:5], cgroup.oom_kills(), server.log()[-3000:])
    assert cgroup.oom_kills() == 0
    assert len(outcomes) == n_rest + n_grpc
    assert "ok" in outcomes and "refused" in outcomes, outcomes
    assert probes and set(probes) == {200}, probes
    refused = _refused_counts(server)
    assert sum(refused.values()) == outcomes.count("refused"), refused
    _valid_predict_ok(server)


def test_flood_of_large_grpc_messages(limited):
    """grpc core takes in a call's whole message before Python code runs, so the budget
    alone cannot stop concurrent large gRPC calls: 48 x 12.5 MB (~0.8x the limit on the
    wire, ~1.6x once copied out of grpc core) OOM-killed the server before the receive
    slots (admission.receiving_grpc) and the BDP-probe default. Every call is answered
    OK or RESOURCE_EXHAUSTED, and the server lives on."""
    server, cgroup = limited
    raw = _grpc_request(4000)
    calls, connections = 48, 8
    assert calls * len(raw) >= 0.7 * LIMIT
    channels = [grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") for _ in range(connections)]
    before = _refused_counts(server)

    def call(i: int) -> str:
        try:
            channels[i % connections].unary_unary(PREDICT)(raw, timeout=300)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                return f"gRPC {e.code().name}: {e.details()}"
            assert "retry later" in e.details() or "--max_inflight" in e.details(), e.details()
            return "refused"
        return "ok"

    try:
        with ThreadPoolExecutor(calls) as pool:
            outcomes = list(pool.map(call, range(calls)))
    finally:
        for channel in channels:
            channel.close()
    alive = server.proc is not None and server.proc.poll() is None
    failed = [o for o in outcomes if o not in ("ok", "refused")]
    assert alive and not failed, (failed[:5], cgroup.oom_kills(), server.log()[-3000:])
    assert cgroup.oom_kills() == 0
    assert "ok" in outcomes, outcomes
    after = _refused_counts(server)
    grpc_refused = sum(v for (p, _), v in after.items() if p == "grpc") - sum(
        v for (p, _), v in before.items() if p == "grpc"
    )
    assert grpc_refused == outcomes.count("refused"), (before, after)
    _valid_predict_ok(server)


# ---- refusals, one request at a time ---------------------------------------------------------


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("one-slot")
    args = _server_args(root, "--max_inflight_requests=1", f"--max_inflight_request_bytes={MiB}")
    with ServerProcess(*args) as server:
        server.wait_ready()
        yield server


class _HeldRequest:
    """A chunked predict whose headers and first chunk are sent, the rest held back.

    Admitted, it holds its slot until finish(); refused (a poll of the test was in
    flight when it arrived), the 429 is already readable on its socket.
    """

    def __init__(self, server: ServerProcess) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=60)
        self.conn.putrequest("POST", "/v1/models/image:predict")
        self.conn.putheader("Content-Type", "application/json")
        self.conn.putheader("Transfer-Encoding", "chunked")
        self.conn.endheaders()
        self._send(b'{"instances": [[' + b",".join([b"1.0"] * (FEATURES // 2)))

    def _send(self, data: bytes) -> None:
        self.conn.send(b"%x\r\n%s\r\n" % (len(data), data))

    def refused(self) -> bool:
        assert self.conn.sock is not None
        return bool(select.select([self.conn.sock], [], [], 0)[0])

    def finish(self) -> http.client.HTTPResponse:
        self._send(b"," + b",".join([b"1.0"] * (FEATURES - FEATURES // 2)) + b"]]}")
        self.conn.send(b"0\r\n\r\n")
        return self.conn.getresponse()


def test_refusals_are_shared_named_and_leave_probes_alone(one_slot):
    server = one_slot
    url = f"{server.rest}/v1/models/image:predict"
    before = _refused_counts(server)
    held = [_HeldRequest(server)]

    def slot_held() -> bool:
        # A cheap POST (a 404 when admitted) is refused only while the held one is in.
        if held[0].refused():
            held[0].conn.close()
            held[0] = _HeldRequest(server)
            return False
        status = requests.post(f"{server.rest}/v1/models/nope:predict", data=b"{}").status_code
        return status == 429

    server.wait_for(slot_held, what="the held request to be admitted")
    try:
        # The held request is the one in flight (the gauges; /metrics is never admitted).
        inflight = _inflight(server)
        assert inflight[(":tfmodel:inflight_requests", "rest")] == 1, inflight
        assert inflight[(":tfmodel:inflight_request_bytes", "rest")] >= 64 * 1024, inflight
        assert inflight[(":tfmodel:inflight_requests", "grpc")] == 0, inflight
        r = requests.post(url, data=_rest_body(1), timeout=30)
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "1"
        assert "--max_inflight_requests" in r.json()["error"]
        request = predict_pb2.PredictRequest.FromString(_grpc_request(1))
        with pytest.raises(grpc.RpcError) as info:
            server.prediction_stub().Predict(request, timeout=30)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max_inflight_requests" in info.value.details()
        # Never refused: probes, metrics, status and metadata, on both protocols.
        for path in ("/healthz", "/readyz", "/metrics", "/v1/models/image", "/v1/models"):
            assert requests.get(f"{server.rest}{path}", timeout=30).status_code == 200, path
        assert requests.get(f"{url[: -len(':predict')]}/metadata", timeout=30).status_code == 200
        status = get_model_status_pb2.GetModelStatusRequest()
        status.model_spec.name = "image"
        assert server.model_stub().GetModelStatus(status, timeout=30).model_version_status
    finally:
        response = held[0].finish()
        body = response.read()
        held[0].conn.close()
    assert response.status == 200, body
    assert orjson.loads(body) == {"predictions": [pytest.approx(float(FEATURES))]}
    # Released once the answer is written (a moment after the client has it).
    server.wait_for(
        lambda: _inflight(server)[(":tfmodel:inflight_requests", "rest")] == 0,
        what="the in-flight gauge to fall back to 0",
    )
    assert _inflight(server)[(":tfmodel:inflight_request_bytes", "rest")] == 0
    after = _refused_counts(server)
    assert (
        after.get(("grpc", "inflight_requests"), 0) - before.get(("grpc", "inflight_requests"), 0)
        == 1
    )
    assert after.get(("rest", "inflight_requests"), 0) > before.get(
        ("rest", "inflight_requests"), 0
    )
    _valid_predict_ok(server)


def test_bodies_larger_than_the_budget(one_slot):
    server = one_slot
    url = f"{server.rest}/v1/models/image:predict"
    body = _rest_body(200)  # ~3 MB > the 1 MiB budget
    assert len(body) > MiB
    r = requests.post(url, data=body, timeout=60)  # Content-Length: refused before reading
    assert r.status_code == 413 and "Retry-After" not in r.headers
    assert "--max_inflight_request_bytes" in r.json()["error"]

    def chunked():
        for i in range(0, len(body), 64 * 1024):
            yield body[i : i + 64 * 1024]

    r = requests.post(url, data=chunked(), timeout=60)  # counted as it arrives
    assert r.status_code == 413, r.text
    assert "--max_inflight_request_bytes" in r.json()["error"]
    small = _rest_body(20)

    def small_chunked():
        yield small[:1000]
        yield small[1000:]

    r = requests.post(url, data=small_chunked(), timeout=60)
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 20
    assert _refused_counts(server).get(("rest", "larger_than_budget")) == 2
