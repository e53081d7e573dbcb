"""tf.Example input for classify / regress / multi-inference (TF Serving's util.cc).

A request's `Input` becomes the batch of serialized tf.Example strings fed to the
signature's single DT_STRING input. With a context, each example is the context bytes
followed by the example bytes: protobuf merge semantics, so an example's own feature
wins over a context feature of the same name (InputToSerializedExampleTensor).
"""

from __future__ import annotations

import numpy as np
from tensorflow_serving.apis import input_pb2

from tfmodel_server.codecs.limits import STRING_ELEMENT_BYTES, DecodeBudget
from tfmodel_server.errors import invalid_argument

_INPUT_NAME = "examples"  # how budget errors name the Example batch


def serialized_examples(input: input_pb2.Input, budget: DecodeBudget | None = None) -> list[bytes]:
    """Serialized tf.Example strings of `input`; INVALID_ARGUMENT "Input is empty." if none.

    The size is charged to `budget` first: a context is copied into every example, so
    a 1 MB context with a million empty examples would otherwise build a terabyte.
    """
    if budget is None:
        budget = DecodeBudget()
    kind = input.WhichOneof("kind")
    if kind == "example_list":
        examples = input.example_list.examples
        context = b""
    elif kind == "example_list_with_context":
        examples = input.example_list_with_context.examples
        context = input.example_list_with_context.context.SerializeToString()
    else:
        examples = []
        context = b""
    if not examples:
        raise invalid_argument("Input is empty.")
    n = len(examples)
    size = n * (len(context) + STRING_ELEMENT_BYTES) + sum(e.ByteSize() for e in examples)
    budget.charge(size, _INPUT_NAME, f"{n} serialized tf.Examples")
    return [context + example.SerializeToString() for example in examples]


def serialized_examples_array(
    input: input_pb2.Input, budget: DecodeBudget | None = None
) -> np.ndarray:
    """The [num_examples] object array of serialized examples fed to the model."""
    values = serialized_examples(input, budget)
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr
