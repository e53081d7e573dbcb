"""The compute-bound model: a wide MLP (256 -> 1536 -> 1536 -> 10, ReLU, softmax), fixed random
weights, exported as a TF1-style SavedModel with one predict signature like the demo's.

A batch-1 call reads all ~2.8 M weights (11 MB, more than the L2 cache), so it costs milliseconds on
a small CPU, and a batch of 64 costs far less than 64 single calls: batching decides throughput.

    python -m bench.compute_model /tmp/mlp      # writes /tmp/mlp/1
"""

from __future__ import annotations

import os
import sys

NAME = "mlp"
SIGNATURE = "predict"
INPUT = "x"
OUTPUT = "y"
WIDTHS = (256, 1536, 1536, 10)


def export(base_path: str, version: int = 1, seed: int = 0) -> str:
    import numpy as np
    import tensorflow as tf

    tf1 = tf.compat.v1
    tf.get_logger().setLevel("ERROR")
    rng = np.random.default_rng(seed)
    export_path = os.path.join(base_path, str(version))
    staging = os.path.join(base_path, f".tmp-{version}-{os.getpid()}")
    os.makedirs(base_path, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default(), tf1.Session(graph=graph) as sess:
        x = tf1.placeholder(tf.float32, shape=[None, WIDTHS[0]], name=INPUT)
        h = x
        for i, (n_in, n_out) in enumerate(zip(WIDTHS, WIDTHS[1:], strict=False)):
            w = tf1.Variable(
                (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32),
                name=f"w{i}",
            )
            b = tf1.Variable(np.zeros(n_out, np.float32), name=f"b{i}")
            h = tf.matmul(h, w) + b
            h = tf.nn.relu(h) if i < len(WIDTHS) - 2 else tf.nn.softmax(h, name=OUTPUT)
        sess.run(tf1.global_variables_initializer())
        build_info = tf1.saved_model.utils.build_tensor_info
        signature = tf1.saved_model.signature_def_utils.build_signature_def(
            inputs={INPUT: build_info(x)},
            outputs={OUTPUT: build_info(h)},
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

    return np.random.default_rng(1).standard_normal((1, WIDTHS[0])).astype(np.float32)


if __name__ == "__main__":
    print(export(sys.argv[1]))
