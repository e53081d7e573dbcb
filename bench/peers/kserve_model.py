"""A kserve.Model serving one SavedModel signature (TF2 loader), started as a script:

    python bench/peers/kserve_model.py --model_name M --model_dir DIR --signature S \
        --http_port P --grpc_port G

Answers v1 REST (`{"instances": [...]}` -> `{"predictions": [...]}`) and v2 REST/gRPC
(InferRequest -> InferResponse). One server process (workers=1), the model called on the loop.
"""

from __future__ import annotations

import argparse
import os

# No per-request log lines (tfmodel writes none either); read when kserve is imported.
os.environ.setdefault("KSERVE_LOGLEVEL", "WARNING")

import kserve
import numpy as np
import tensorflow as tf
from kserve import InferOutput, InferRequest, InferResponse


class TFSavedModel(kserve.Model):
    def __init__(self, name: str, model_dir: str, signature: str) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.signature = signature

    def load(self) -> bool:
        self._fn = tf.saved_model.load(self.model_dir).signatures[self.signature]
        self._input = next(iter(self._fn.structured_input_signature[1]))
        self._output = next(iter(self._fn.structured_outputs))
        self.ready = True
        return True

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self._fn(**{self._input: tf.constant(x, tf.float32)})[self._output].numpy()

    async def predict(self, payload, headers=None, response_headers=None):
        if isinstance(payload, InferRequest):
            y = self._run(payload.inputs[0].as_numpy())
            out = InferOutput(name=self._output, shape=list(y.shape), datatype="FP32")
            out.set_data_from_numpy(y, binary_data=False)
            return InferResponse(
                model_name=self.name, infer_outputs=[out], response_id=payload.id or ""
            )
        y = self._run(np.asarray(payload["instances"], np.float32))
        return {"predictions": y.tolist()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model_name", required=True)
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--signature", required=True)
    parser.add_argument("--http_port", type=int, required=True)
    parser.add_argument("--grpc_port", type=int, required=True)
    args = parser.parse_args()
    model = TFSavedModel(args.model_name, args.model_dir, args.signature)
    model.load()
    kserve.ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, workers=1).start([model])


if __name__ == "__main__":
    main()
