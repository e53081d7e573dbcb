"""Throughput with request logging at 10 % vs off, side by side (issue 23).

Two tfmodel-server processes serve the same small model (x f32[1,784] -> 10 scores,
a 3 KB request); one has logging_config sampling_rate 0.1. The same closed-loop
gRPC load (CLIENTS threads, batch-1 Predict) runs on each in alternating rounds, so
drift on this shared machine hits both; the report is the throughput ratio.

    python -m bench.request_logging [--rounds 3] [--seconds 10] [--clients 4] [--rate 0.1]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parent.parent
CONFIG = """model_config_list {{ config {{
  name: "m" base_path: "{base}" model_platform: "tensorflow"
  {logging}
}} }}
"""


def export_model(base: Path) -> None:
    import tensorflow as tf

    class Scores(tf.Module):
        def __init__(self) -> None:
            self.w = tf.Variable(tf.random.stateless_normal([784, 10], seed=[1, 2]))

        @tf.function(input_signature=[tf.TensorSpec([None, 784], tf.float32, name="x")])
        def serve(self, x):
            return {"scores": tf.nn.softmax(tf.matmul(x, self.w))}

    module = Scores()
    tf.saved_model.save(module, str(base / "1"), signatures={"serving_default": module.serve})


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(work: Path, name: str, logging: str) -> tuple[subprocess.Popen, int]:
    config = work / f"{name}.config"
    config.write_text(CONFIG.format(base=work / "model", logging=logging))
    flags = [f"--model_config_file={config}", f"--request_log_dir={work / 'logs'}"]
    proc, grpc_port, _ = start_server(work, name, flags)
    return proc, grpc_port


def start_server(work: Path, name: str, flags: list[str]) -> tuple[subprocess.Popen, int, int]:
    """`tfmodel_server` on free ports with `flags`, its log in work/NAME.log, once ready:
    (process, gRPC port, REST port)."""
    grpc_port, rest_port = free_port(), free_port()
    log = open(work / f"{name}.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tfmodel_server",
            f"--port={grpc_port}",
            f"--rest_api_port={rest_port}",
            *flags,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{rest_port}/readyz", timeout=2).ok:
                return proc, grpc_port, rest_port
        except requests.RequestException:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"server {name} exited; see {work / (name + '.log')}")
        time.sleep(0.2)
    raise SystemExit(f"server {name} not ready")


def load(grpc_port: int, seconds: float, clients: int, label: str = "") -> float:
    """Requests per second of `clients` closed-loop threads for `seconds` (on `label`)."""
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    from tfmodel_server.codecs.tensor_proto import to_tensor_proto

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    if label:
        request.model_spec.version_label = label
    x = np.random.default_rng(0).random((1, 784), dtype=np.float32)
    request.inputs["x"].CopyFrom(to_tensor_proto(x, as_tensor_content=True))
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    stub.Predict(request, timeout=30)
    counts = [0] * clients
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        while time.monotonic() < stop:
            stub.Predict(request, timeout=30)
            counts[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start_time = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start_time
    channel.close()
    return sum(counts) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rate", type=float, default=0.1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-reqlog-") as tmp:
        work = Path(tmp)
        export_model(work / "model")
        logging = (
            f"logging_config {{ sampling_config {{ sampling_rate: {args.rate} }} "
            'log_collector_config { filename_prefix: "m" } }'
        )
        servers = {"off": start(work, "off", ""), "on": start(work, "on", logging)}
        try:
            rates: dict[str, list[float]] = {"off": [], "on": []}
            for round_index in range(args.rounds):
                order = ("off", "on") if round_index % 2 == 0 else ("on", "off")
                for name in order:
                    rates[name].append(load(servers[name][1], args.seconds, args.clients))
                    print(f"round {round_index + 1} {name:>3}: {rates[name][-1]:8.1f} req/s")
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(30)
        logged = sum(
            sum(1 for _ in _records(p)) for p in sorted((work / "logs").glob("m-*.tfrecord"))
        )
        off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
        print(
            f"median: off {off:.1f} req/s, logging at {args.rate:.0%} {on:.1f} req/s; "
            f"ratio on/off {on / off:.3f} ({(1 - on / off):+.1%} cost); {logged} records written"
        )


def _records(path: Path):
    from tfmodel_server.servables.tensorflow.prediction_log_files import read_records

    return read_records(str(path))


if __name__ == "__main__":
    main()
