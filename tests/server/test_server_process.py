"""Whole-process behaviour: flags, config reload via a kubelet-style mount, versions
appearing and disappearing on disk, failed loads, half-copied dirs, SIGTERM drain."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2, predict_pb2

from tests.ports import free_port
from tests.server.savedmodels import (
    export_linear,
    write_corrupt_version,
    write_partial_version,
)
from tests.server.serverproc import ServerProcess
from tests.server.test_grpc_api import predict_request, y_of

MODEL_CONFIG = """model_config_list {{
  config {{
    name: "m"
    base_path: "{base}"
    model_platform: "tensorflow"
    model_version_policy {{ {policy} }}
{labels}  }}
}}
"""


def model_config(base: Path, policy: str = "all {}", labels: dict[str, int] | None = None) -> str:
    label_lines = "".join(
        f'    version_labels {{ key: "{k}" value: {v} }}\n' for k, v in (labels or {}).items()
    )
    return MODEL_CONFIG.format(base=base, policy=policy, labels=label_lines)


class KubeletConfigMap:
    """The layout the kubelet gives a mounted ConfigMap: models.config -> ..data/models.config,
    ..data -> ..<timestamp>/, updated by renaming a new ..data symlink over the old one."""

    def __init__(self, mount: Path) -> None:
        self.mount = mount
        mount.mkdir(parents=True, exist_ok=True)
        self.generation = 0

    @property
    def path(self) -> Path:
        return self.mount / "models.config"

    def write(self, text: str) -> None:
        self.generation += 1
        payload = self.mount / f"..2026_11_21_{self.generation:06d}"
        payload.mkdir()
        (payload / "models.config").write_text(text)
        tmp_link = self.mount / "..data_tmp"
        os.symlink(payload.name, tmp_link)
        os.rename(tmp_link, self.mount / "..data")  # atomic swap, as the kubelet does
        if not self.path.is_symlink():
            os.symlink("..data/models.config", self.path)
        for old in self.mount.glob("..2026_*"):
            if old != payload:
                shutil.rmtree(old)


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tfmodel_server", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )


def test_help_lists_tf_serving_flags():
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in (
        "--port",
        "--rest_api_port",
        "--model_name",
        "--model_base_path",
        "--model_config_file",
        "--model_config_file_poll_wait_seconds",
        "--file_system_poll_wait_seconds",
        "--allow_version_labels_for_unavailable_models",
        "--max_num_load_retries",
        "--load_retry_interval_micros",
        "--saved_model_tags",
        "--rest_api_timeout_in_ms",
        "--grpc_max_threads",
        "--enable_grpc_healthcheck_service",
    ):
        assert flag in result.stdout


def test_no_model_fails_start_up_as_tf_serving():
    result = run_cli("--port=0", "--rest_api_port=0")
    assert result.returncode == 255
    assert result.stdout.strip().endswith(
        "Failed to start server. Error: INVALID_ARGUMENT: Both server_options.model_base_path "
        "and server_options.model_config_file are empty!"
    )


def test_batching_file_without_batching_fails_start_up(tmp_path):
    result = run_cli(f"--model_base_path={tmp_path}", f"--batching_parameters_file={tmp_path}/b")
    assert result.returncode == 255
    assert "server_options.enable_batching" in result.stdout


def test_bad_flag_value_prints_usage_exits_255(tmp_path):
    result = run_cli(f"--model_base_path={tmp_path}", "--port=eighty")
    assert result.returncode == 255
    assert result.stdout.startswith("usage: ")
    assert "--port" in result.stderr


def test_version_flag():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("TensorFlow ModelServer: ")
    assert "TensorFlow Library: " in result.stdout


def test_every_tf_serving_flag_is_accepted(tmp_path):
    """main.cc's flag list; the ones without meaning here warn, none stops start-up."""
    base = tmp_path / "m"
    export_linear(base, 1, 2.0, 0.0)
    with ServerProcess(
        f"--model_base_path={base}",
        "--model_name=m",
        f"--grpc_socket_path={tmp_path / 'grpc.sock'}",
        "--rest_api_num_threads=4",
        "--rest_api_enable_cors_support=false",
        "--enable_per_model_batching_parameters=false",
        "--num_load_threads=2",
        "--num_unload_threads=2",
        "--flush_filesystem_caches=true",
        "--tensorflow_session_parallelism=0",
        "--use_alts_credentials=false",
        "--per_process_gpu_memory_fraction=0.5",
        "--remove_unused_fields_from_bundle_metagraph=true",
        "--prefer_tflite_model=true",
        "--num_tflite_pools=2",
        "--num_tflite_interpreters_per_pool=1",
        "--xla_cpu_compilation_enabled=false",
        "--xla_gpu_compilation_enabled=false",
        "--enable_profiler=true",
        "--mixed_precision=bfloat16",
        "--skip_initialize_tpu=true",
        "--enable_signature_method_name_check=false",
        "--no_such_flag=1",
    ) as server:
        server.wait_ready()
        response = server.prediction_stub().Predict(predict_request("m", [1.0]), timeout=10)
        assert response.model_spec.version.value == 1
        log = server.log()
    assert "unknown argument: --no_such_flag=1" in log
    for flag in ("prefer_tflite_model", "per_process_gpu_memory_fraction", "mixed_precision"):
        assert f"warning: --{flag}=" in log
    assert "warning: --flush_filesystem_caches" not in log  # default value: silent


def test_bad_config_file_exits_naming_file_and_line(tmp_path):
    config = tmp_path / "models.config"
    config.write_text(
        'model_config_list {\n  config {\n    name: "m"\n    bogus_field: 1\n  }\n}\n'
    )
    result = run_cli(
        f"--model_config_file={config}", f"--port={free_port()}", f"--rest_api_port={free_port()}"
    )
    assert result.returncode == 255
    assert str(config) in result.stderr
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig: 4:" in result.stderr
    assert "bogus_field" in result.stderr
    assert (
        f"Failed to start server. Error: INVALID_ARGUMENT: Invalid protobuf file: '{config}'"
        in (result.stdout)
    )


def test_initial_model_that_fails_to_load_ends_start_up(tmp_path):
    """ServerCore::Create waits for the initial models; one that fails stops start-up."""
    base = tmp_path / "m"
    write_corrupt_version(base, 1)
    result = run_cli(
        "--model_name=m",
        f"--model_base_path={base}",
        f"--port={free_port()}",
        f"--rest_api_port={free_port()}",
        "--max_num_load_retries=0",
        timeout=240,
    )
    assert result.returncode == 255
    assert "Failed to start server. Error: UNKNOWN: 1 servable(s) did not become available" in (
        result.stdout
    )


def test_initial_model_is_retried_before_start_up_fails(tmp_path):
    """ServerCore::Create waits until the version is AVAILABLE or END: through its retries."""
    base = tmp_path / "m"
    write_corrupt_version(base, 1)
    result = run_cli(
        "--model_name=m",
        f"--model_base_path={base}",
        f"--port={free_port()}",
        f"--rest_api_port={free_port()}",
        "--max_num_load_retries=2",
        "--load_retry_interval_micros=100000",
        timeout=240,
    )
    assert result.returncode == 255
    assert result.stderr.count("Loading servable m version 1 failed") == 3, result.stderr
    assert "m version 1 failed (attempt 3, giving up)" in result.stderr
    assert "1 servable(s) did not become available" in result.stdout


def test_ports_open_only_after_initial_models_load(tmp_path):
    """The first RPC a client can make finds the model (TF Serving's start-up order)."""
    base = tmp_path / "m"
    export_linear(base, 1, 2.0, 0.0)
    server = ServerProcess("--model_name=m", f"--model_base_path={base}").start()
    try:
        first: list = []

        def connected() -> bool:
            try:
                first.append(
                    server.prediction_stub().Predict(predict_request("m", [1.0]), timeout=5)
                )
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.UNAVAILABLE, e.details()  # not NOT_FOUND
                return False
            return True

        server.wait_for(connected, 240, "first RPC")
        assert first[0].model_spec.version.value == 1
    finally:
        server.stop()


def test_listen_before_models_load_opens_ports_at_once(tmp_path):
    """The opt-in Kubernetes mode: probes answer while the base path is still empty."""
    base = tmp_path / "m"
    base.mkdir()
    with ServerProcess(
        "--model_name=m",
        f"--model_base_path={base}",
        "--listen_before_models_load",
        "--file_system_poll_wait_seconds=0.2",
    ) as server:
        server.wait_healthy()
        assert requests.get(f"{server.rest}/readyz", timeout=5).status_code == 503
        export_linear(base, 1, 2.0, 0.0)
        server.wait_ready()


def test_flags_accept_both_spellings(tmp_path):
    base = tmp_path / "m"
    export_linear(base, 1, 1.0, 0.0)
    server = ServerProcess("--model_name", "m", "--model_base_path", str(base))
    with server:
        server.wait_ready()
        response = server.prediction_stub().Predict(predict_request("m", [2.0]), timeout=10)
        np.testing.assert_allclose(y_of(response), [2.0])


def test_typed_val_outputs_by_default_tensor_content_on_request(tmp_path):
    base = tmp_path / "m"
    export_linear(base, 1, 2.0, 0.0)
    with ServerProcess("--model_name=m", f"--model_base_path={base}") as server:
        server.wait_ready()
        response = server.prediction_stub().Predict(predict_request("m", [1.0, 3.0]), timeout=10)
        # TF Serving's default; mnist_client.py style: read the typed field directly.
        assert list(response.outputs["y"].float_val) == [2.0, 6.0]
        assert not response.outputs["y"].tensor_content
    with ServerProcess(
        "--model_name=m",
        f"--model_base_path={base}",
        "--enable_serialization_as_tensor_content=true",
    ) as server:
        server.wait_ready()
        response = server.prediction_stub().Predict(predict_request("m", [1.0, 3.0]), timeout=10)
        assert not response.outputs["y"].float_val
        np.testing.assert_allclose(y_of(response), [2.0, 6.0])
        assert response.outputs["y"].tensor_content


def test_versions_come_and_go_on_disk(tmp_path):
    base = tmp_path / "m"
    export_linear(base, 1, 1.0, 0.0)
    with ServerProcess(
        "--model_name=m", f"--model_base_path={base}", "--file_system_poll_wait_seconds=0.2"
    ) as server:
        server.wait_ready()
        # Only numeric dirs are versions; 00000003 is version 3.
        (base / "not-a-version").mkdir()
        export_linear(tmp_path / "staging", 3, 3.0, 0.0)
        os.rename(tmp_path / "staging" / "3", base / "00000003")
        server.wait_versions("m", {3: "AVAILABLE", 1: "END"})
        response = server.prediction_stub().Predict(predict_request("m", [1.0]), timeout=10)
        assert response.model_spec.version.value == 3
        np.testing.assert_allclose(y_of(response), [3.0])
        # Removing the newest version brings the previous one back under latest{1}.
        shutil.rmtree(base / "00000003")
        server.wait_versions("m", {1: "AVAILABLE", 3: "END"})


def test_corrupt_version_fails_while_old_keeps_serving(tmp_path):
    base = tmp_path / "m"
    export_linear(base, 1, 1.0, 0.0)
    with ServerProcess(
        "--model_name=m",
        f"--model_base_path={base}",
        "--file_system_poll_wait_seconds=0.2",
        "--max_num_load_retries=1",
        "--load_retry_interval_micros=100000",
    ) as server:
        server.wait_ready()
        write_corrupt_version(base, 2)

        def failed() -> bool:
            doc = requests.get(f"{server.rest}/v1/models/m/versions/2", timeout=5).json()
            status = doc.get("model_version_status", [{}])[0]
            return status.get("state") == "END" and status["status"]["error_code"] != "OK"

        server.wait_for(failed, 60, "version 2 to fail")
        # END is the final state: published only after the last attempt (1 + 1 retry).
        assert "m version 2 failed (attempt 2, giving up)" in server.log()
        doc = requests.get(f"{server.rest}/v1/models/m/versions/2", timeout=5).json()
        assert doc["model_version_status"][0]["state"] == "END"
        assert doc["model_version_status"][0]["status"]["error_message"]
        response = server.prediction_stub().Predict(predict_request("m", [5.0]), timeout=10)
        assert response.model_spec.version.value == 1
        assert server.version_states("m")[1] == "AVAILABLE"


def _grpc_code_name(code: int) -> str:
    return next(c.name for c in grpc.StatusCode if c.value[0] == code)


def test_corrupt_version_stays_loading_through_its_retries(tmp_path):
    """As TF Serving's LoaderHarness::Load: LOADING (no error) through every retry,
    then END with the last attempt's error, once: no END before it, no cleared
    error after it. Polled every few ms over REST and gRPC; asserts on the
    sequence seen, not on timings."""
    base = tmp_path / "m"
    export_linear(base, 1, 1.0, 0.0)
    with ServerProcess(
        "--model_name=m",
        f"--model_base_path={base}",
        "--file_system_poll_wait_seconds=0.2",
        "--max_num_load_retries=3",
        "--load_retry_interval_micros=1000000",
    ) as server:
        server.wait_ready()
        session = requests.Session()
        stub = server.model_stub()
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "m"
        request.model_spec.version.value = 2
        state_name = get_model_status_pb2.ModelVersionStatus.State.Name

        def over_rest() -> tuple:
            reply = session.get(f"{server.rest}/v1/models/m/versions/2", timeout=10)
            if reply.status_code == 404:
                return ("unknown",)
            [status] = reply.json()["model_version_status"]
            error = status["status"]
            return (status["state"], error["error_code"], bool(error["error_message"]))

        def over_grpc() -> tuple:
            try:
                [status] = stub.GetModelStatus(request, timeout=10).model_version_status
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND:
                    return ("unknown",)
                raise
            error = status.status
            return (
                state_name(status.state),
                _grpc_code_name(error.error_code),
                bool(error.error_message),
            )

        seen: dict[str, list[tuple]] = {"rest": [], "grpc": []}

        def sample() -> None:
            for api, read in (("rest", over_rest), ("grpc", over_grpc)):
                entry = read()
                if not seen[api] or seen[api][-1] != entry:
                    seen[api].append(entry)

        write_corrupt_version(base, 2)
        give_up = "m version 2 failed (attempt 4, giving up)"  # 1 attempt + 3 retries
        deadline = time.monotonic() + 120  # a bound against hanging, not an assertion
        while give_up not in server.log() and time.monotonic() < deadline:
            sample()
            time.sleep(0.005)
        # Keep watching a while longer than a retry interval: the END must stay.
        watch_until = time.monotonic() + 1.5
        while time.monotonic() < watch_until:
            sample()
            time.sleep(0.005)

        assert give_up in server.log(), server.log()[-3000:]
        assert server.log().count("Loading servable m version 2 failed") == 4
        for api, sequence in seen.items():
            # Before the first poll finds it the version is unknown or START.
            sequence = [e for e in sequence if e[0] not in ("unknown", "START")]
            assert sequence == [("LOADING", "OK", False), ("END", "DATA_LOSS", True)], (
                api,
                seen[api],
            )


def test_half_copied_version_is_not_loaded(tmp_path):
    base = tmp_path / "m"
    export_linear(base, 1, 1.0, 0.0)
    with ServerProcess(
        "--model_name=m", f"--model_base_path={base}", "--file_system_poll_wait_seconds=0.2"
    ) as server:
        server.wait_ready()
        write_partial_version(base, 2)
        time.sleep(1.5)  # several polls: the partial dir must not even be attempted
        assert 2 not in server.version_states("m")
        # Finish the copy: it is picked up once complete and stable.
        shutil.rmtree(base / "2")
        export_linear(tmp_path / "staging", 2, 2.0, 0.0)
        shutil.copytree(tmp_path / "staging" / "2", base / "2")
        server.wait_versions("m", {2: "AVAILABLE"})


def test_config_reload_through_kubelet_symlink_swap(tmp_path):
    base = tmp_path / "m"
    export_linear(base, 1, 1.0, 0.0)
    export_linear(base, 2, 2.0, 0.0)
    mount = KubeletConfigMap(tmp_path / "etc")
    mount.write(model_config(base, "specific { versions: 1 versions: 2 }", {"stable": 1}))
    with ServerProcess(
        f"--model_config_file={mount.path}",
        "--model_config_file_poll_wait_seconds=1",
        "--file_system_poll_wait_seconds=0.2",
    ) as server:
        server.wait_ready()
        stub = server.prediction_stub()

        def stable_version() -> int:
            request = predict_request("m", [1.0], version_label="stable")
            return stub.Predict(request, timeout=10).model_spec.version.value

        server.wait_for(lambda: stable_version() == 1, 30, "label stable -> 1")
        # Move the label: the kubelet swaps ..data; the server follows the symlink.
        mount.write(model_config(base, "specific { versions: 1 versions: 2 }", {"stable": 2}))
        server.wait_for(lambda: stable_version() == 2, 30, "label stable -> 2")

        # A broken file keeps the current config and reports the error.
        mount.write("model_config_list { config { name: ")
        server.wait_for(
            lambda: (
                not requests.get(f"{server.rest}/v1/models", timeout=5).json()["config_status"][
                    "ok"
                ]
            ),
            30,
            "bad config to be reported",
        )
        assert stable_version() == 2

        # Removing the model from the config unloads it (versions end in END).
        other = tmp_path / "other"
        export_linear(other, 1, 5.0, 0.0)
        mount.write(model_config(other).replace('name: "m"', 'name: "other"'))
        server.wait_versions("m", {1: "END", 2: "END"}, timeout=30)
        server.wait_versions("other", {1: "AVAILABLE"}, timeout=30)


def _export_slow(base: Path, version: int) -> None:
    """serving_default: n int32[-1] -> y, spinning max(n) loop iterations (~4 µs each)."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        n = v1.placeholder(tf.int32, shape=[None], name="n")
        count = tf.while_loop(lambda i: i < tf.reduce_max(n), lambda i: i + 1, [tf.constant(0)])
        y = tf.fill(tf.shape(n), tf.reshape(count, []), name="y")
        signature = v1.saved_model.signature_def_utils.predict_signature_def({"n": n}, {"y": y})
        with v1.Session(graph=graph) as session:
            builder = v1.saved_model.Builder(str(base / str(version)))
            builder.add_meta_graph_and_variables(
                session, ["serve"], signature_def_map={"serving_default": signature}
            )
            builder.save()


def test_sigterm_drains_in_flight_requests(tmp_path):
    base = tmp_path / "slow"
    _export_slow(base, 1)
    server = ServerProcess("--model_name=slow", f"--model_base_path={base}")
    server.start()
    try:
        server.wait_ready()
        results: list[object] = []

        def call_grpc() -> None:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "slow"
            request.inputs["n"].CopyFrom(tf.make_tensor_proto(np.array([400_000], np.int32)))
            try:
                response = server.prediction_stub().Predict(request, timeout=60)
                results.append(int(tf.make_ndarray(response.outputs["y"])[0]))
            except grpc.RpcError as e:
                results.append(e)

        def call_rest() -> None:
            try:
                r = requests.post(
                    f"{server.rest}/v1/models/slow:predict",
                    json={"instances": [400_000]},
                    timeout=60,
                )
                results.append(r.json()["predictions"][0] if r.ok else r.text)
            except requests.RequestException as e:
                results.append(e)

        threads = [threading.Thread(target=f) for f in (call_grpc, call_rest)]
        for t in threads:
            t.start()
        time.sleep(0.7)  # both requests are now running in the model
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        # New work is refused while draining.
        with pytest.raises(requests.RequestException):
            requests.get(f"{server.rest}/healthz", timeout=2)
        for t in threads:
            t.join(60)
        assert results == [400_000, 400_000]
        assert server.proc.wait(30) == 0
    finally:
        server.stop()


def test_signature_method_name_check_flag(tmp_path):
    base = tmp_path / "m"
    export_linear(base, 1, 1.0, 0.0)
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}]}
    with ServerProcess(
        "--model_name=m", f"--model_base_path={base}", "--enable_signature_method_name_check"
    ) as server:
        server.wait_ready()
        r = requests.post(f"{server.rest}/v1/models/m:classify", json=body, timeout=10)
        assert r.status_code == 400
        assert "method_name" in r.json()["error"]
        body["signature_name"] = "classify_x_to_y"
        r = requests.post(f"{server.rest}/v1/models/m:classify", json=body, timeout=10)
        assert r.status_code == 200, r.text
