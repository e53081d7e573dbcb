"""example_codec: serialized tf.Examples as TF Serving feeds them, checked by TF's parser."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import input_pb2
from tfmodel_server.codecs import json_request as jt
from tfmodel_server.errors import ServingError
from tfmodel_server.servables.tensorflow.example_codec import (
    serialized_examples,
    serialized_examples_array,
)

FEATURES = {
    "x": tf.io.FixedLenFeature([], tf.float32, default_value=-1.0),
    "tag": tf.io.FixedLenFeature([], tf.string, default_value=b""),
    "n": tf.io.VarLenFeature(tf.int64),
}


def parse(serialized: list[bytes]) -> dict[str, np.ndarray]:
    out = tf.io.parse_example(tf.constant(serialized), FEATURES)
    return {
        "x": out["x"].numpy(),
        "tag": out["tag"].numpy(),
        "n": tf.sparse.to_dense(out["n"]).numpy(),
    }


def test_example_list():
    inp = text_format.Parse(
        """example_list {
             examples { features { feature { key: "x" value { float_list { value: 1.5 } } } } }
             examples { features { feature { key: "tag" value { bytes_list { value: "b" } } }
                                   feature { key: "n" value { int64_list { value: [4, 5] } } } } }
           }""",
        input_pb2.Input(),
    )
    serialized = serialized_examples(inp)
    assert len(serialized) == 2
    assert example_pb2.Example.FromString(serialized[0]) == inp.example_list.examples[0]
    parsed = parse(serialized)
    assert parsed["x"].tolist() == [1.5, -1.0]
    assert parsed["tag"].tolist() == [b"", b"b"]
    assert parsed["n"].tolist() == [[0, 0], [4, 5]]


def test_context_is_merged_and_examples_win():
    inp = text_format.Parse(
        """example_list_with_context {
             context { features {
               feature { key: "tag" value { bytes_list { value: "ctx" } } }
               feature { key: "x" value { float_list { value: 9.0 } } } } }
             examples { features { feature { key: "x" value { float_list { value: 1.0 } } } } }
             examples { features { feature { key: "n" value { int64_list { value: 7 } } } } }
           }""",
        input_pb2.Input(),
    )
    serialized = serialized_examples(inp)
    parsed = parse(serialized)
    assert parsed["tag"].tolist() == [b"ctx", b"ctx"]  # context feature in every example
    assert parsed["x"].tolist() == [1.0, 9.0]  # an example's own feature overrides the context
    assert parsed["n"].tolist() == [[0], [7]]
    merged = example_pb2.Example.FromString(serialized[0])
    assert merged.features.feature["x"].float_list.value == [1.0]
    assert merged.features.feature["tag"].bytes_list.value == [b"ctx"]


@pytest.mark.parametrize(
    "text",
    ["", "example_list {}", "example_list_with_context { context {} }"],
    ids=["kind-not-set", "empty-list", "context-without-examples"],
)
def test_empty_input(text):
    inp = text_format.Parse(text, input_pb2.Input())
    with pytest.raises(ServingError) as info:
        serialized_examples(inp)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.message == "Input is empty."


def test_array_form_and_json_round_trip():
    req = jt.parse_examples_request(
        b'{"context": {"tag": {"b64": "Y3R4"}}, "examples": [{"x": 2.0, "n": [1, 2]}, {"x": 0.5}]}'
    )
    arr = serialized_examples_array(req.input)
    assert arr.dtype == object and arr.shape == (2,)
    parsed = parse(list(arr))
    assert parsed["x"].tolist() == [2.0, 0.5]
    assert parsed["tag"].tolist() == [b"ctx", b"ctx"]
    assert parsed["n"].tolist() == [[1, 2], [0, 0]]


def test_json_int_feature_rejected_by_float_parser():
    # JSON integers become int64_list (as in TF Serving), so a float feature rejects them.
    req = jt.parse_examples_request(b'{"examples": [{"x": 2}]}')
    with pytest.raises(tf.errors.InvalidArgumentError):
        parse(serialized_examples(req.input))
