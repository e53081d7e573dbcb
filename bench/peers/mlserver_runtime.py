"""An MLServer custom runtime serving one SavedModel signature (loaded with TF2's loader).

model-settings.json: {"implementation": "mlserver_runtime.TFSavedModel",
                      "parameters": {"uri": DIR, "extra": {"signature": NAME}}}
Decodes the first input with NumpyCodec, calls the signature on the event loop (as MLServer's
own runtimes call their models), encodes the one output. With adaptive batching MLServer
concatenates queued requests along the first axis before `predict` and splits the response.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class TFSavedModel(MLModel):
    async def load(self) -> bool:
        params = self.settings.parameters
        signature = (params.extra or {}).get("signature", "serving_default")
        self._fn = tf.saved_model.load(params.uri).signatures[signature]
        self._input = next(iter(self._fn.structured_input_signature[1]))
        self._output = next(iter(self._fn.structured_outputs))
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        y = self._fn(**{self._input: tf.constant(x)})[self._output].numpy()
        return InferenceResponse(
            model_name=self.name,
            id=payload.id,
            outputs=[NumpyCodec.encode_output(name=self._output, payload=y)],
        )
