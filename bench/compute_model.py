"""The compute-bound model: a small CNN on a 32x32 one-channel image (fed flat, 1024 floats),
three 3x3 conv + ReLU + 2x2 max-pool blocks (32, 64, 64 channels), global average pool, dense
softmax over 10 classes, fixed random weights; a TF1-style SavedModel with one predict signature
like the demo's.

Unlike the demo's 64 -> 10 softmax (microseconds), a batch-1 call costs milliseconds on a small
CPU and the per-row cost falls only a few times with batching, so the model, not the protocol,
is what a server of it spends its time on: batching, TF's threads and --workers decide throughput.

    python -m bench.compute_model /tmp/cnn      # writes /tmp/cnn/1
"""

from __future__ import annotations

import os
import sys

NAME = "cnn"
SIGNATURE = "predict"
INPUT = "x"
OUTPUT = "y"
SIDE = 32
CHANNELS = (32, 64, 64)
DESCRIPTION = f"CNN, {SIDE}x{SIDE}x1 input (flat), 3x (3x3 conv + 2x2 max-pool) {CHANNELS} -> 10"


def export(base_path: str, version: int = 1, seed: int = 0) -> str:
    import numpy as np
    import tensorflow as tf

    tf1 = tf.compat.v1
    tf.get_logger().setLevel("ERROR")
    rng = np.random.default_rng(seed)

    def variable(shape, name):
        fan_in = int(np.prod(shape[:-1]))
        return tf1.Variable(
            (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32), name=name
        )

    export_path = os.path.join(base_path, str(version))
    staging = os.path.join(base_path, f".tmp-{version}-{os.getpid()}")
    os.makedirs(base_path, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default(), tf1.Session(graph=graph) as sess:
        x = tf1.placeholder(tf.float32, shape=[None, SIDE * SIDE], name=INPUT)
        h = tf.reshape(x, [-1, SIDE, SIDE, 1])
        c_in = 1
        for i, c_out in enumerate(CHANNELS):
            h = tf.nn.relu(tf.nn.conv2d(h, variable([3, 3, c_in, c_out], f"conv{i}"), 1, "SAME"))
            h = tf.nn.max_pool2d(h, 2, 2, "VALID")
            c_in = c_out
        h = tf.reduce_mean(h, [1, 2])
        y = tf.nn.softmax(tf.matmul(h, variable([c_in, 10], "dense")), name=OUTPUT)
        sess.run(tf1.global_variables_initializer())
        build_info = tf1.saved_model.utils.build_tensor_info
        signature = tf1.saved_model.signature_def_utils.build_signature_def(
            inputs={INPUT: build_info(x)},
            outputs={OUTPUT: build_info(y)},
            method_name=tf1.saved_model.signature_constants.PREDICT_METHOD_NAME,
        )
        builder = tf1.saved_model.Builder(staging)
        builder.add_meta_graph_and_variables(
            sess,
            [tf1.saved_model.tag_constants.SERVING],
            signature_def_map={SIGNATURE: signature},
            strip_default_attrs=True,
        )
        builder.save()
    os.rename(staging, export_path)
    return export_path


def example_row():
    import numpy as np

    return np.random.default_rng(1).random((1, SIDE * SIDE), dtype=np.float32)


if __name__ == "__main__":
    print(export(sys.argv[1]))
