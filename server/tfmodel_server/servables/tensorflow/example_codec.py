"""tf.Example input for classify / regress / multi-inference (TF Serving's util.cc).

A request's `Input` becomes the batch of serialized tf.Example strings fed to the
signature's single DT_STRING input. With a context, each example is the context bytes
followed by the example bytes: protobuf merge semantics, so an example's own feature
wins over a context feature of the same name (InputToSerializedExampleTensor).
"""

from __future__ import annotations

import numpy as np
from tensorflow_serving.apis import input_pb2

from tfmodel_server.errors import invalid_argument


def serialized_examples(input: input_pb2.Input) -> list[bytes]:
    """Serialized tf.Example strings of `input`; INVALID_ARGUMENT "Input is empty." if none."""
    kind = input.WhichOneof("kind")
    if kind == "example_list":
        result = [example.SerializeToString() for example in input.example_list.examples]
    elif kind == "example_list_with_context":
        with_context = input.example_list_with_context
        context = with_context.context.SerializeToString()
        result = [context + example.SerializeToString() for example in with_context.examples]
    else:
        result = []
    if not result:
        raise invalid_argument("Input is empty.")
    return result


def serialized_examples_array(input: input_pb2.Input) -> np.ndarray:
    """The [num_examples] object array of serialized examples fed to the model."""
    values = serialized_examples(input)
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr
