"""Classify, Regress and MultiInference on top of a Signature (TF Serving's classifier.cc,
regressor.cc and multi_inference.cc).

Each API is a pure pre-processing step (check the signature, build the feed of serialized
tf.Examples) and a post-processing step (check the output tensors, build the result proto);
the caller runs the signature in between. Messages are TF Serving's.

The signature method_name check is off by default, as TF Serving's
--enable_signature_method_name_check (TF2 SavedModels mark every signature "predict").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import grpc
import numpy as np
from google.protobuf import text_format
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    input_pb2,
    model_pb2,
    regression_pb2,
)

from tfmodel_server.codecs import tensor_proto as tc
from tfmodel_server.codecs.limits import DecodeBudget
from tfmodel_server.errors import ServingError, failed_precondition, invalid_argument
from tfmodel_server.servables.tensorflow.example_codec import serialized_examples_array
from tfmodel_server.servables.tensorflow.servable import DEFAULT_SIGNATURE_KEY

CLASSIFY_METHOD_NAME = "tensorflow/serving/classify"
REGRESS_METHOD_NAME = "tensorflow/serving/regress"
CLASSIFY_INPUTS = "inputs"
CLASSIFY_OUTPUT_CLASSES = "classes"
CLASSIFY_OUTPUT_SCORES = "scores"
REGRESS_INPUTS = "inputs"
REGRESS_OUTPUTS = "outputs"


class TensorInfoLike(Protocol):
    alias: str
    tensor_name: str
    dtype: int
    shape: tuple[int, ...] | None


class SignatureLike(Protocol):
    """What these functions need of servable.Signature."""

    # Read-only (properties) so servable.Signature's dict attributes satisfy it.
    @property
    def key(self) -> str: ...
    @property
    def method_name(self) -> str: ...
    @property
    def inputs(self) -> Mapping[str, Any]: ...  # alias -> TensorInfoLike
    @property
    def outputs(self) -> Mapping[str, Any]: ...


# run(signature, feed keyed by input alias, output aliases) -> outputs keyed by alias.
# The signature is Any here: callers pass their concrete Signature type back to run.
RunFn = Callable[[Any, dict[str, np.ndarray], tuple[str, ...]], Mapping[str, np.ndarray]]


def signature_debug_string(signature: SignatureLike) -> str:
    """The SignatureDef text TF Serving puts in its messages (SignatureDef::DebugString)."""
    sig_def = meta_graph_pb2.SignatureDef(method_name=signature.method_name)
    for target, infos in ((sig_def.inputs, signature.inputs), (sig_def.outputs, signature.outputs)):
        for alias, info in infos.items():
            entry = target[alias]
            entry.name = info.tensor_name
            entry.dtype = info.dtype
            if info.shape is None:
                entry.tensor_shape.unknown_rank = True
            else:
                for d in info.shape:
                    entry.tensor_shape.dim.add(size=d)
    return text_format.MessageToString(sig_def)


def _check_method(signature: SignatureLike, expected: str, what: str, check: bool) -> None:
    if check and signature.method_name != expected:
        raise invalid_argument(
            f"Expected {what} signature method_name to be {expected}. Was: {signature.method_name}"
        )


def _examples_input_alias(signature: SignatureLike, what: str) -> str:
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    return CLASSIFY_INPUTS if what == "classification" else REGRESS_INPUTS


def _check_string_input(signature: SignatureLike, alias: str) -> None:
    # TF Serving leaves this to Session::Run; a clear message is friendlier.
    dtype = signature.inputs[alias].dtype
    if dtype != tc.DT_STRING:
        raise invalid_argument(
            f"Expected input Tensor '{alias}' of DT_STRING (serialized tf.Example). "
            f"Got: {tc.dtype_name(dtype)}"
        )


# ---------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------


def classification_outputs(
    signature: SignatureLike, *, check_method_name: bool = False
) -> tuple[str, ...]:
    """Output aliases to fetch ("classes" and/or "scores"); PreProcessClassification checks."""
    _check_method(signature, CLASSIFY_METHOD_NAME, "classification", check_method_name)
    _examples_input_alias(signature, "classification")
    if len(signature.outputs) not in (1, 2):
        raise invalid_argument(
            f"Expected one or two output Tensors, found {len(signature.outputs)}"
        )
    if CLASSIFY_INPUTS not in signature.inputs:
        raise failed_precondition(
            "No classification inputs found in SignatureDef: " + signature_debug_string(signature)
        )
    wanted = tuple(
        a for a in (CLASSIFY_OUTPUT_CLASSES, CLASSIFY_OUTPUT_SCORES) if a in signature.outputs
    )
    if not wanted:
        raise failed_precondition(
            "Expected classification signature outputs to contain at least one of "
            f'"{CLASSIFY_OUTPUT_CLASSES}" or "{CLASSIFY_OUTPUT_SCORES}". Signature was: '
            + signature_debug_string(signature)
        )
    return wanted


def classification_feed(
    signature: SignatureLike,
    input: input_pb2.Input,
    *,
    check_method_name: bool = False,
    budget: DecodeBudget | None = None,
) -> dict[str, np.ndarray]:
    """{"inputs": serialized examples} after the signature checks."""
    classification_outputs(signature, check_method_name=check_method_name)
    _check_string_input(signature, CLASSIFY_INPUTS)
    return {CLASSIFY_INPUTS: serialized_examples_array(input, budget)}


def _check_batch_matrix(
    x: np.ndarray, name: str, num_examples: int, dtype_ok: bool, want: str
) -> None:
    if x.ndim != 2:
        raise invalid_argument(
            f"Expected Tensor shape: [batch_size num_classes] but got {tc.shape_string(x.shape)}"
        )
    if not dtype_ok:
        raise invalid_argument(
            f"Expected {name} Tensor of {want}. Got: {tc.dtype_name(_dtype_of(x))}"
        )
    if x.shape[0] != num_examples:
        raise invalid_argument(
            f"Expected {name} output batch size of {num_examples}. Got: {x.shape[0]}"
        )


def _dtype_of(x: np.ndarray) -> int:
    try:
        return tc.numpy_to_dtype(x.dtype)
    except ServingError:
        return 0


def _labels(x: np.ndarray) -> list:
    return [
        v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in x.ravel().tolist()
    ]


def classification_result(
    signature: SignatureLike, outputs: Mapping[str, np.ndarray], num_examples: int
) -> classification_pb2.ClassificationResult:
    """ClassificationResult from the run's outputs (PostProcessClassificationResult)."""
    wanted = [
        a for a in (CLASSIFY_OUTPUT_CLASSES, CLASSIFY_OUTPUT_SCORES) if a in signature.outputs
    ]
    present = [a for a in wanted if a in outputs]
    if len(present) != len(wanted):
        raise invalid_argument(f"Expected {len(wanted)} output tensor(s).  Got: {len(present)}")
    classes = (
        np.asarray(outputs[CLASSIFY_OUTPUT_CLASSES]) if CLASSIFY_OUTPUT_CLASSES in wanted else None
    )
    scores = (
        np.asarray(outputs[CLASSIFY_OUTPUT_SCORES]) if CLASSIFY_OUTPUT_SCORES in wanted else None
    )
    if classes is not None:
        _check_batch_matrix(
            classes, "classes", num_examples, classes.dtype.kind in "OSU", "DT_STRING"
        )
    if scores is not None:
        _check_batch_matrix(scores, "scores", num_examples, scores.dtype == np.float32, "DT_FLOAT")
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise invalid_argument(
            "Tensors class and score should match in dim_size(1). Got "
            f"{classes.shape[1]} vs. {scores.shape[1]}"
        )
    shaped = classes if classes is not None else scores
    assert shaped is not None  # the signature check (line ~132) requires classes or scores
    num_classes = shaped.shape[1]

    result = classification_pb2.ClassificationResult()
    labels = _labels(classes) if classes is not None else None
    values = scores.ravel().tolist() if scores is not None else None
    for i in range(num_examples):
        out = result.classifications.add().classes
        base = i * num_classes
        for c in range(base, base + num_classes):
            cl = out.add()
            if labels is not None:
                cl.label = labels[c]
            if values is not None:
                cl.score = values[c]
    return result


# ---------------------------------------------------------------------------
# Regression
# ---------------------------------------------------------------------------


def regression_outputs(
    signature: SignatureLike, *, check_method_name: bool = False
) -> tuple[str, ...]:
    """("outputs",) after PreProcessRegression's checks."""
    _check_method(signature, REGRESS_METHOD_NAME, "regression", check_method_name)
    _examples_input_alias(signature, "regression")
    if len(signature.outputs) != 1:
        raise invalid_argument("Expected one output Tensor.")
    if REGRESS_INPUTS not in signature.inputs:
        raise failed_precondition(
            "No regression inputs found in SignatureDef: " + signature_debug_string(signature)
        )
    if REGRESS_OUTPUTS not in signature.outputs:
        raise failed_precondition(
            "No regression outputs found in SignatureDef: " + signature_debug_string(signature)
        )
    return (REGRESS_OUTPUTS,)


def regression_feed(
    signature: SignatureLike,
    input: input_pb2.Input,
    *,
    check_method_name: bool = False,
    budget: DecodeBudget | None = None,
) -> dict[str, np.ndarray]:
    """{"inputs": serialized examples} after the signature checks."""
    regression_outputs(signature, check_method_name=check_method_name)
    _check_string_input(signature, REGRESS_INPUTS)
    return {REGRESS_INPUTS: serialized_examples_array(input, budget)}


def regression_result(
    signature: SignatureLike, outputs: Mapping[str, np.ndarray], num_examples: int
) -> regression_pb2.RegressionResult:
    """RegressionResult from the run's outputs (PostProcessRegressionResult)."""
    if REGRESS_OUTPUTS not in signature.outputs:
        raise failed_precondition(
            "No regression outputs found in SignatureDef: " + signature_debug_string(signature)
        )
    if REGRESS_OUTPUTS not in outputs:
        tensor_name = signature.outputs[REGRESS_OUTPUTS].tensor_name
        raise invalid_argument(f"Could not find output tensor '{tensor_name}'")
    x = np.asarray(outputs[REGRESS_OUTPUTS])
    if not (x.ndim == 1 or (x.ndim == 2 and x.shape[1] == 1)):
        raise invalid_argument(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] "
            f"but got {tc.shape_string(x.shape)}"
        )
    if x.shape[0] != num_examples:
        raise invalid_argument(
            f"Input batch size did not match output batch size: {num_examples} vs. {x.shape[0]}"
        )
    if x.dtype != np.float32:
        raise invalid_argument(
            f"Expected output Tensor of DT_FLOAT.  Got: {tc.dtype_name(_dtype_of(x))}"
        )
    if x.size != num_examples:
        raise invalid_argument(f"Expected output batch size to be {num_examples}.  Got: {x.size}")
    result = regression_pb2.RegressionResult()
    for v in x.ravel().tolist():
        result.regressions.add(value=v)
    return result


# ---------------------------------------------------------------------------
# One-call helpers (pre-process, run, post-process)
# ---------------------------------------------------------------------------


def run_classification(
    signature: SignatureLike,
    input: input_pb2.Input,
    run: RunFn,
    *,
    check_method_name: bool = False,
) -> classification_pb2.ClassificationResult:
    """Classify with `run` doing the TF call (call from a worker thread)."""
    feed = classification_feed(signature, input, check_method_name=check_method_name)
    wanted = classification_outputs(signature)
    outputs = run(signature, feed, wanted)
    return classification_result(signature, outputs, len(feed[CLASSIFY_INPUTS]))


def run_regression(
    signature: SignatureLike,
    input: input_pb2.Input,
    run: RunFn,
    *,
    check_method_name: bool = False,
) -> regression_pb2.RegressionResult:
    """Regress with `run` doing the TF call (call from a worker thread)."""
    feed = regression_feed(signature, input, check_method_name=check_method_name)
    outputs = run(signature, feed, (REGRESS_OUTPUTS,))
    return regression_result(signature, outputs, len(feed[REGRESS_INPUTS]))


def make_model_spec(name: str, signature_name: str, version: int | None) -> model_pb2.ModelSpec:
    """MakeModelSpec(): empty signature name reported as "serving_default"."""
    spec = model_pb2.ModelSpec(name=name, signature_name=signature_name or DEFAULT_SIGNATURE_KEY)
    if version is not None:
        spec.version.value = version
    return spec


def multi_inference_model_name(request: inference_pb2.MultiInferenceRequest) -> str:
    """The one model every task names (checked as TF Serving does), to get a handle for."""
    model_name = ""
    for task in request.tasks:
        if not task.model_spec.name:
            raise invalid_argument("Found ModelSpec with an empty model name.")
        if not model_name:
            model_name = task.model_spec.name
        elif model_name != task.model_spec.name:
            raise invalid_argument(
                "All ModelSpecs in a MultiInferenceRequest must access the same model name."
            )
    return model_name


def run_multi_inference(
    request: inference_pb2.MultiInferenceRequest,
    signatures: Mapping[str, SignatureLike],
    run: RunFn,
    version: int | None = None,
    *,
    check_method_name: bool = False,
    budget: DecodeBudget | None = None,
) -> inference_pb2.MultiInferenceResponse:
    """MultiInference over one servable's `signatures`; results in task order.

    The serialized examples are built once. TF Serving runs all tasks in one Session::Run;
    here each distinct signature is run once (signatures are separate functions in TF2).
    """
    multi_inference_model_name(request)
    plans: list[tuple[Any, SignatureLike, tuple[str, ...]]] = []
    seen: set[str] = set()
    for task in request.tasks:
        key = task.model_spec.signature_name or DEFAULT_SIGNATURE_KEY
        if key in seen:
            raise invalid_argument(f"Duplicate evaluation of signature: {key}")
        seen.add(key)
        signature = signatures.get(key)
        if signature is None:
            raise invalid_argument(f"Requested signature not found in model graph: {key}")
        if task.method_name == CLASSIFY_METHOD_NAME:
            wanted = classification_outputs(signature, check_method_name=check_method_name)
        elif task.method_name == REGRESS_METHOD_NAME:
            wanted = regression_outputs(signature, check_method_name=check_method_name)
        else:
            raise ServingError(
                grpc.StatusCode.UNIMPLEMENTED,
                f"Unsupported signature method_name: {task.method_name}",
            )
        # Signatures may read the Examples from different tensors (a TF2 export has
        # one placeholder per signature); multi_inference.cc feeds the set of them.
        _check_string_input(signature, CLASSIFY_INPUTS)
        plans.append((task, signature, wanted))

    examples = serialized_examples_array(request.input, budget)
    response = inference_pb2.MultiInferenceResponse()
    for task, signature, wanted in plans:
        outputs = run(signature, {CLASSIFY_INPUTS: examples}, wanted)
        result = response.results.add()
        if task.method_name == CLASSIFY_METHOD_NAME:
            result.classification_result.CopyFrom(
                classification_result(signature, outputs, len(examples))
            )
        else:
            result.regression_result.CopyFrom(regression_result(signature, outputs, len(examples)))
        result.model_spec.CopyFrom(
            make_model_spec(task.model_spec.name, task.model_spec.signature_name, version)
        )
    return response
