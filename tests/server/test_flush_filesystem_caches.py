"""--flush_filesystem_caches (default true, as TF Serving): a real server drops the files
of the versions it loaded from the page cache, observed with mincore(2).

TF Serving flushes after each load when loads run one at a time, and after each
config's loads (basic_manager.cc ExecuteLoad, server_core.cc ReloadConfig).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tfmodel_server.sources.page_cache import drop_page_cache

from tests.server.memcgroup import MemoryCgroup
from tests.server.page_residency import largest_file, resident_fraction
from tests.server.serverproc import ServerProcess
from tests.server.test_grpc_api import predict_request, y_of

# A 16 MiB variable: its checkpoint shard is the file whose pages are watched.
_BIG_MODEL = """
import sys, tensorflow as tf
class M(tf.Module):
    def __init__(self):
        self.w = tf.Variable(tf.random.uniform([4 * 1024 * 1024], seed=1))
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def f(self, x):
        return {"y": x * 2.0 + 1.0 + 0.0 * self.w[0]}
m = M()
tf.saved_model.save(m, sys.argv[1], signatures={"serving_default": m.f})
"""


@pytest.fixture(scope="module")
def big_version(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bigmodel") / "template"
    subprocess.run(
        [sys.executable, "-c", _BIG_MODEL, str(path)],
        check=True,
        capture_output=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    return path


def _copy(template: Path, base: Path, version: int) -> Path:
    dest = base / str(version)
    shutil.copytree(template, base / f".tmp-{version}")
    os.rename(base / f".tmp-{version}", dest)  # the source sees it complete at once
    return dest


def _read_all(path: Path) -> None:
    """Pull the version's files into the page cache (as a load would leave them)."""
    for file in path.rglob("*"):
        if file.is_file():
            file.read_bytes()


def test_drop_page_cache_empties_a_files_pages(big_version, tmp_path):
    version = _copy(big_version, tmp_path, 1)
    data = largest_file(version)
    _read_all(version)
    assert resident_fraction(data) > 0.9
    assert drop_page_cache([str(version)]) >= 3
    assert resident_fraction(data) < 0.05


def test_loaded_files_leave_the_page_cache_by_default(big_version, tmp_path):
    base = tmp_path / "big"
    v1 = _copy(big_version, base, 1)
    _read_all(v1)
    with ServerProcess(f"--model_base_path={base}", "--model_name=big") as server:
        server.wait_ready()
        data = largest_file(v1)
        assert resident_fraction(data) < 0.05, "the loaded checkpoint is still cached"
        # The session holds its own copy: serving reads nothing back.
        response = server.prediction_stub().Predict(predict_request("big", [1.0]), timeout=30)
        assert list(y_of(response)) == [3.0]
        assert resident_fraction(data) < 0.05
        # A new version found on disk, one load thread: flushed after its own load.
        v2 = _copy(big_version, base, 2)
        _read_all(v2)
        assert resident_fraction(largest_file(v2)) > 0.9
        server.wait_versions("big", {2: "AVAILABLE"}, timeout=120)
        server.wait_for(
            lambda: resident_fraction(largest_file(v2)) < 0.05, 30, "version 2's pages dropped"
        )


def test_false_keeps_the_page_cache(big_version, tmp_path):
    base = tmp_path / "big"
    v1 = _copy(big_version, base, 1)
    with ServerProcess(
        f"--model_base_path={base}", "--model_name=big", "--flush_filesystem_caches=false"
    ) as server:
        server.wait_ready()
        # The load read the checkpoint; nothing dropped it.
        assert resident_fraction(largest_file(v1)) > 0.5


def test_parallel_loads_are_flushed_once_the_config_is_applied(big_version, tmp_path):
    """With --num_load_threads > 1 TF Serving flushes only at the end of each config's
    (re)load; a reload that adds a model drops that model's files too."""
    first, second = tmp_path / "first", tmp_path / "second"
    v_first = _copy(big_version, first, 1)
    v_second = _copy(big_version, second, 1)
    config = tmp_path / "models.config"

    def write_config(*bases: Path) -> None:
        entries = "".join(
            f'config {{ name: "{b.name}" base_path: "{b}" model_platform: "tensorflow" }}\n'
            for b in bases
        )
        config.write_text(f"model_config_list {{\n{entries}}}\n")

    write_config(first)
    with ServerProcess(
        f"--model_config_file={config}",
        "--model_config_file_poll_wait_seconds=1",
        "--num_load_threads=2",
    ) as server:
        server.wait_ready()
        assert resident_fraction(largest_file(v_first)) < 0.05
        _read_all(v_second)
        write_config(first, second)
        server.wait_versions("second", {1: "AVAILABLE"}, timeout=120)
        server.wait_for(
            lambda: resident_fraction(largest_file(v_second)) < 0.05,
            30,
            "the reloaded config's files dropped",
        )
        response = server.prediction_stub().Predict(predict_request("second", [2.0]), timeout=30)
        assert list(y_of(response)) == [5.0]


def _cgroup_page_cache_bytes(cgroup: MemoryCgroup) -> int:
    """Page cache charged to the cgroup: memory.stat `file` (v2) or `cache` (v1)."""
    key = "file" if cgroup.v2 else "cache"
    for line in (cgroup.path / "memory.stat").read_text().splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    raise AssertionError(f"no {key} in {cgroup.path / 'memory.stat'}")


@pytest.mark.parametrize("flush", [True, False])
def test_the_servers_memory_cgroup_is_not_charged_for_loaded_files(big_version, tmp_path, flush):
    """What a pod is billed for: the page cache the load brought in is charged to the
    server's memory cgroup. Dropping the version's pages from outside afterwards
    releases ~16 MiB there only when the server kept them (--flush_filesystem_caches=false)."""
    version = _copy(big_version, tmp_path / "big", 1)
    drop_page_cache([str(version)])  # the server's own load reads them in, into its cgroup
    with MemoryCgroup(4 << 30) as cgroup:
        with ServerProcess(
            f"--model_base_path={tmp_path / 'big'}",
            "--model_name=big",
            f"--flush_filesystem_caches={str(flush).lower()}",
            preexec_fn=cgroup.enter,
        ) as server:
            server.wait_ready()
            held = _cgroup_page_cache_bytes(cgroup)
            drop_page_cache([str(version)])
            released = held - _cgroup_page_cache_bytes(cgroup)
    if flush:
        assert released < 4 << 20, f"{released} bytes of model files were still charged"
    else:
        assert released >= 12 << 20, f"only {released} bytes released"
