"""`--workers 2` against real processes: one metrics page, one config, a dead worker restarted."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
from pathlib import Path

import grpc
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2

from tests.server.savedmodels import export_linear
from tests.server.serverproc import ServerProcess

METRICS = "/monitoring/prometheus/metrics"
CONFIG = """
model_config_list {{
  {models}
}}
"""
MODEL = 'config {{ name: "{name}" base_path: "{base}" model_platform: "tensorflow" }}'


def _config(root: Path, *names: str) -> str:
    return CONFIG.format(models=" ".join(MODEL.format(name=n, base=root / n) for n in names))


def _workers(server: ServerProcess) -> list[int]:
    """Pids of the spawned worker processes (not multiprocessing's resource tracker)."""
    assert server.proc is not None
    pid = server.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    found = []
    for child in children:
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in cmdline:
            found.append(int(child))
    return sorted(found)


def _metrics_socket(pid: int) -> str | None:
    """The UNIX socket path a worker serves its own metrics page on (from /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        match = re.fullmatch(r"socket:\[(\d+)\]", target)
        if match:
            inodes.add(match.group(1))
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[6] in inodes and fields[7].endswith(".sock"):
            if re.search(r"/metrics-\d+\.sock$", fields[7]):
                return fields[7]
    return None


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("worker", timeout=10)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.unix_path)


def _page(path: str) -> str:
    connection = _UnixHTTP(path)
    try:
        connection.request("GET", "/metrics")
        return connection.getresponse().read().decode()
    finally:
        connection.close()


def _serving(server: ServerProcess) -> bool:
    """Both workers have opened their ports (each marks it beside its metrics socket)."""
    pids = _workers(server)
    sockets = [_metrics_socket(p) for p in pids]
    if len(pids) != 2 or not all(sockets):
        return False
    return all(
        os.path.exists(re.sub(r"metrics-(\d+)\.sock$", r"serving-\1", s or "")) for s in sockets
    )


def _request_count(text: str, model: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == ":tensorflow:serving:request_count":
            total += sum(s.value for s in family.samples if s.labels.get("model_name") == model)
    return total


def _fresh_get(server: ServerProcess, path: str) -> requests.Response:
    """A new connection each time: SO_REUSEPORT spreads them over the workers."""
    return requests.get(f"{server.rest}{path}", headers={"Connection": "close"}, timeout=10)


@pytest.fixture(scope="module")
def workers_server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("workers")
    export_linear(root / "a", 1, 1.0, 0.0)
    export_linear(root / "b", 1, 2.0, 0.0)
    (root / "models.config").write_text(_config(root, "a"))
    (root / "monitoring.config").write_text(
        f'prometheus_config {{ enable: true path: "{METRICS}" }}\n'
    )
    server = ServerProcess(
        "--workers=2",
        f"--model_config_file={root / 'models.config'}",
        "--model_config_file_poll_wait_seconds=1",
        f"--monitoring_config_file={root / 'monitoring.config'}",
    )
    with server:
        server.wait_ready()
        server.wait_for(lambda: _serving(server), timeout=240, what="both workers serving")
        yield server, root


def test_metrics_page_sums_every_worker(workers_server):
    server, _ = workers_server
    sent = 40
    for _ in range(sent):
        response = requests.post(
            f"{server.rest}/v1/models/a:predict",
            json={"instances": [1.0]},
            headers={"Connection": "close"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
    per_worker = [_request_count(_page(_metrics_socket(p) or ""), "a") for p in _workers(server)]
    assert sum(per_worker) == sent
    assert all(n > 0 for n in per_worker), f"connections all reached one worker: {per_worker}"
    # Whichever worker answers the scrape, the page counts every worker's requests.
    for _ in range(8):
        assert _request_count(_fresh_get(server, METRICS).text, "a") == sent


def test_config_file_reload_reaches_every_worker_and_the_rpc_is_refused(workers_server):
    server, root = workers_server
    (root / "models.config").write_text(_config(root, "a", "b"))

    def every_worker_has_b() -> bool:
        # 8 fresh connections in a row all list model b.
        for _ in range(8):
            names = {m["name"] for m in _fresh_get(server, "/v1/models").json()["models"]}
            if names != {"a", "b"}:
                return False
        return True

    server.wait_for(every_worker_has_b, timeout=120, what="model b on every worker")

    request = model_management_pb2.ReloadConfigRequest()
    request.config.CopyFrom(model_server_config_pb2.ModelServerConfig())
    for _ in range(4):
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            with pytest.raises(grpc.RpcError) as refused:
                stub.HandleReloadConfigRequest(request, timeout=10)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "--workers=2" in (refused.value.details() or "")
    # Nothing changed anywhere.
    for _ in range(8):
        names = {m["name"] for m in _fresh_get(server, "/v1/models").json()["models"]}
        assert names == {"a", "b"}


def test_a_dead_worker_is_started_again(workers_server):
    server, _ = workers_server
    before = _workers(server)
    os.kill(before[0], signal.SIGKILL)
    server.wait_for(
        lambda: before[0] not in _workers(server) and _serving(server),
        timeout=240,
        what="the killed worker replaced and serving",
    )
    assert before[1] in _workers(server)
    # The replacement serves: every fresh connection is answered.
    for _ in range(10):
        assert _fresh_get(server, "/v1/models/a").status_code == 200
