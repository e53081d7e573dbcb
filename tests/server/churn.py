"""Version churn against a real server process: publish versions one after another.

A training pipeline's pattern: each new version is copied beside the base path
and renamed in (atomic), the model's policy serves the latest one, and the
pipeline deletes old version dirs. After each version: RSS from /proc, and the
sizes of GET /v1/models and of the metrics page. Used by
tests/server/test_churn.py and bench/churn_memory.py.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from tests.server import savedmodels
from tests.server.serverproc import ServerProcess

METRICS_PATH = "/monitoring/prometheus/metrics"


def rss_bytes(pid: int) -> int:
    """VmRSS of a process, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


@dataclass
class ChurnSample:
    version: int
    rss: int
    models_bytes: int
    metrics_bytes: int
    versions_listed: int


@dataclass
class ChurnRun:
    samples: list[ChurnSample] = field(default_factory=list)

    def at(self, version: int) -> ChurnSample:
        return next(s for s in self.samples if s.version == version)

    def rss_growth(self, warmup: int) -> float:
        """RSS at the last version over RSS after `warmup` versions, minus 1."""
        return self.samples[-1].rss / self.at(warmup).rss - 1.0


def write_config(root: Path, base: Path, keep_latest: int) -> tuple[Path, Path]:
    config = root / "models.config"
    config.write_text(
        f"model_config_list {{ config {{ name: 'churn' base_path: '{base}' "
        "model_platform: 'tensorflow' "
        f"model_version_policy {{ latest {{ num_versions: {keep_latest} }} }} }} }}\n"
    )
    monitoring = root / "monitoring.config"
    monitoring.write_text(f'prometheus_config {{ enable: true path: "{METRICS_PATH}" }}\n')
    return config, monitoring


def publish(base: Path, staging: Path, version: int, template: Path | None = None) -> None:
    """Copy a version in beside the base path, then rename it in (what a pipeline does).

    template: a SavedModel dir to copy (input "x", output "y"); default a tiny linear one."""
    tmp = staging / str(version)
    if tmp.exists():
        shutil.rmtree(tmp)
    if template is not None:
        shutil.copytree(template, tmp)
    else:
        savedmodels.export_linear(staging, version, a=2.0, b=0.0)  # one template, copied
    os.rename(tmp, base / str(version))


def predict(server: ServerProcess, version: int) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "churn"
    request.model_spec.version.value = version
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
    response = server.prediction_stub().Predict(request, timeout=10)
    assert response.model_spec.version.value == version


def start_server(
    root: Path,
    keep_latest: int,
    extra_args: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
    template: Path | None = None,
) -> tuple[ServerProcess, Path, Path]:
    base, staging = root / "base", root / "staging"
    base.mkdir()
    staging.mkdir()
    config, monitoring = write_config(root, base, keep_latest)
    publish(base, staging, 1, template)
    server = ServerProcess(
        f"--model_config_file={config}",
        f"--monitoring_config_file={monitoring}",
        "--file_system_poll_wait_seconds=0.05",
        *extra_args,
        env={**os.environ, **env} if env else None,
    )
    server.start()
    server.wait_ready()
    return server, base, staging


def churn(
    server: ServerProcess,
    base: Path,
    staging: Path,
    versions: int,
    keep_on_disk: int = 3,
    progress: Callable[[ChurnSample], None] | None = None,
    template: Path | None = None,
) -> ChurnRun:
    """Publish versions 2..versions; after each is AVAILABLE, a few predicts on it."""
    assert server.proc is not None
    run = ChurnRun()
    for version in range(2, versions + 1):
        publish(base, staging, version, template)
        server.wait_versions("churn", {version: "AVAILABLE"}, timeout=120)
        for _ in range(3):
            predict(server, version)
        old = base / str(version - keep_on_disk)
        if old.exists():
            shutil.rmtree(old)
        models = requests.get(f"{server.rest}/v1/models/churn", timeout=10)
        metrics = requests.get(f"{server.rest}{METRICS_PATH}", timeout=10)
        sample = ChurnSample(
            version=version,
            rss=rss_bytes(server.proc.pid),
            models_bytes=len(models.content),
            metrics_bytes=len(metrics.content),
            versions_listed=len(models.json()["model_version_status"]),
        )
        run.samples.append(sample)
        if progress is not None:
            progress(sample)
    return run
