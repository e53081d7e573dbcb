"""The demo's Predict clients, run inside the node's network namespace (ClusterIPs route there).

python -m tfmodel_devcluster.demo.service_client query HOST MODEL LABEL NUM_TESTS
    NUM_TESTS held-out digits over gRPC (official stubs, like TF Serving's mnist_client.py)
    and the same digits over REST in batches; prints JSON with both error rates.
python -m tfmodel_devcluster.demo.service_client loop HOST MODEL LABEL STOP_FILE MAX_S
    alternates gRPC and REST requests for LABEL on one long-lived channel until STOP_FILE
    exists (creates STOP_FILE.ready after the first answer); prints JSON: counts, failures,
    and per second which version answered the gRPC requests.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tfmodel_devcluster.demo.data import load_digits_split

GRPC_PORT, REST_PORT = 8500, 8501
SIGNATURE = "predict_images"
REST_BATCH = 100


def _request(model: str, label: str, image: np.ndarray) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = SIGNATURE
    if label != "-":
        request.model_spec.version_label = label
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(image, shape=[1, image.size]))
    return request


def grpc_predict(stub: Any, model: str, label: str, image: np.ndarray) -> tuple[int, int]:
    """(answering version, predicted digit)."""
    answer = stub.Predict(_request(model, label, image), timeout=10)
    return answer.model_spec.version.value, int(
        np.argmax(tf.make_ndarray(answer.outputs["scores"]))
    )


def rest_predict(host: str, model: str, label: str, images: np.ndarray) -> list[int]:
    path = f"/v1/models/{model}" + (f"/labels/{label}" if label != "-" else "")
    request = urllib.request.Request(
        f"http://{host}:{REST_PORT}{path}:predict",
        data=json.dumps({"signature_name": SIGNATURE, "instances": images.tolist()}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=20) as answer:
        body = json.loads(answer.read())
    return [int(np.argmax(p)) for p in body["predictions"]]


def query(host: str, model: str, label: str, num_tests: int) -> dict[str, Any]:
    split = load_digits_split()
    images, labels = split.test_images[:num_tests], split.test_labels[:num_tests]
    wrong = failed = 0
    versions: dict[int, int] = {}
    with grpc.insecure_channel(f"{host}:{GRPC_PORT}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for image, digit in zip(images, labels, strict=True):
            try:
                version, predicted = grpc_predict(stub, model, label, image)
            except grpc.RpcError as exc:
                failed += 1
                print(f"gRPC failed: {exc}", file=sys.stderr)
                continue
            versions[version] = versions.get(version, 0) + 1
            wrong += predicted != digit
    rest_wrong = rest_failed = 0
    for start in range(0, len(images), REST_BATCH):
        batch = slice(start, start + REST_BATCH)
        try:
            predicted_batch = rest_predict(host, model, label, images[batch])
        except (urllib.error.URLError, OSError, KeyError, ValueError) as exc:
            rest_failed += len(images[batch])
            print(f"REST failed: {exc!r}", file=sys.stderr)
            continue
        rest_wrong += sum(int(p != d) for p, d in zip(predicted_batch, labels[batch], strict=True))
    n = len(images)
    return {
        "num_tests": n,
        "grpc": {"error_rate": (wrong + failed) / n, "failed": failed, "versions": versions},
        "rest": {"error_rate": (rest_wrong + rest_failed) / n, "failed": rest_failed},
    }


def loop(host: str, model: str, label: str, stop: Path, max_s: float) -> dict[str, Any]:
    images = load_digits_split().test_images
    ready = Path(f"{stop}.ready")
    ok = failed = 0
    errors: list[str] = []
    per_second: dict[int, dict[str, int]] = {}  # second -> {"1": n, "2": n, "rest": n}
    start = time.monotonic()
    # One long-lived channel, as a real client has: it must survive everything the rollout does.
    channel = grpc.insecure_channel(f"{host}:{GRPC_PORT}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    i = 0
    while not stop.exists() and time.monotonic() - start < max_s:
        i += 1
        image = images[i % len(images)]
        second = int(time.monotonic() - start)
        counts = per_second.setdefault(second, {})
        try:
            if i % 2:
                version, _ = grpc_predict(stub, model, label, image)
                key = str(version)
            else:
                rest_predict(host, model, label, image[None, :])
                key = "rest"
            counts[key] = counts.get(key, 0) + 1
            ok += 1
            if ok == 1:
                ready.touch()  # the caller waits for this before it changes anything
        except (grpc.RpcError, urllib.error.URLError, OSError, KeyError, ValueError) as exc:
            failed += 1
            counts["failed"] = counts.get("failed", 0) + 1
            if len(errors) < 20:
                errors.append(f"{time.monotonic() - start:.2f}s: {exc!r}"[:500])
        time.sleep(0.01)
    channel.close()
    return {"ok": ok, "failed": failed, "errors": errors, "per_second": per_second}


def main() -> None:
    mode, host, model, label, *rest = sys.argv[1:]
    if mode == "query":
        print(json.dumps(query(host, model, label, int(rest[0]))))
    elif mode == "loop":
        print(json.dumps(loop(host, model, label, Path(rest[0]), float(rest[1]))))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
