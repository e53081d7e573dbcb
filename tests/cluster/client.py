"""Predict clients for the cluster tests, run inside the node's network namespace.

  python tests/cluster/client.py once HOST GRPC_PORT REST_PORT MODEL [LABEL] [VERSION]
      one gRPC Predict (official tensorflow_serving stubs) and one REST predict; prints JSON.
  python tests/cluster/client.py loop HOST GRPC_PORT REST_PORT MODEL LABEL STOP_FILE MAX_S
      alternates gRPC and REST requests by label until STOP_FILE exists (or MAX_S passes);
      creates STOP_FILE.ready after its first answer;
      prints JSON: counts, failures (with the first errors) and versions seen over time.

The inputs are x = [1.0, 2.0]; the served models are y = a*x + b (tests/server/savedmodels).
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

X = [1.0, 2.0]


def grpc_predict(stub, model: str, label: str | None, version: int | None) -> tuple[int, list]:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if label:
        request.model_spec.version_label = label
    elif version:
        request.model_spec.version.value = version
    request.inputs["x"].CopyFrom(
        tensor_pb2.TensorProto(
            dtype=types_pb2.DT_FLOAT,
            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(X))]
            ),
            float_val=X,
        )
    )
    answer = stub.Predict(request, timeout=10)
    y = answer.outputs["y"]
    values = list(y.float_val) or np.frombuffer(y.tensor_content, dtype=np.float32).tolist()
    return answer.model_spec.version.value, values


def rest_predict(
    host: str, port: int, model: str, label: str | None, version: int | None
) -> tuple[int | None, list]:
    path = f"/v1/models/{model}"
    if label:
        path += f"/labels/{label}"
    elif version:
        path += f"/versions/{version}"
    request = urllib.request.Request(
        f"http://{host}:{port}{path}:predict",
        data=json.dumps({"instances": X}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        body = json.loads(answer.read())
    return None, body["predictions"]


def once(host: str, grpc_port: int, rest_port: int, model: str, label: str | None, version):
    with grpc.insecure_channel(f"{host}:{grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        grpc_version, grpc_y = grpc_predict(stub, model, label, version)
    _, rest_y = rest_predict(host, rest_port, model, label, version)
    print(json.dumps({"grpc": {"version": grpc_version, "y": grpc_y}, "rest": {"y": rest_y}}))


def loop(
    host: str, grpc_port: int, rest_port: int, model: str, label: str | None, stop: Path, max_s
):
    ready = Path(f"{stop}.ready")
    ok = failed = 0
    failed_by_kind: dict[str, int] = {}
    errors: list[str] = []
    seen: list[tuple[float, str, int | None, list]] = []  # changes only
    last_key = None
    start = time.monotonic()
    # A new channel per request would hide connection resets; one long-lived channel is what
    # a real client has (it must survive pods going away behind the ClusterIP).
    channel = grpc.insecure_channel(f"{host}:{grpc_port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    i = 0
    while not stop.exists() and time.monotonic() - start < max_s:
        i += 1
        kind = "grpc" if i % 2 else "rest"
        try:
            if kind == "grpc":
                version, y = grpc_predict(stub, model, label, None)
            else:
                version, y = rest_predict(host, rest_port, model, label, None)
            ok += 1
            if ok == 1:
                ready.touch()  # the test waits for this before it changes anything
            key = (kind, version, tuple(round(v, 4) for v in y))
            if key != last_key:
                seen.append((round(time.monotonic() - start, 2), kind, version, y))
                last_key = key
        except (grpc.RpcError, urllib.error.URLError, OSError, KeyError, ValueError) as exc:
            failed += 1
            failed_by_kind[kind] = failed_by_kind.get(kind, 0) + 1
            if len(errors) < 20:
                errors.append(f"{time.monotonic() - start:.2f}s {kind}: {exc!r}"[:500])
        time.sleep(0.02)
    channel.close()
    print(
        json.dumps(
            {
                "ok": ok,
                "failed": failed,
                "failed_by_kind": failed_by_kind,
                "errors": errors,
                "seen": seen,
            }
        )
    )


def main() -> None:
    mode, host, grpc_port, rest_port, model, *rest = sys.argv[1:]
    if mode == "once":
        label = rest[0] if rest and rest[0] != "-" else None
        version = int(rest[1]) if len(rest) > 1 else None
        once(host, int(grpc_port), int(rest_port), model, label, version)
    elif mode == "loop":
        label, stop_file, max_s = rest
        loop(
            host,
            int(grpc_port),
            int(rest_port),
            model,
            None if label == "-" else label,
            Path(stop_file),
            float(max_s),
        )
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
