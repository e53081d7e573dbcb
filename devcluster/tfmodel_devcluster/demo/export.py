"""Train a softmax classifier and export it like TF Serving's mnist_saved_model.py.

Same graph, signatures and printed lines as the tutorial, written with tf.compat.v1 so the
SavedModel carries a real classification signature (method tensorflow/serving/classify) next to
the `predict_images` predict signature.
"""

from __future__ import annotations

import os

import numpy as np

from tfmodel_devcluster.demo.data import (
    NUM_CLASSES,
    NUM_FEATURES,
    DigitsSplit,
    load_digits_split,
    one_hot,
)

BATCH_SIZE = 50
# Small on purpose: 100 iterations leave a visibly worse model than 2000, which is what the
# walk-through shows when the server swaps version 1 for version 2.
LEARNING_RATE = 0.002


def _batches(split: DigitsSplit, seed: int):
    """Endless mini-batches over the training set, reshuffled every epoch (like next_batch)."""
    rng = np.random.default_rng(seed)
    n = len(split.train_labels)
    while True:
        order = rng.permutation(n)
        for start in range(0, n - BATCH_SIZE + 1, BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            yield split.train_images[idx], one_hot(split.train_labels[idx])


def export_model(
    export_path_base: str,
    training_iteration: int,
    model_version: int,
    seed: int = 0,
    verbose: bool = True,
) -> str:
    """Train for `training_iteration` steps and write a SavedModel to BASE/<model_version>.

    Returns the version directory. The directory is written under a temporary name and renamed
    into place, so a polling server never sees a half-written version.
    """
    import tensorflow as tf

    tf1 = tf.compat.v1
    tf.get_logger().setLevel("ERROR")  # the v1 SavedModel builder API logs deprecation notes
    log = print if verbose else (lambda *a, **k: None)
    if training_iteration <= 0:
        raise ValueError("Please specify a positive value for training iteration.")
    if model_version <= 0:
        raise ValueError("Please specify a positive value for version number.")

    split = load_digits_split()
    log("Training model...")
    graph = tf.Graph()
    with graph.as_default(), tf1.Session(graph=graph) as sess:
        tf1.set_random_seed(seed)
        serialized_tf_example = tf1.placeholder(tf.string, shape=[None], name="tf_example")
        feature_configs = {"x": tf1.FixedLenFeature(shape=[NUM_FEATURES], dtype=tf.float32)}
        tf_example = tf1.parse_example(serialized_tf_example, feature_configs)
        x = tf.identity(tf_example["x"], name="x")  # the predict signature feeds this directly
        y_ = tf1.placeholder(tf.float32, shape=[None, NUM_CLASSES])
        w = tf1.Variable(tf.zeros([NUM_FEATURES, NUM_CLASSES]))
        b = tf1.Variable(tf.zeros([NUM_CLASSES]))
        sess.run(tf1.global_variables_initializer())
        y = tf.nn.softmax(tf.matmul(x, w) + b, name="y")
        cross_entropy = -tf.reduce_sum(y_ * tf.math.log(y + 1e-10))
        train_step = tf1.train.GradientDescentOptimizer(LEARNING_RATE).minimize(cross_entropy)
        values, indices = tf.nn.top_k(y, NUM_CLASSES)
        class_names = tf.constant([str(i) for i in range(NUM_CLASSES)])
        prediction_classes = tf.gather(class_names, indices)  # no lookup table to initialise

        batches = _batches(split, seed)
        for _ in range(training_iteration):
            images, labels = next(batches)
            sess.run(train_step, feed_dict={x: images, y_: labels})
        correct = tf.equal(tf.argmax(y, 1), tf.argmax(y_, 1))
        accuracy = tf.reduce_mean(tf.cast(correct, tf.float32))
        test_accuracy = sess.run(
            accuracy, feed_dict={x: split.test_images, y_: one_hot(split.test_labels)}
        )
        log(f"training accuracy {test_accuracy:g}")
        log("Done training!")

        export_path = os.path.join(export_path_base, str(model_version))
        log("Exporting trained model to", export_path)
        if os.path.exists(export_path):
            raise FileExistsError(f"Export directory already exists: {export_path}")
        os.makedirs(export_path_base, exist_ok=True)
        staging = os.path.join(export_path_base, f".tmp-{model_version}-{os.getpid()}")
        builder = tf1.saved_model.Builder(staging)

        sig = tf1.saved_model.signature_constants
        build_info = tf1.saved_model.utils.build_tensor_info
        classification_signature = tf1.saved_model.signature_def_utils.build_signature_def(
            inputs={sig.CLASSIFY_INPUTS: build_info(serialized_tf_example)},
            outputs={
                sig.CLASSIFY_OUTPUT_CLASSES: build_info(prediction_classes),
                sig.CLASSIFY_OUTPUT_SCORES: build_info(values),
            },
            method_name=sig.CLASSIFY_METHOD_NAME,
        )
        prediction_signature = tf1.saved_model.signature_def_utils.build_signature_def(
            inputs={"images": build_info(x)},
            outputs={"scores": build_info(y)},
            method_name=sig.PREDICT_METHOD_NAME,
        )
        builder.add_meta_graph_and_variables(
            sess,
            [tf1.saved_model.tag_constants.SERVING],
            signature_def_map={
                "predict_images": prediction_signature,
                sig.DEFAULT_SERVING_SIGNATURE_DEF_KEY: classification_signature,
            },
            strip_default_attrs=True,
        )
        builder.save()
    os.rename(staging, export_path)
    log("Done exporting!")
    return export_path
