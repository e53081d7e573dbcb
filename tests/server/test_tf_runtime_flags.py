"""The TensorFlow runtime flags reach TensorFlow: session ConfigProto, GPU memory
fraction, thread pools, mixed precision, XLA, load/unload threads.

No GPU here: per_process_gpu_memory_fraction is checked in the ConfigProto a real
loaded Session was created with; XLA through a jit_compile model in real servers.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
from tfmodel_server.flags import parse_args
from tfmodel_server.servables.tensorflow.loader import load_saved_model
from tfmodel_server.servables.tensorflow.session_config import (
    SessionConfigError,
    build_session_config,
)

from tests.ports import free_port
from tests.server.savedmodels import export_linear
from tests.server.serverproc import ServerProcess
from tests.server.test_grpc_api import predict_request, y_of
from tests.server.test_server_process import run_cli

SESSION_CONFIG = """
intra_op_parallelism_threads: 3
inter_op_parallelism_threads: 2
allow_soft_placement: true
gpu_options { allow_growth: true }
"""


def _config(serialized: bytes) -> config_pb2.ConfigProto:
    config = config_pb2.ConfigProto()
    config.ParseFromString(serialized)
    return config


def test_config_file_then_gpu_fraction_then_thread_flags(tmp_path):
    path = tmp_path / "session.pbtxt"
    path.write_text(SESSION_CONFIG)
    config = _config(build_session_config(str(path), per_process_gpu_memory_fraction=0.25))
    assert config.intra_op_parallelism_threads == 3  # the file's, no thread flag set
    assert config.inter_op_parallelism_threads == 2
    assert config.gpu_options.allow_growth
    assert config.gpu_options.per_process_gpu_memory_fraction == 0.25
    config = _config(build_session_config(str(path), intra_op_parallelism=5))
    assert (config.intra_op_parallelism_threads, config.inter_op_parallelism_threads) == (5, 0)
    config = _config(build_session_config(session_parallelism=4))
    assert (config.intra_op_parallelism_threads, config.inter_op_parallelism_threads) == (4, 4)


def test_all_three_thread_flags_and_bad_files_are_refused(tmp_path):
    with pytest.raises(SessionConfigError, match="You cannot configure all"):
        build_session_config("", 0.0, 1, 1, 1)
    bad = tmp_path / "bad.pbtxt"
    bad.write_text("intra_op_parallelism_threads: lots\n")
    with pytest.raises(SessionConfigError, match=r"bad\.pbtxt.*intra_op_parallelism_threads"):
        build_session_config(str(bad))
    with pytest.raises(SessionConfigError, match="cannot read"):
        build_session_config(str(tmp_path / "missing.pbtxt"))


def test_mixed_precision_bfloat16_turns_on_the_onednn_rewrite():
    config = _config(build_session_config(mixed_precision="bfloat16"))
    rewrite = config.graph_options.rewrite_options
    assert rewrite.auto_mixed_precision_onednn_bfloat16 == rewriter_config_pb2.RewriterConfig.ON
    config = _config(build_session_config(mixed_precision="fp8"))  # warns, changes nothing
    assert not config.graph_options.HasField("rewrite_options")


def test_the_loaded_session_runs_with_that_config(tmp_path):
    path = tmp_path / "session.pbtxt"
    path.write_text(SESSION_CONFIG)
    serialized = build_session_config(str(path), per_process_gpu_memory_fraction=0.4)
    version = export_linear(tmp_path / "m", 1, a=2.0, b=1.0)
    servable = load_saved_model("m", 1, str(version), session_config=serialized)
    try:
        # The ConfigProto the tf.compat.v1.Session was created with.
        config = servable._session._config
        assert config.gpu_options.per_process_gpu_memory_fraction == pytest.approx(0.4)
        assert config.intra_op_parallelism_threads == 3
        out = servable.signature("").run({"x": np.array([1.0], np.float32)})
        assert list(out["y"]) == [3.0]
    finally:
        servable.unload()
    servable = load_saved_model("m", 1, str(version), remove_unused_fields=True)
    try:
        assert not servable.meta_graph_def.HasField("graph_def")
        assert "serving_default" in servable.meta_graph_def.signature_def
    finally:
        servable.unload()


def test_thread_flags_reach_the_manager_and_loader(tmp_path):
    from tfmodel_server.server import ModelServer

    options = parse_args(
        [
            f"--model_base_path={tmp_path}",
            "--num_load_threads=4",
            "--num_unload_threads=3",
            "--per_process_gpu_memory_fraction=0.5",
            "--tensorflow_session_parallelism=2",
            "--xla_cpu_compilation_enabled=true",  # leave this test process's XLA alone
        ]
    )
    server = ModelServer(options)
    assert server.manager._load_pool._max_workers == 4
    assert server.manager._unload_pool._max_workers == 3
    config = _config(server.loader.options.session_config)
    assert config.gpu_options.per_process_gpu_memory_fraction == 0.5
    assert config.intra_op_parallelism_threads == 2


def test_a_bad_session_config_file_stops_start_up(tmp_path):
    bad = tmp_path / "session.pbtxt"
    bad.write_text("no_such_field: 1\n")
    export_linear(tmp_path / "m", 1)
    result = run_cli(
        f"--model_base_path={tmp_path / 'm'}",
        f"--tensorflow_session_config_file={bad}",
        f"--port={free_port()}",
        f"--rest_api_port={free_port()}",
    )
    assert result.returncode == 255
    assert "Failed to start server. Error: INVALID_ARGUMENT: --tensorflow_session_config_file" in (
        result.stdout
    )
    assert "no_such_field" in result.stdout


_JIT_MODEL = """
import sys, tensorflow as tf
class M(tf.Module):
    @tf.function(jit_compile=True, input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def f(self, x):
        return {"y": x * 2.0 + 1.0}
m = M()
tf.saved_model.save(m, sys.argv[1], signatures={"serving_default": m.f})
"""


@pytest.fixture(scope="module")
def jit_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("jit")
    subprocess.run(
        [sys.executable, "-c", _JIT_MODEL, str(base / "1")],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return base


def test_xla_is_disabled_by_default_as_in_tf_serving(jit_model, tmp_path):
    config = tmp_path / "session.pbtxt"
    config.write_text(SESSION_CONFIG)
    with ServerProcess(
        f"--model_base_path={jit_model}",
        "--model_name=jit",
        f"--tensorflow_session_config_file={config}",
        "--per_process_gpu_memory_fraction=0.3",
    ) as server:
        server.wait_ready()
        with pytest.raises(grpc.RpcError) as raised:
            server.prediction_stub().Predict(predict_request("jit", [1.0]), timeout=30)
        assert "XLA compilation disabled" in raised.value.details()
        log = server.log()
    # The ConfigProto every session gets, as logged at start-up.
    assert "intra_op_parallelism_threads: 3" in log
    assert "per_process_gpu_memory_fraction: 0.3" in log


def test_xla_cpu_compilation_enabled_runs_jit_compile_models(jit_model):
    with ServerProcess(
        f"--model_base_path={jit_model}", "--model_name=jit", "--xla_cpu_compilation_enabled"
    ) as server:
        server.wait_ready()
        response = server.prediction_stub().Predict(predict_request("jit", [1.0, 2.0]), timeout=60)
        assert list(y_of(response)) == [3.0, 5.0]
