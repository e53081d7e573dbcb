"""Config mistakes in a ConfigMap never take a model down (real server, client looping).

TF Serving keeps loaded versions when a base path is missing
(file_system_storage_path_source.cc, PollFileSystemForServable), and tfmodel
moves labels from a config file only once their versions are AVAILABLE, so a
rollback is one step.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import requests

from tests.server.savedmodels import export_linear
from tests.server.serverproc import ServerProcess
from tests.server.test_grpc_api import predict_request
from tests.server.test_server_process import KubeletConfigMap, model_config


class ClientLoop:
    """Predicts through `label` (or the latest version) until stopped; records every outcome."""

    def __init__(self, server: ServerProcess, label: str | None = None) -> None:
        self.stub = server.prediction_stub()
        self.label = label
        self.versions: list[int] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            spec = {"version_label": self.label} if self.label else {}
            try:
                reply = self.stub.Predict(predict_request("m", [1.0], **spec), timeout=10)
                self.versions.append(reply.model_spec.version.value)
            except grpc.RpcError as e:
                self.failures.append(f"{e.code().name}: {e.details()}")
            time.sleep(0.005)

    def __enter__(self) -> ClientLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


def config_status(server: ServerProcess) -> dict:
    return requests.get(f"{server.rest}/v1/models", timeout=5).json()["config_status"]


def test_missing_base_path_keeps_serving(tmp_path: Path):
    base = tmp_path / "m"
    export_linear(base, 1, 1.0, 0.0)
    mount = KubeletConfigMap(tmp_path / "etc")
    mount.write(model_config(base, "latest { num_versions: 1 }"))
    with ServerProcess(
        f"--model_config_file={mount.path}",
        "--model_config_file_poll_wait_seconds=1",
        "--file_system_poll_wait_seconds=0.2",
    ) as server:
        server.wait_ready()
        with ClientLoop(server) as client:
            # A typo in the ConfigMap: the new base path does not exist.
            mount.write(model_config(tmp_path / "typo", "latest { num_versions: 1 }"))
            server.wait_for(
                lambda: f"Could not find base path {tmp_path / 'typo'}" in server.log(),
                30,
                "re-pointed config applied",
            )
            time.sleep(2)  # several source polls of the missing path
            assert server.version_states("m") == {1: "AVAILABLE"}
            # The original path vanishing (a volume unmounted) keeps serving too.
            mount.write(model_config(base, "latest { num_versions: 1 }"))
            time.sleep(1)
            base.rename(tmp_path / "moved")
            time.sleep(2)
            assert server.version_states("m") == {1: "AVAILABLE"}
        assert client.failures == []
        assert client.versions and set(client.versions) == {1}
        assert requests.get(f"{server.rest}/readyz", timeout=5).status_code == 200


def test_rollback_to_a_config_whose_label_version_is_unloaded_is_one_step(tmp_path: Path):
    base = tmp_path / "m"
    for version in (7, 8):
        export_linear(base, version, float(version), 0.0)
    mount = KubeletConfigMap(tmp_path / "etc")
    good = model_config(base, "specific { versions: 8 }", {"stable": 8})
    mount.write(good)
    with ServerProcess(
        f"--model_config_file={mount.path}",
        "--model_config_file_poll_wait_seconds=1",
        "--file_system_poll_wait_seconds=0.2",
    ) as server:
        server.wait_ready()
        server.wait_versions("m", {8: "AVAILABLE"})
        with ClientLoop(server, label="stable") as client:
            # Roll forward to 7 (loads 7, moves the label, then unloads 8) ...
            mount.write(model_config(base, "specific { versions: 7 }", {"stable": 7}))
            server.wait_versions("m", {7: "AVAILABLE", 8: "END"}, timeout=60)
            server.wait_for(lambda: client.versions[-1:] == [7], 30, "stable -> 7")
            # ... and back in one step, although version 8 is not loaded any more
            # (TF Serving would refuse the whole config: "not currently available").
            mount.write(good)
            server.wait_versions("m", {8: "AVAILABLE", 7: "END"}, timeout=60)
            server.wait_for(lambda: client.versions[-1:] == [8], 30, "stable -> 8")
        status = config_status(server)
        assert status["ok"], status
        assert status["pending_labels"] == {}
        assert client.failures == [], client.failures[:5]
        assert {7, 8} <= set(client.versions)


def test_label_on_a_version_still_loading_is_pending_then_moves(tmp_path: Path):
    base = tmp_path / "m"
    export_linear(base, 1, 1.0, 0.0)
    mount = KubeletConfigMap(tmp_path / "etc")
    mount.write(model_config(base, "all {}", {"stable": 1}))
    with ServerProcess(
        f"--model_config_file={mount.path}",
        "--model_config_file_poll_wait_seconds=1",
        "--file_system_poll_wait_seconds=0.2",
    ) as server:
        server.wait_ready()
        with ClientLoop(server, label="stable") as client:
            # The label is moved to version 2 before version 2 exists on disk.
            mount.write(model_config(base, "all {}", {"stable": 2}))
            server.wait_for(
                lambda: config_status(server)["pending_labels"] == {"m": {"stable": 2}},
                30,
                "label reported pending",
            )
            assert client.versions[-1] == 1, "stable keeps answering from version 1"
            export_linear(base, 2, 2.0, 0.0)
            server.wait_for(lambda: client.versions[-1:] == [2], 60, "stable -> 2")
        assert config_status(server)["pending_labels"] == {}
        assert client.failures == [], client.failures[:5]
