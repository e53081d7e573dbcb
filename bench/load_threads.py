"""Start-up with many models: --num_load_threads=1 vs 4, side by side in one run.

    .venv/bin/python -m bench.load_threads --models 20 --rounds 2

Twenty copies of one SavedModel (a chain of --layers dense 256x256 layers, so a
load restores and imports real work) in one --model_config_file. Each round
starts tfmodel-server once per thread count (alternating, so machine load hits
both alike) and records:
- start-up: process start until REST answers (the ports open only after every
  initial model loaded, as tensorflow_model_server);
- load phase: the server's first "Adding model" log line to its last
  "Successfully loaded" (TensorFlow's import and the interpreter start excluded).
The ratio of the medians is the figure; absolute times depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

from tests.ports import free_port

_BUILD = """
import sys, tensorflow as tf
layers = int(sys.argv[2])
class Chain(tf.Module):
    def __init__(self):
        super().__init__()
        self.w = [tf.Variable(tf.random.normal([256, 256], stddev=0.05), name=f"w{i}")
                  for i in range(layers)]
    @tf.function(input_signature=[tf.TensorSpec([None, 256], tf.float32, name="x")])
    def serve(self, x):
        for w in self.w:
            x = tf.nn.relu(tf.matmul(x, w))
        return {"y": x}
m = Chain()
tf.saved_model.save(m, sys.argv[1], signatures={"serving_default": m.serve})
"""

_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def _build_models(root: Path, models: int, layers: int) -> Path:
    template = root / "template"
    subprocess.run(
        [sys.executable, "-c", _BUILD, str(template), str(layers)],
        check=True,
        capture_output=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    entries = []
    for i in range(models):
        shutil.copytree(template, root / f"m{i}" / "1")
        entries.append(
            f'  config {{ name: "m{i}" base_path: "{root / f"m{i}"}" model_platform: "tensorflow" }}'
        )
    config = root / "models.config"
    config.write_text("model_config_list {\n" + "\n".join(entries) + "\n}\n")
    return config


def _stamp(line: str) -> float | None:
    match = _STAMP.match(line)
    if not match:
        return None
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def _one_start(config: Path, threads: int, log_path: Path) -> tuple[float, float]:
    rest = free_port()
    cmd = [
        sys.executable,
        "-m",
        "tfmodel_server",
        f"--port={free_port()}",
        f"--rest_api_port={rest}",
        f"--model_config_file={config}",
        f"--num_load_threads={threads}",
    ]
    start = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: see {log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{rest}/v1/models/m0", timeout=2):
                    break
            except OSError:
                time.sleep(0.1)
        startup = time.monotonic() - start
    finally:
        proc.terminate()
        proc.wait(60)
    lines = log_path.read_text().splitlines()
    added = [_stamp(x) for x in lines if "Adding model" in x]
    loaded = [_stamp(x) for x in lines if "Successfully loaded servable" in x]
    first = min(t for t in added if t is not None)
    last = max(t for t in loaded if t is not None)
    return startup, last - first


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--layers", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-load-threads-"))
    try:
        config = _build_models(work, args.models, args.layers)
        results: dict[int, list[tuple[float, float]]] = {t: [] for t in args.threads}
        for r in range(args.rounds):
            for threads in args.threads:
                startup, phase = _one_start(config, threads, work / f"server-{threads}-{r}.log")
                results[threads].append((startup, phase))
                print(f"round {r} threads {threads}: start-up {startup:.2f}s, loads {phase:.2f}s")
        print(f"\n{args.models} models x {args.layers} dense 256x256 layers, {os.cpu_count()} CPUs")
        print("| --num_load_threads | start-up (median s) | load phase (median s) |")
        print("| --- | --- | --- |")
        medians = {}
        for threads, runs in results.items():
            medians[threads] = (
                statistics.median(s for s, _ in runs),
                statistics.median(p for _, p in runs),
            )
            print(f"| {threads} | {medians[threads][0]:.2f} | {medians[threads][1]:.2f} |")
        base, best = args.threads[0], args.threads[-1]
        print(
            f"\nload phase {base} vs {best} threads: "
            f"{medians[base][1] / medians[best][1]:.2f}x faster; start-up "
            f"{medians[base][0] / medians[best][0]:.2f}x"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
