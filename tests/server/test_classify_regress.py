"""classify_regress with real TensorFlow functions behind contract-shaped signatures.

The Signature/TensorInfo dataclasses mirror servable.py's contract; run() calls a real
tf.function that parses the serialized tf.Examples, so the feed and the result
conversion are exercised against real model outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
import numpy as np
import orjson
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.framework import types_pb2 as t
from tensorflow_serving.apis import inference_pb2, input_pb2
from tfmodel_server.codecs import json_request as jt
from tfmodel_server.codecs import json_response as jr
from tfmodel_server.errors import ServingError
from tfmodel_server.servables.tensorflow import classify_regress as cr

PREDICT = "tensorflow/serving/predict"


@dataclass(frozen=True)
class TensorInfo:
    alias: str
    tensor_name: str
    dtype: int
    shape: tuple[int, ...] | None


@dataclass
class Signature:
    key: str
    method_name: str
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]
    fn: object = field(repr=False, default=None)

    def run(self, inputs, output_filter=()):
        result = self.fn(**{alias: tf.constant(v) for alias, v in inputs.items()})
        return {k: v.numpy() for k, v in result.items() if not output_filter or k in output_filter}


def run(signature, feed, wanted):
    return signature.run(feed, wanted)


FEATURES = {
    "x": tf.io.FixedLenFeature([], tf.float32),
    "bias": tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
}


@tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
def classify_fn(inputs):
    f = tf.io.parse_example(inputs, FEATURES)
    z = f["x"] + f["bias"]
    scores = tf.stack([tf.sigmoid(-z), tf.sigmoid(z)], axis=1)
    classes = tf.tile(tf.constant([["neg", "pos"]]), [tf.shape(z)[0], 1])
    return {"classes": classes, "scores": scores}


@tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
def regress_fn(inputs):
    f = tf.io.parse_example(inputs, FEATURES)
    return {"outputs": 2.0 * f["x"] + f["bias"]}


@tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
def regress_column_fn(inputs):
    return {"outputs": tf.expand_dims(regress_fn(inputs)["outputs"], 1)}


def info(alias, dtype=t.DT_FLOAT, shape=(-1,), name=None):
    return TensorInfo(alias, name or f"{alias}:0", dtype, shape)


EXAMPLES_IN = {"inputs": info("inputs", t.DT_STRING, (-1,), "input_examples:0")}


def classify_signature(
    method=cr.CLASSIFY_METHOD_NAME, outputs=("classes", "scores"), fn=classify_fn
):
    outs = {
        "classes": info("classes", t.DT_STRING, (-1, 2)),
        "scores": info("scores", t.DT_FLOAT, (-1, 2)),
    }
    return Signature("classify_sig", method, dict(EXAMPLES_IN), {k: outs[k] for k in outputs}, fn)


def regress_signature(method=cr.REGRESS_METHOD_NAME, fn=regress_fn):
    return Signature("regress_sig", method, dict(EXAMPLES_IN), {"outputs": info("outputs")}, fn)


def make_input(xs, bias=None) -> input_pb2.Input:
    inp = input_pb2.Input()
    target = inp.example_list_with_context if bias is not None else inp.example_list
    if bias is not None:
        target.context.features.feature["bias"].float_list.value.append(bias)
    for x in xs:
        target.examples.add().features.feature["x"].float_list.value.append(x)
    return inp


def sigmoid(z):
    return 1 / (1 + np.exp(-np.asarray(z, np.float64)))


def err(fn, *args, code=grpc.StatusCode.INVALID_ARGUMENT, **kwargs) -> str:
    with pytest.raises(ServingError) as e:
        fn(*args, **kwargs)
    assert e.value.code == code
    return e.value.message


# ---------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------


def test_classification_end_to_end():
    sig = classify_signature()
    inp = make_input([0.0, 2.0, -1.0])
    feed = cr.classification_feed(sig, inp)
    assert list(feed) == ["inputs"] and feed["inputs"].shape == (3,)
    assert cr.classification_outputs(sig) == ("classes", "scores")
    result = cr.run_classification(sig, inp, run)
    assert len(result.classifications) == 3
    for cl, x in zip(result.classifications, [0.0, 2.0, -1.0], strict=True):
        assert [c.label for c in cl.classes] == ["neg", "pos"]
        np.testing.assert_allclose(
            [c.score for c in cl.classes], [sigmoid(-x), sigmoid(x)], rtol=1e-6
        )


def test_classification_uses_context():
    result = cr.run_classification(classify_signature(), make_input([1.0, 2.0], bias=-1.0), run)
    np.testing.assert_allclose(
        [cl.classes[1].score for cl in result.classifications], sigmoid([0.0, 1.0]), rtol=1e-6
    )


def test_classification_scores_only_and_classes_only():
    scores_only = classify_signature(outputs=("scores",))
    result = cr.run_classification(scores_only, make_input([0.0]), run)
    assert [c.label for c in result.classifications[0].classes] == ["", ""]
    assert [c.score for c in result.classifications[0].classes] == [0.5, 0.5]
    classes_only = classify_signature(outputs=("classes",))
    result = cr.run_classification(classes_only, make_input([0.0]), run)
    assert [(c.label, c.score) for c in result.classifications[0].classes] == [
        ("neg", 0.0),
        ("pos", 0.0),
    ]


def test_method_name_check_is_off_by_default():
    sig = classify_signature(method=PREDICT)  # how TF2 SavedModels mark every signature
    assert len(cr.run_classification(sig, make_input([1.0]), run).classifications) == 1
    msg = err(cr.classification_feed, sig, make_input([1.0]), check_method_name=True)
    assert msg == (
        "Expected classification signature method_name to be tensorflow/serving/classify. "
        "Was: tensorflow/serving/predict"
    )
    msg = err(
        cr.regression_feed,
        regress_signature(method=PREDICT),
        make_input([1.0]),
        check_method_name=True,
    )
    assert msg == (
        "Expected regression signature method_name to be tensorflow/serving/regress. "
        "Was: tensorflow/serving/predict"
    )


def test_classification_signature_errors():
    inp = make_input([1.0])
    sig = classify_signature()
    sig.inputs["other"] = info("other", t.DT_STRING)
    assert err(cr.classification_feed, sig, inp) == "Expected one input Tensor."

    sig = classify_signature()
    sig.outputs["extra"] = info("extra")
    assert err(cr.classification_feed, sig, inp) == "Expected one or two output Tensors, found 3"

    sig = classify_signature()
    sig.inputs = {"examples": info("examples", t.DT_STRING, (-1,), "input_examples:0")}
    msg = err(cr.classification_feed, sig, inp, code=grpc.StatusCode.FAILED_PRECONDITION)
    assert msg.startswith("No classification inputs found in SignatureDef: ")
    assert 'key: "examples"' in msg and 'name: "input_examples:0"' in msg

    sig = classify_signature(outputs=())
    sig.outputs = {"probabilities": info("probabilities")}
    msg = err(cr.classification_feed, sig, inp, code=grpc.StatusCode.FAILED_PRECONDITION)
    assert msg.startswith(
        'Expected classification signature outputs to contain at least one of "classes" or '
        '"scores". Signature was: '
    )
    assert 'method_name: "tensorflow/serving/classify"' in msg

    sig = classify_signature()
    sig.inputs = {"inputs": info("inputs", t.DT_FLOAT)}
    assert "Expected input Tensor 'inputs' of DT_STRING" in err(cr.classification_feed, sig, inp)

    assert err(cr.classification_feed, classify_signature(), input_pb2.Input()) == "Input is empty."


def test_classification_result_errors_on_real_outputs():
    sig = classify_signature()
    outputs = sig.run(cr.classification_feed(sig, make_input([1.0, 2.0])))
    classes, scores = outputs["classes"], outputs["scores"]
    assert classes.dtype == object and scores.dtype == np.float32

    assert err(cr.classification_result, sig, {"classes": classes[:, 0], "scores": scores}, 2) == (
        "Expected Tensor shape: [batch_size num_classes] but got [2]"
    )
    assert err(
        cr.classification_result, sig, {"classes": classes, "scores": scores.astype(np.float64)}, 2
    ) == ("Expected scores Tensor of DT_FLOAT. Got: DT_DOUBLE")
    assert err(
        cr.classification_result, sig, {"classes": np.ones((2, 2), np.int32), "scores": scores}, 2
    ) == ("Expected classes Tensor of DT_STRING. Got: DT_INT32")
    assert err(cr.classification_result, sig, {"classes": classes, "scores": scores}, 3) == (
        "Expected classes output batch size of 3. Got: 2"
    )
    assert err(cr.classification_result, sig, {"classes": classes[:, :1], "scores": scores}, 2) == (
        "Tensors class and score should match in dim_size(1). Got 1 vs. 2"
    )
    assert err(cr.classification_result, sig, {"scores": scores}, 2) == (
        "Expected 2 output tensor(s).  Got: 1"
    )


def test_classification_json_end_to_end():
    body = b'{"context": {"bias": 1.0}, "examples": [{"x": 0.0}, {"x": -1.0}]}'
    req = jt.parse_examples_request(body)
    result = cr.run_classification(classify_signature(), req.input, run)
    out = jr.format_classify_response(result)
    expected = [
        [["neg", float(np.float32(sigmoid(-z)))], ["pos", float(np.float32(sigmoid(z)))]]
        for z in (1.0, 0.0)
    ]
    got = orjson.loads(out)["results"]
    assert [[c[0] for c in row] for row in got] == [["neg", "pos"]] * 2
    np.testing.assert_allclose(
        [[c[1] for c in r] for r in got], [[c[1] for c in r] for r in expected], rtol=1e-6
    )
    assert got[1] == [["neg", 0.5], ["pos", 0.5]]


# ---------------------------------------------------------------------------
# Regression
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [regress_fn, regress_column_fn], ids=["[N]", "[N,1]"])
def test_regression_end_to_end(fn):
    sig = regress_signature(fn=fn)
    assert cr.regression_outputs(sig) == ("outputs",)
    result = cr.run_regression(sig, make_input([1.0, -2.5, 0.25], bias=0.5), run)
    assert [r.value for r in result.regressions] == [2.5, -4.5, 1.0]
    assert jr.format_regress_response(result) == b'{"results":[2.5,-4.5,1.0]}'


def test_regression_signature_errors():
    inp = make_input([1.0])
    sig = regress_signature()
    sig.outputs["more"] = info("more")
    assert err(cr.regression_feed, sig, inp) == "Expected one output Tensor."
    sig = regress_signature()
    sig.inputs["b"] = info("b", t.DT_STRING)
    assert err(cr.regression_feed, sig, inp) == "Expected one input Tensor."
    sig = regress_signature()
    sig.inputs = {"x": info("x", t.DT_STRING)}
    msg = err(cr.regression_feed, sig, inp, code=grpc.StatusCode.FAILED_PRECONDITION)
    assert msg.startswith("No regression inputs found in SignatureDef: ")
    sig = regress_signature()
    sig.outputs = {"y": info("y")}
    msg = err(cr.regression_feed, sig, inp, code=grpc.StatusCode.FAILED_PRECONDITION)
    assert msg.startswith("No regression outputs found in SignatureDef: ")


def test_regression_result_errors_on_real_outputs():
    sig = regress_signature()
    y = sig.run(cr.regression_feed(sig, make_input([1.0, 2.0])))["outputs"]
    assert y.shape == (2,) and y.dtype == np.float32
    assert err(cr.regression_result, sig, {"outputs": np.stack([y, y], 1)}, 2) == (
        "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got [2,2]"
    )
    assert err(cr.regression_result, sig, {"outputs": y}, 3) == (
        "Input batch size did not match output batch size: 3 vs. 2"
    )
    assert err(cr.regression_result, sig, {"outputs": y.astype(np.float64)}, 2) == (
        "Expected output Tensor of DT_FLOAT.  Got: DT_DOUBLE"
    )
    assert err(cr.regression_result, sig, {}, 2) == "Could not find output tensor 'outputs:0'"


# ---------------------------------------------------------------------------
# MultiInference
# ---------------------------------------------------------------------------


def multi_request(tasks: str, xs=(1.0, 2.0)) -> inference_pb2.MultiInferenceRequest:
    req = text_format.Parse(tasks, inference_pb2.MultiInferenceRequest())
    req.input.CopyFrom(make_input(list(xs)))
    return req


SIGNATURES = {
    "serving_default": classify_signature(),
    "regress_sig": regress_signature(),
}


def test_multi_inference_results_in_task_order():
    req = multi_request(
        """tasks { model_spec { name: "m" signature_name: "regress_sig" }
                   method_name: "tensorflow/serving/regress" }
           tasks { model_spec { name: "m" } method_name: "tensorflow/serving/classify" }"""
    )
    assert cr.multi_inference_model_name(req) == "m"
    calls = []

    def counting_run(sig, feed, wanted):
        calls.append((sig.key, wanted))
        return run(sig, feed, wanted)

    resp = cr.run_multi_inference(req, SIGNATURES, counting_run, version=7)
    assert calls == [("regress_sig", ("outputs",)), ("classify_sig", ("classes", "scores"))]
    first, second = resp.results
    assert first.WhichOneof("result") == "regression_result"
    assert [r.value for r in first.regression_result.regressions] == [2.0, 4.0]
    assert first.model_spec.name == "m" and first.model_spec.signature_name == "regress_sig"
    assert first.model_spec.version.value == 7
    assert second.WhichOneof("result") == "classification_result"
    assert second.model_spec.signature_name == "serving_default"
    assert len(second.classification_result.classifications) == 2


def test_multi_inference_errors():
    def m(tasks):
        return multi_request(tasks)

    cls = 'method_name: "tensorflow/serving/classify"'
    reg = 'method_name: "tensorflow/serving/regress"'
    assert err(
        cr.run_multi_inference, m(f"tasks {{ model_spec {{ }} {cls} }}"), SIGNATURES, run
    ) == ("Found ModelSpec with an empty model name.")
    msg = err(
        cr.run_multi_inference,
        m(
            f'tasks {{ model_spec {{ name: "a" }} {cls} }} tasks {{ model_spec {{ name: "b" signature_name: "regress_sig" }} {reg} }}'
        ),
        SIGNATURES,
        run,
    )
    assert msg == "All ModelSpecs in a MultiInferenceRequest must access the same model name."
    msg = err(
        cr.run_multi_inference,
        m(
            f'tasks {{ model_spec {{ name: "a" }} {cls} }} tasks {{ model_spec {{ name: "a" signature_name: "serving_default" }} {cls} }}'
        ),
        SIGNATURES,
        run,
    )
    assert msg == "Duplicate evaluation of signature: serving_default"
    msg = err(
        cr.run_multi_inference,
        m(f'tasks {{ model_spec {{ name: "a" signature_name: "nope" }} {cls} }}'),
        SIGNATURES,
        run,
    )
    assert msg == "Requested signature not found in model graph: nope"
    msg = err(
        cr.run_multi_inference,
        m('tasks { model_spec { name: "a" } method_name: "tensorflow/serving/predict" }'),
        SIGNATURES,
        run,
        code=grpc.StatusCode.UNIMPLEMENTED,
    )
    assert msg == "Unsupported signature method_name: tensorflow/serving/predict"
    other_input = regress_signature()
    other_input.inputs = {"inputs": info("inputs", t.DT_STRING, (-1,), "other_examples:0")}
    # Different input tensors per signature are fine (TF2 exports: one per signature).
    response = cr.run_multi_inference(
        m(
            f'tasks {{ model_spec {{ name: "a" }} {cls} }} tasks {{ model_spec {{ name: "a" signature_name: "r2" }} {reg} }}'
        ),
        {**SIGNATURES, "r2": other_input},
        run,
    )
    assert len(response.results) == 2
    empty = m(f'tasks {{ model_spec {{ name: "a" }} {cls} }}')
    empty.ClearField("input")
    assert err(cr.run_multi_inference, empty, SIGNATURES, run) == "Input is empty."


def test_signature_debug_string_is_signature_def_text():
    text = cr.signature_debug_string(classify_signature())
    assert 'key: "inputs"' in text and "dtype: DT_STRING" in text
    assert 'method_name: "tensorflow/serving/classify"' in text
    sig = classify_signature()
    sig.outputs = {"s": TensorInfo("s", "s:0", t.DT_FLOAT, None)}
    assert "unknown_rank: true" in cr.signature_debug_string(sig)
