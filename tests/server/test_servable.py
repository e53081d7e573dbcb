"""Servable/Signature on real SavedModels: validation messages, output_filter, TF calls."""

from __future__ import annotations

import gc
import threading
import weakref

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tfmodel_server.errors import ServingError
from tfmodel_server.servables.tensorflow.loader import load_saved_model, parse_saved_model_tags

from tests.server import savedmodels


@pytest.fixture(scope="module")
def linear(tmp_path_factory):
    base = tmp_path_factory.mktemp("linear")
    path = savedmodels.export_linear(base, 7, a=3.0, b=1.0)
    servable = load_saved_model("linear", 7, str(path))
    yield servable
    servable.unload()


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    base = tmp_path_factory.mktemp("multi")
    path = savedmodels.export_multi_input(base, 1)
    servable = load_saved_model("multi", 1, str(path))
    yield servable
    servable.unload()


def _example(x: float) -> bytes:
    feature = {"x": tf.train.Feature(float_list=tf.train.FloatList(value=[x]))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _error(fn, *args, **kwargs) -> ServingError:
    with pytest.raises(ServingError) as info:
        fn(*args, **kwargs)
    return info.value


def test_signatures_and_tensor_info(linear):
    assert linear.name == "linear" and linear.version == 7
    assert set(linear.signatures) == {"serving_default", "regress_x_to_y", "classify_x_to_y"}
    sig = linear.signature("")
    assert sig.key == "serving_default"
    assert sig.method_name == "tensorflow/serving/predict"
    x = sig.inputs["x"]
    assert (x.alias, x.tensor_name, x.dtype, x.shape) == ("x", "x:0", types_pb2.DT_FLOAT, (-1,))
    scores = linear.signature("classify_x_to_y").outputs["scores"]
    assert scores.shape == (-1, 2) and scores.dtype == types_pb2.DT_FLOAT


def test_unknown_signature_is_failed_precondition(linear):
    err = _error(linear.signature, "nope")
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION
    assert err.message == 'Serving signature key "nope" not found.'


def test_predict_runs_version_specific_function(linear):
    sig = linear.signature("serving_default")
    out = sig.run(sig.validate_inputs({"x": np.array([1.0, 2.0], dtype=np.float32)}))
    np.testing.assert_allclose(out["y"], [4.0, 7.0])
    assert out["y"].dtype == np.float32


def test_regress_and_classify_signatures(linear):
    regress = linear.signature("regress_x_to_y")
    out = regress.run(regress.validate_inputs({"inputs": [_example(2.0), _example(0.0)]}))
    np.testing.assert_allclose(out["outputs"], [7.0, 1.0])
    classify = linear.signature("classify_x_to_y")
    out = classify.run(classify.validate_inputs({"inputs": np.array([_example(1.0)], object)}))
    assert out["classes"].tolist() == [[b"negative", b"positive"]]
    assert out["scores"].shape == (1, 2)
    np.testing.assert_allclose(out["scores"].sum(axis=1), [1.0], rtol=1e-6)


def test_input_set_mismatch_message_matches_tf_serving(multi):
    sig = multi.signature("")
    err = _error(sig.validate_inputs, {"a": np.zeros((1, 2), np.float32), "zz": [1]})
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.message == (
        "input size does not match signature: 2!=3 len({a,zz}) != len({a,b,s}). "
        "Sent extra: {zz}. Missing but required: {b,s}."
    )
    err = _error(sig.validate_inputs, {})
    assert err.message == (
        "input size does not match signature: 0!=3 len({}) != len({a,b,s}). "
        "Sent extra: {}. Missing but required: {a,b,s}."
    )


def test_dtype_mismatch_names_alias_and_both_dtypes(multi):
    sig = multi.signature("")
    err = _error(
        sig.validate_inputs,
        {"a": np.zeros((1, 2), np.float32), "b": np.array([1.5]), "s": np.array([b"q"], object)},
    )
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "'b'" in err.message and "DT_INT64" in err.message and "DT_DOUBLE" in err.message
    err = _error(
        sig.validate_inputs,
        {"a": np.zeros((1, 2), np.float32), "b": np.array([1]), "s": np.array([1, 2])},
    )
    assert "'s'" in err.message and "DT_STRING" in err.message


def test_shapes_are_left_to_the_graph(multi):
    # As TF Serving's predict_util: no static-shape check; the tensor is fed and the
    # graph decides. a[:, 0] + a[:, 1] works on a [1,3] 'a' ([-1,2] in the signature)...
    sig = multi.signature("")
    s = np.array([b"q"], object)
    inputs = sig.validate_inputs({"a": np.ones((1, 3), np.float32), "b": np.array([1]), "s": s})
    assert inputs["a"].shape == (1, 3)
    np.testing.assert_allclose(sig.run(inputs)["sum"], [3.0])
    # ...and shapes the graph cannot use are its INVALID_ARGUMENT, not a crash.
    bad = sig.validate_inputs({"a": np.ones((2, 2), np.float32), "b": np.array([1, 2, 3]), "s": s})
    err = _error(sig.run, bad)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT


def test_multi_input_strings_and_output_filter(multi):
    sig = multi.signature("serving_default")
    inputs = sig.validate_inputs(
        {
            "a": np.array([[1.0, 2.0], [3.0, 4.0]], np.float32),
            "b": np.array([10, 20], np.int64),
            "s": np.array(["hé", "x"]),  # unicode strings become UTF-8 bytes
        }
    )
    out = sig.run(inputs)
    assert set(out) == {"sum", "s_out", "s_bytes"}
    np.testing.assert_allclose(out["sum"], [13.0, 27.0])
    assert out["s_out"].tolist() == ["hé_out".encode(), b"x_out"]
    only = sig.run(inputs, ["s_bytes"])
    assert list(only) == ["s_bytes"] and only["s_bytes"].tolist() == ["hé".encode(), b"x"]


def test_output_filter_errors(multi):
    sig = multi.signature("")
    inputs = sig.validate_inputs(
        {"a": np.zeros((1, 2), np.float32), "b": np.array([1]), "s": np.array([b"q"], object)}
    )
    err = _error(sig.run, inputs, ["sum", "bogus"])
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.message == (
        "output tensor alias not found in signature: bogus "
        "Outputs expected to be in the set {s_bytes,s_out,sum}."
    )
    err = _error(sig.run, inputs, ["sum", "sum"])
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.message == "duplicate output tensor alias: sum"


def test_tf_runtime_error_is_reported_not_raised_raw(multi):
    sig = multi.signature("")
    # Batch sizes disagree: passes static checks, fails inside TF.
    inputs = sig.validate_inputs(
        {"a": np.zeros((2, 2), np.float32), "b": np.array([1, 2, 3]), "s": np.array([b"q"], object)}
    )
    err = _error(sig.run, inputs)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "shape" in err.message.lower() or "incompatible" in err.message.lower()


def test_concurrent_runs_from_threads(linear):
    sig = linear.signature("")
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(25):
                x = np.array([seed, i], np.float32)
                results.append((x, sig.run({"x": x})["y"]))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert len(results) == 100
    for x, y in results:
        np.testing.assert_allclose(y, 3.0 * x + 1.0)


def test_signature_def_map_has_every_signature(linear):
    sdm = linear.signature_def_map()
    assert set(sdm.signature_def) == {"serving_default", "regress_x_to_y", "classify_x_to_y"}
    assert sdm.signature_def["classify_x_to_y"].method_name == "tensorflow/serving/classify"
    assert sdm.signature_def["serving_default"].inputs["x"].name == "x:0"


def test_unload_releases_graph_and_session(tmp_path):
    path = savedmodels.export_linear(tmp_path, 1)
    servable = load_saved_model("m", 1, str(path))
    sig = servable.signature("")
    sig.run({"x": np.array([1.0], np.float32)})
    graph_ref = weakref.ref(servable._graph)
    session_ref = weakref.ref(servable._session)
    servable.unload()
    gc.collect()
    assert graph_ref() is None and session_ref() is None
    assert not servable.loaded
    err = _error(sig.run, {"x": np.array([1.0], np.float32)})
    assert err.code == grpc.StatusCode.UNAVAILABLE


def test_load_tf2_saved_model(tmp_path):
    class Module(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(4.0)

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
        def serve(self, x):
            return {"total": tf.reduce_sum(x, axis=1) * self.w}

    module = Module()
    tf.saved_model.save(module, str(tmp_path / "1"), signatures={"serving_default": module.serve})
    servable = load_saved_model("tf2", 1, str(tmp_path / "1"))
    try:
        sig = servable.signature("")
        assert sig.inputs["x"].shape == (-1, 3)
        out = sig.run(sig.validate_inputs({"x": np.ones((2, 3), np.float32)}))
        np.testing.assert_allclose(out["total"], [12.0, 12.0])
    finally:
        servable.unload()


def test_load_errors(tmp_path):
    corrupt = savedmodels.write_corrupt_version(tmp_path, 1)
    err = _error(load_saved_model, "m", 1, str(corrupt))
    assert err.code == grpc.StatusCode.DATA_LOSS
    assert "saved_model.pb" in err.message
    partial = savedmodels.write_partial_version(tmp_path, 2)
    err = _error(load_saved_model, "m", 2, str(partial))
    assert err.code == grpc.StatusCode.NOT_FOUND
    good = savedmodels.export_linear(tmp_path, 3)
    err = _error(load_saved_model, "m", 3, str(good), tags=("serve", "gpu"))
    assert err.code == grpc.StatusCode.NOT_FOUND
    assert "serve gpu" in err.message


def test_parse_saved_model_tags():
    assert parse_saved_model_tags("serve") == ("serve",)
    assert parse_saved_model_tags("serve, gpu,") == ("serve", "gpu")


def test_python_values_cast_only_when_lossless(multi):
    sig = multi.signature("")
    ok = sig.validate_inputs({"a": [[1, 2]], "b": [3], "s": ["x"]})
    assert ok["a"].dtype == np.float32 and ok["b"].dtype == np.int64
    assert ok["s"].dtype == object and ok["s"].tolist() == [b"x"]
    np.testing.assert_allclose(sig.run(ok)["sum"], [6.0])
    err = _error(sig.validate_inputs, {"a": [[1, 2]], "b": [1.5], "s": ["x"]})
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "'b'" in err.message and "DT_INT64" in err.message
