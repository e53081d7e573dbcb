"""Real SavedModels for server tests, exported with TensorFlow.

Each distinct model is built once per process into a template directory and
copied for further versions (exporting costs ~0.3 s, copying ~1 ms).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from pathlib import Path

_TEMPLATE_ROOT: Path | None = None
_TEMPLATES: dict[tuple, Path] = {}
_LOCK = threading.Lock()


def _template_root() -> Path:
    global _TEMPLATE_ROOT
    if _TEMPLATE_ROOT is None:
        _TEMPLATE_ROOT = Path(tempfile.mkdtemp(prefix="tfmodel-savedmodels-"))
        atexit.register(shutil.rmtree, _TEMPLATE_ROOT, True)
    return _TEMPLATE_ROOT


def _template(key: tuple, build) -> Path:
    with _LOCK:
        path = _TEMPLATES.get(key)
        if path is None:
            path = _template_root() / "_".join(str(k) for k in key)
            if path.exists():
                shutil.rmtree(path)
            build(path)
            _TEMPLATES[key] = path
        return path


def _copy_version(template: Path, base_path: str | os.PathLike, version: int) -> Path:
    target = Path(base_path) / str(version)
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(template, target)
    return target


def _build_linear(path: Path, a: float, b: float) -> None:
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, shape=[None], name="x")
        a_var = v1.Variable(a, dtype=tf.float32, name="a")
        b_const = tf.constant(b, dtype=tf.float32, name="b")
        y = tf.add(a_var * x, b_const, name="y")

        serialized = v1.placeholder(tf.string, shape=[None], name="tf_example")
        features = v1.io.parse_example(serialized, {"x": v1.io.FixedLenFeature([1], tf.float32)})
        ex_x = tf.reshape(features["x"], [-1])
        ex_y = tf.reshape(a_var * ex_x + b_const, [-1, 1], name="regress_y")
        ex_y_flat = tf.reshape(ex_y, [-1], name="regress_y_flat")
        # Two classes: score of "positive" is sigmoid(y), "negative" the rest.
        pos = tf.sigmoid(ex_y_flat)
        scores = tf.stack([1.0 - pos, pos], axis=1, name="scores")
        n = tf.shape(scores)[0]
        classes = tf.tile(
            tf.constant([["negative", "positive"]], dtype=tf.string), [n, 1], name="classes"
        )

        sig = v1.saved_model.signature_def_utils
        utils = v1.saved_model.utils
        predict = sig.build_signature_def(
            inputs={"x": utils.build_tensor_info(x)},
            outputs={"y": utils.build_tensor_info(y)},
            method_name="tensorflow/serving/predict",
        )
        regress = sig.regression_signature_def(serialized, ex_y_flat)
        classify = sig.classification_signature_def(serialized, classes, scores)

        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(
                session,
                [v1.saved_model.tag_constants.SERVING],
                signature_def_map={
                    "serving_default": predict,
                    "regress_x_to_y": regress,
                    "classify_x_to_y": classify,
                },
                strip_default_attrs=True,
            )
            builder.save()


def _build_multi_input(path: Path) -> None:
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        a = v1.placeholder(tf.float32, shape=[None, 2], name="a")
        b = v1.placeholder(tf.int64, shape=[None], name="b")
        s = v1.placeholder(tf.string, shape=[None], name="s")
        total = tf.add(a[:, 0] + a[:, 1], tf.cast(b, tf.float32), name="sum")
        s_out = tf.strings.join([s, tf.constant("_out")], name="s_out")
        s_bytes = tf.identity(s, name="s_bytes")

        utils = v1.saved_model.utils
        predict = v1.saved_model.signature_def_utils.build_signature_def(
            inputs={
                "a": utils.build_tensor_info(a),
                "b": utils.build_tensor_info(b),
                "s": utils.build_tensor_info(s),
            },
            outputs={
                "sum": utils.build_tensor_info(total),
                "s_out": utils.build_tensor_info(s_out),
                "s_bytes": utils.build_tensor_info(s_bytes),
            },
            method_name="tensorflow/serving/predict",
        )
        with v1.Session(graph=graph) as session:
            builder = v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(
                session,
                [v1.saved_model.tag_constants.SERVING],
                signature_def_map={"serving_default": predict},
                strip_default_attrs=True,
            )
            builder.save()


def _build_faulty(path: Path, timeout_micros: int = 1) -> None:
    """serving_default x f32[-1] -> y, whose run always fails with DEADLINE_EXCEEDED.

    TF's Unbatch op waits `timeout_micros` for the rest of a batch that never comes: a
    server-side fault (the request is well-formed) without a Python op or a sleep.
    """
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, shape=[None], name="x")
        waiting = tf.raw_ops.Unbatch(
            batched_tensor=tf.reshape(x, [-1, 1]),
            batch_index=tf.constant([[0, 0, 1]], tf.int64),  # a batch of 1 claims 2 rows
            id=tf.constant(7, tf.int64),
            timeout_micros=timeout_micros,
        )
        y = tf.add(x, tf.reduce_sum(waiting), name="y")
        utils = v1.saved_model.utils
        predict = v1.saved_model.signature_def_utils.build_signature_def(
            inputs={"x": utils.build_tensor_info(x)},
            outputs={"y": utils.build_tensor_info(y)},
            method_name="tensorflow/serving/predict",
        )
        with v1.Session(graph=graph) as session:
            builder = v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(
                session,
                [v1.saved_model.tag_constants.SERVING],
                signature_def_map={"serving_default": predict},
                strip_default_attrs=True,
            )
            builder.save()


def _build_image(path: Path) -> None:
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, shape=[None, 784], name="images")
        y = tf.reduce_sum(x, axis=1, name="scores")
        utils = v1.saved_model.utils
        predict = v1.saved_model.signature_def_utils.build_signature_def(
            inputs={"images": utils.build_tensor_info(x)},
            outputs={"scores": utils.build_tensor_info(y)},
            method_name="tensorflow/serving/predict",
        )
        with v1.Session(graph=graph) as session:
            builder = v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(
                session,
                [v1.saved_model.tag_constants.SERVING],
                signature_def_map={"serving_default": predict},
                strip_default_attrs=True,
            )
            builder.save()


def export_image(base_path: str | os.PathLike, version: int) -> Path:
    """serving_default: images f32[-1,784] -> scores f32[-1] (row sums), MNIST-shaped."""
    template = _template(("image",), _build_image)
    return _copy_version(template, base_path, version)


def export_linear(
    base_path: str | os.PathLike, version: int, a: float = 0.5, b: float = 2.0
) -> Path:
    """Version dir with serving_default (y = a*x + b), regress_x_to_y, classify_x_to_y."""
    template = _template(("linear", a, b), lambda p: _build_linear(p, a, b))
    return _copy_version(template, base_path, version)


def export_multi_input(base_path: str | os.PathLike, version: int) -> Path:
    """serving_default: a f32[-1,2], b i64[-1], s str[-1] -> sum, s_out, s_bytes."""
    template = _template(("multi_input",), _build_multi_input)
    return _copy_version(template, base_path, version)


def export_faulty(base_path: str | os.PathLike, version: int, timeout_micros: int = 1) -> Path:
    """Like export_linear's serving_default (x -> y), but every run fails server-side
    (DEADLINE_EXCEEDED, after about `timeout_micros`): a canary that really fails."""
    template = _template(("faulty", timeout_micros), lambda p: _build_faulty(p, timeout_micros))
    return _copy_version(template, base_path, version)


def write_corrupt_version(base_path: str | os.PathLike, version: int) -> Path:
    """A version dir whose saved_model.pb is garbage (fails to load)."""
    target = Path(base_path) / str(version)
    target.mkdir(parents=True, exist_ok=True)
    (target / "saved_model.pb").write_bytes(b"this is not a SavedModel protobuf \xff\xfe\x00")
    (target / "variables").mkdir(exist_ok=True)
    return target


def write_partial_version(base_path: str | os.PathLike, version: int) -> Path:
    """A half-copied version dir: variables/ present, saved_model.pb not yet written."""
    target = Path(base_path) / str(version)
    (target / "variables").mkdir(parents=True, exist_ok=True)
    (target / "variables" / "variables.index").write_bytes(b"\x00" * 16)
    (target / "variables" / "variables.data-00000-of-00001").write_bytes(b"\x00" * 64)
    return target
