"""Predict clients of a TFModel's Service, run inside the node's network namespace (where its
ClusterIP routes). The demo and the `cluster` tests both use them.

python -m tfmodel_devcluster.demo.service_client query HOST MODEL LABEL NUM_TESTS
    NUM_TESTS held-out digits over gRPC (official stubs, like TF Serving's mnist_client.py)
    and the same digits over REST in batches; prints JSON with both error rates.
python -m tfmodel_devcluster.demo.service_client once HOST MODEL LABEL [INPUT]
    one gRPC Predict and one REST predict; prints JSON: the gRPC answer's version and both
    outputs, flattened.
python -m tfmodel_devcluster.demo.service_client loop HOST MODEL LABEL STOP_FILE MAX_S [INPUT]
    alternates gRPC and REST requests on one long-lived channel until STOP_FILE exists (or
    MAX_S passes); creates STOP_FILE.ready after its first answer; prints JSON: counts,
    failures by protocol with the first errors, per second which version answered the gRPC
    requests, and every change of (protocol, version, output).

LABEL "-" names no label (the model's default version). INPUT is a JSON object
{"input": NAME, "values": [...], "output": NAME, "signature": NAME}; without it, one held-out
digit for the demo's model ("images" -> "scores", signature "predict_images").
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
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
ERRORS_KEPT = 20


@dataclass(frozen=True)
class Call:
    """One request: which input, its values (the whole tensor), which output to read."""

    input: str
    values: np.ndarray
    output: str
    signature: str = ""

    @classmethod
    def parse(cls, spec: str | None) -> Call:
        if not spec:
            digit = load_digits_split().test_images[0]
            return cls("images", digit[None, :], "scores", SIGNATURE)
        raw = json.loads(spec)
        values = np.asarray(raw["values"], dtype=np.float32)
        return cls(raw["input"], values, raw["output"], raw.get("signature", ""))


def grpc_call(stub: Any, model: str, label: str, call: Call) -> tuple[int, list[float]]:
    """(answering version, the output flattened)."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if call.signature:
        request.model_spec.signature_name = call.signature
    if label != "-":
        request.model_spec.version_label = label
    request.inputs[call.input].CopyFrom(tf.make_tensor_proto(call.values))
    answer = stub.Predict(request, timeout=10)
    output = tf.make_ndarray(answer.outputs[call.output])
    return answer.model_spec.version.value, [float(v) for v in np.ravel(output)]


def rest_call(host: str, model: str, label: str, call: Call) -> list[float]:
    path = f"/v1/models/{model}" + (f"/labels/{label}" if label != "-" else "")
    body: dict[str, Any] = {"instances": call.values.tolist()}
    if call.signature:
        body["signature_name"] = call.signature
    request = urllib.request.Request(
        f"http://{host}:{REST_PORT}{path}:predict",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=20) as answer:
        predictions = json.loads(answer.read())["predictions"]
    return [float(v) for v in np.ravel(np.asarray(predictions, dtype=np.float64))]


def query(host: str, model: str, label: str, num_tests: int) -> dict[str, Any]:
    split = load_digits_split()
    images, labels = split.test_images[:num_tests], split.test_labels[:num_tests]
    wrong = failed = 0
    versions: dict[int, int] = {}
    with grpc.insecure_channel(f"{host}:{GRPC_PORT}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for image, digit in zip(images, labels, strict=True):
            try:
                version, scores = grpc_call(
                    stub, model, label, Call("images", image[None, :], "scores", SIGNATURE)
                )
            except grpc.RpcError as exc:
                failed += 1
                print(f"gRPC failed: {exc}", file=sys.stderr)
                continue
            versions[version] = versions.get(version, 0) + 1
            wrong += int(np.argmax(scores)) != digit
    rest_wrong = rest_failed = 0
    for start in range(0, len(images), REST_BATCH):
        batch = slice(start, start + REST_BATCH)
        try:
            scores = rest_call(
                host, model, label, Call("images", images[batch], "scores", SIGNATURE)
            )
        except (urllib.error.URLError, OSError, KeyError, ValueError) as exc:
            rest_failed += len(images[batch])
            print(f"REST failed: {exc!r}", file=sys.stderr)
            continue
        predicted = np.argmax(np.reshape(scores, (len(images[batch]), -1)), axis=1)
        rest_wrong += int(np.sum(predicted != labels[batch]))
    n = len(images)
    return {
        "num_tests": n,
        "grpc": {"error_rate": (wrong + failed) / n, "failed": failed, "versions": versions},
        "rest": {"error_rate": (rest_wrong + rest_failed) / n, "failed": rest_failed},
    }


def once(host: str, model: str, label: str, call: Call) -> dict[str, Any]:
    with grpc.insecure_channel(f"{host}:{GRPC_PORT}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        version, grpc_y = grpc_call(stub, model, label, call)
    return {
        "grpc": {"version": version, "y": grpc_y},
        "rest": {"y": rest_call(host, model, label, call)},
    }


def loop(host: str, model: str, label: str, stop: Path, max_s: float, call: Call) -> dict[str, Any]:
    ready = Path(f"{stop}.ready")
    ok = failed = 0
    failed_by_kind: dict[str, int] = {}
    errors: list[str] = []
    per_second: dict[int, dict[str, int]] = {}  # second -> {"1": n, "2": n, "rest": n, ...}
    seen: list[tuple[float, str, int | None, list[float]]] = []  # changes only
    last_key: tuple[Any, ...] | None = None
    start = time.monotonic()
    # One long-lived channel, as a real client has: it must survive pods going away behind
    # the ClusterIP (a new channel per request would hide connection resets).
    channel = grpc.insecure_channel(f"{host}:{GRPC_PORT}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    i = 0
    while not stop.exists() and time.monotonic() - start < max_s:
        i += 1
        kind = "grpc" if i % 2 else "rest"
        now = time.monotonic() - start
        counts = per_second.setdefault(int(now), {})
        try:
            if kind == "grpc":
                version: int | None
                version, y = grpc_call(stub, model, label, call)
                key = str(version)
            else:
                version, y = None, rest_call(host, model, label, call)
                key = "rest"
            counts[key] = counts.get(key, 0) + 1
            ok += 1
            if ok == 1:
                ready.touch()  # the caller waits for this before it changes anything
            change = (kind, version, tuple(round(v, 4) for v in y))
            if change != last_key:
                seen.append((round(now, 2), kind, version, y))
                last_key = change
        except (grpc.RpcError, urllib.error.URLError, OSError, KeyError, ValueError) as exc:
            failed += 1
            failed_by_kind[kind] = failed_by_kind.get(kind, 0) + 1
            counts["failed"] = counts.get("failed", 0) + 1
            if len(errors) < ERRORS_KEPT:
                errors.append(f"{now:.2f}s {kind}: {exc!r}"[:500])
        time.sleep(0.01)
    channel.close()
    return {
        "ok": ok,
        "failed": failed,
        "failed_by_kind": failed_by_kind,
        "errors": errors,
        "per_second": per_second,
        "seen": seen,
    }


def main() -> None:
    mode, host, model, label, *rest = sys.argv[1:]
    if mode == "query":
        result = query(host, model, label, int(rest[0]))
    elif mode == "once":
        result = once(host, model, label, Call.parse(rest[0] if rest else None))
    elif mode == "loop":
        stop, max_s, *spec = rest
        result = loop(
            host, model, label, Path(stop), float(max_s), Call.parse(spec[0] if spec else None)
        )
    else:
        sys.exit(f"unknown mode {mode}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
