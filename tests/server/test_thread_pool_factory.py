"""--thread_pool_factory_config_file: a ThreadPoolFactoryConfig whose Any is TensorFlow's
ThreadPoolOptionProto gives request runs their own inter-op pool.

Observed on a real server through the CPU time of TensorFlow's pool threads
(/proc/PID/task/*/stat): TF names a session's N-th inter-op pool's threads
tf_Compute<N>. The session config here defines pool 0; the factory's pool is
appended as pool 1. Without the factory the requests' work runs on pool 0;
with it, on pool 1.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2
from tensorflow_serving.apis import predict_pb2
from tfmodel_server.servables.tensorflow.loader import load_saved_model
from tfmodel_server.servables.tensorflow.thread_pool_factory import (
    ThreadPoolFactoryConfigError,
    read_thread_pool_factory_config,
)

from tests.ports import free_port
from tests.server.savedmodels import export_linear
from tests.server.serverproc import ServerProcess
from tests.server.test_server_process import run_cli

POOL = "type.googleapis.com/tensorflow.ThreadPoolOptionProto"

# Eight 512x512 matmuls a request: enough CPU for the pools' accounting to show it.
_HEAVY_MODEL = """
import sys, tensorflow as tf
class M(tf.Module):
    def __init__(self):
        self.w = tf.Variable(tf.random.uniform([512, 512], seed=1) / 512.0)
    @tf.function(input_signature=[tf.TensorSpec([None, 512], tf.float32, name="x")])
    def f(self, x):
        h = x
        for _ in range(8):
            h = tf.matmul(h, self.w)
        return {"y": tf.reduce_sum(h, axis=1)}
m = M()
tf.saved_model.save(m, sys.argv[1], signatures={"serving_default": m.f})
"""


def factory_file(tmp_path: Path, body: str, name: str = "pool.pbtxt") -> str:
    path = tmp_path / name
    path.write_text(f"thread_pool_factory_config {{\n{body}\n}}\n")
    return str(path)


@pytest.fixture(scope="module")
def heavy_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("heavy")
    subprocess.run(
        [sys.executable, "-c", _HEAVY_MODEL, str(base / "1")],
        check=True,
        capture_output=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    return base


def _cpu_ticks_by_thread_name(pid: int) -> collections.Counter:
    ticks: collections.Counter = collections.Counter()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        ticks[name] += int(fields[11]) + int(fields[12])  # utime + stime
    return ticks


def _request_work(server: ServerProcess, requests: int = 40) -> collections.Counter:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "heavy"
    x = np.random.default_rng(0).random((256, 512), dtype=np.float32)
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
    stub = server.prediction_stub()
    stub.Predict(request, timeout=60)
    before = _cpu_ticks_by_thread_name(server.proc.pid)
    for _ in range(requests):
        stub.Predict(request, timeout=60)
    after = _cpu_ticks_by_thread_name(server.proc.pid)
    return collections.Counter({k: after[k] - before[k] for k in after})


@pytest.mark.parametrize("factory", [False, True])
def test_request_runs_use_the_factorys_pool(tmp_path, heavy_model, factory):
    session = tmp_path / "session.pbtxt"
    # One intra-op thread: each op's kernel then runs on the inter-op thread that runs the
    # op, so its CPU shows on that pool's named threads. With more, the matmuls ran on
    # unnamed ("python") intra-op threads on an AMD EPYC machine and neither pool showed it.
    session.write_text(
        "intra_op_parallelism_threads: 1\nsession_inter_op_thread_pool { num_threads: 1 }\n"
    )
    args = [
        f"--model_base_path={heavy_model}",
        "--model_name=heavy",
        f"--tensorflow_session_config_file={session}",
    ]
    if factory:
        body = f'[{POOL}] {{ num_threads: 3 global_name: "tfmodel_requests" }}'
        args.append(f"--thread_pool_factory_config_file={factory_file(tmp_path, body)}")
    with ServerProcess(*args) as server:
        server.wait_ready()
        work = _request_work(server)
        log = server.log()
    session_pool, factory_pool = work["tf_Compute0"], work["tf_Compute1"]
    if factory:
        assert factory_pool >= 5, work
        assert session_pool * 4 <= factory_pool, work
        assert (
            'request runs use the inter-op thread pool {num_threads: 3 global_name: "tfmodel_requests"}'
            in log
        )
    else:
        assert session_pool >= 5, work
        assert factory_pool == 0, work


def test_the_pool_is_appended_to_the_sessions_pools(tmp_path):
    version = export_linear(tmp_path / "m", 1, a=2.0, b=1.0)
    session = config_pb2.ConfigProto()
    session.session_inter_op_thread_pool.add(num_threads=1)
    pool = config_pb2.ThreadPoolOptionProto(num_threads=2).SerializeToString()
    servable = load_saved_model(
        "m", 1, str(version), session_config=session.SerializeToString(), request_thread_pool=pool
    )
    try:
        pools = servable._session._config.session_inter_op_thread_pool
        assert [p.num_threads for p in pools] == [1, 2]
        assert servable.run_options.inter_op_thread_pool == 1
        out = servable.signature("").run({"x": np.array([1.0], np.float32)})
        assert list(out["y"]) == [3.0]
    finally:
        servable.unload()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "INVALID_ARGUMENT: Supplied config's type_url could not be parsed: "),
        (
            "[type.googleapis.com/tensorflow.ConfigProto] { }",
            "INVALID_ARGUMENT: Couldn't find factory for config proto message type "
            "tensorflow.ConfigProto",
        ),
        (
            'type_url: "type.googleapis.com/tensorflow.serving.test_util.'
            'FakeThreadPoolFactoryConfig"',
            "INTERNAL: Unable to find compiled-in proto descriptor of type "
            "tensorflow.serving.test_util.FakeThreadPoolFactoryConfig",
        ),
        (f'type_url: "{POOL}" value: "\\377"', "INVALID_ARGUMENT: Malformed content of Any"),
        (f"[{POOL}] {{ num_threads: -2 }}", "num_threads must be >= 0"),
        (
            "no_such_field: 1",
            "Error parsing text-format tensorflow.serving.ThreadPoolFactoryConfig",
        ),
    ],
)
def test_unusable_configs_are_refused(tmp_path, body, message):
    path = factory_file(tmp_path, body)
    with pytest.raises(ThreadPoolFactoryConfigError, match=None) as raised:
        read_thread_pool_factory_config(path)
    assert message in str(raised.value)


def test_an_unusable_config_stops_start_up(tmp_path):
    base = tmp_path / "m"
    export_linear(base, 1)
    path = factory_file(tmp_path, "[type.googleapis.com/tensorflow.ConfigProto] { }")
    result = run_cli(
        f"--model_base_path={base}",
        f"--thread_pool_factory_config_file={path}",
        f"--port={free_port()}",
        f"--rest_api_port={free_port()}",
    )
    assert result.returncode == 255
    assert (
        "Failed to start server. Error: INVALID_ARGUMENT: Couldn't find factory for config "
        "proto message type tensorflow.ConfigProto" in result.stdout
    )
