"""Run inside a peer's venv: write the Open Inference Protocol (v2) gRPC protoset and one
ModelInferRequest for ghz, from the peer's own compiled protos.

    python -m bench.peers.v2_request MODULE PROTOSET REQUEST_BIN MODEL INPUT ROW_JSON
"""

from __future__ import annotations

import importlib
import json
import sys

from bench.protoset import build_protoset


def main(module: str, protoset: str, request_bin: str, model: str, name: str, row: str) -> None:
    build_protoset(protoset, module)
    pb2 = importlib.import_module(module)
    values = json.loads(row)
    request = pb2.ModelInferRequest(model_name=model)
    tensor = request.inputs.add()
    tensor.name = name
    tensor.datatype = "FP32"
    tensor.shape.extend([1, len(values)])
    tensor.contents.fp32_contents.extend(values)
    with open(request_bin, "wb") as f:
        f.write(request.SerializeToString())


if __name__ == "__main__":
    main(*sys.argv[1:7])
