"""TFLite models as TF Serving serves them (tflite_session.cc, tflite_interpreter_pool.cc).

With --prefer_tflite_model, a version dir holding `model.tflite` is loaded into
a TfLiteSession instead of a TF Session. It stands in for the session inside the
usual Servable, so predict, classify/regress, batching, warmup, metadata and
status go through the same code as a SavedModel:

- signatures: the SignatureDefs TF Serving's converter tooling stores in the
  model's `signature_defs_metadata` (a flexbuffer map key -> SignatureDef),
  tensor names fixed to the TFLite names ("x:0" -> "x", FixTfLiteTensorName);
  without them, TF Serving's generated `serving_default` (every input and
  output tensor by its name, method predict). Native TFLite signature runners
  are not read, as in TF Serving, so clients see the same aliases.
- a pool of `--num_tflite_pools` interpreters (default: the CPUs), one thread
  each; a call takes one, waiting while all are busy.
- `--num_tflite_interpreters_per_pool` > 1: TF Serving then runs requests
  through a batch scheduler whose batches are at most ceil(500 / N) rows (or
  the model's own batch size); here a request with more rows is split into
  such chunks, run on several interpreters at once, and concatenated.
- inputs are resized to the request's shape when it differs (TF Serving's
  ResizeInputTensor + AllocateTensors), so a [1,1] model answers [1] or [3].
"""

from __future__ import annotations

import math
import queue
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from tfmodel_server.errors import ServingError, invalid_argument

TFLITE_MODEL_FILENAME = "model.tflite"
SIGNATURE_DEFS_METADATA = "signature_defs_metadata"  # tflite/tools/signature
DEFAULT_SIGNATURE_KEY = "serving_default"
PREDICT_METHOD_NAME = "tensorflow/serving/predict"
# tflite_interpreter_pool.h kInitialBatchSize: the scheduler's max batch.
INITIAL_BATCH_SIZE = 500

_DTYPES: dict[type, int] = {
    np.float32: types_pb2.DT_FLOAT,
    np.int32: types_pb2.DT_INT32,
    np.uint8: types_pb2.DT_UINT8,
    np.int64: types_pb2.DT_INT64,
    np.bytes_: types_pb2.DT_STRING,
    np.bool_: types_pb2.DT_BOOL,
    np.int16: types_pb2.DT_INT16,
    np.complex64: types_pb2.DT_COMPLEX64,
    np.int8: types_pb2.DT_INT8,
}


@dataclass(frozen=True)
class TfLitePoolOptions:
    num_pools: int = 1  # interpreters per model (TF Serving's num_tflite_pools)
    num_interpreters_per_pool: int = 1


def _internal(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INTERNAL, message)


def legacy_tensor_name(tf_name: str) -> str:
    """TfToTfLiteLegacyTensorName: "x:0" -> "x" (old converters dropped the suffix)."""
    return tf_name.split(":", 1)[0]


def fix_tensor_name(names: dict[str, int], tensor_name: str) -> str:
    """FixTfLiteTensorName: the name itself, else its legacy form, else an error."""
    if tensor_name in names:
        return tensor_name
    legacy = legacy_tensor_name(tensor_name)
    if legacy in names:
        return legacy
    raise _internal(f"Unknown tensor '{tensor_name}'.")


def _tensor_info(detail: dict) -> meta_graph_pb2.TensorInfo:
    dtype = _DTYPES.get(detail["dtype"])
    if dtype is None:
        raise _internal(f"Unknown TfLite type: {detail['dtype']}")
    info = meta_graph_pb2.TensorInfo(name=detail["name"], dtype=dtype)
    for size in detail["shape"]:
        info.tensor_shape.dim.add().size = int(size)
    return info


def read_signature_defs_metadata(model_bytes: bytes) -> dict[str, meta_graph_pb2.SignatureDef]:
    """tflite::GetSignatureDefMap: the SignatureDefs stored in the model's metadata."""
    from flatbuffers import flexbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(model_bytes, 0)
    for i in range(model.MetadataLength()):
        metadata = model.Metadata(i)
        if metadata.Name() != SIGNATURE_DEFS_METADATA.encode():
            continue
        data = model.Buffers(metadata.Buffer()).DataAsNumpy().tobytes()
        result: dict[str, meta_graph_pb2.SignatureDef] = {}
        entries = flexbuffers.GetRoot(data).AsMap
        for key in entries.Keys:
            signature = meta_graph_pb2.SignatureDef()
            signature.ParseFromString(bytes(entries[key.AsKey].AsStringBytes))
            result[key.AsKey] = signature
        return result
    return {}


def _new_interpreter(model_bytes: bytes) -> Any:
    """One interpreter with one thread (tflite_interpreter_pool.cc), tensors allocated."""
    import tensorflow as tf

    with warnings.catch_warnings():
        # tf.lite.Interpreter warns that ai_edge_litert is its successor.
        warnings.simplefilter("ignore")
        try:
            interpreter = tf.lite.Interpreter(model_content=model_bytes, num_threads=1)
        except ValueError as e:
            raise invalid_argument(f"Cannot build FlatBufferModel from buffer. ({e})") from None
    try:
        interpreter.allocate_tensors()
    except RuntimeError as e:
        raise _internal(
            f"Failed to create a TFLite interpreter with the given model: {e}"
        ) from None
    return interpreter


class _Interpreter:
    """One pooled interpreter and the input shapes it is currently allocated for."""

    def __init__(self, interpreter: Any) -> None:
        self.interpreter = interpreter
        self.shapes: dict[int, tuple[int, ...] | None] = {
            d["index"]: tuple(d["shape"]) for d in interpreter.get_input_details()
        }
        self.names = {d["index"]: d["name"] for d in interpreter.get_input_details()}

    def run(
        self, inputs: Sequence[tuple[int, np.ndarray]], outputs: Sequence[int]
    ) -> list[np.ndarray]:
        interpreter = self.interpreter
        resized = False
        for index, value in inputs:
            if self.shapes[index] != value.shape:
                try:
                    interpreter.resize_tensor_input(index, list(value.shape), strict=False)
                except (ValueError, RuntimeError) as e:
                    raise invalid_argument(
                        f"Failed to resize input tensor: {self.names[index]} to shape "
                        f"{list(value.shape)}: {e}"
                    ) from None
                self.shapes[index] = value.shape
                resized = True
        if resized:
            try:
                interpreter.allocate_tensors()
            except RuntimeError as e:
                # Unallocated now: the next call resizes and allocates afresh.
                self.shapes = dict.fromkeys(self.shapes, None)
                raise invalid_argument(f"Failed to allocate tensors: {e}") from None
        for index, value in inputs:
            try:
                interpreter.set_tensor(index, value)
            except ValueError as e:
                raise invalid_argument(f"{e}".strip()) from None
        try:
            interpreter.invoke()
        except RuntimeError as e:
            raise _internal(f"Failed to invoke TfLite interpreter: {e}") from None
        return [interpreter.get_tensor(i) for i in outputs]


class TfLiteSession:
    """TfLiteSession: a TF Session stand-in running a pool of TFLite interpreters."""

    def __init__(self, model_bytes: bytes, options: TfLitePoolOptions) -> None:
        first = _new_interpreter(model_bytes)
        self.input_index = {d["name"]: d["index"] for d in first.get_input_details()}
        self.output_index = {d["name"]: d["index"] for d in first.get_output_details()}
        self.signature_defs = self._signature_defs(model_bytes, first)
        size = max(1, options.num_pools)
        self._free: queue.Queue[_Interpreter] = queue.Queue()
        self._free.put(_Interpreter(first))
        for _ in range(size - 1):
            self._free.put(_Interpreter(_new_interpreter(model_bytes)))
        self.pool_size = size
        self.max_execution_batch_size = self._max_execution_batch_size(first, options)
        self._splitter = (
            ThreadPoolExecutor(max_workers=size, thread_name_prefix="tflite")
            if self.max_execution_batch_size is not None and size > 1
            else None
        )
        self._closed = threading.Event()

    def _signature_defs(
        self, model_bytes: bytes, interpreter: Any
    ) -> dict[str, meta_graph_pb2.SignatureDef]:
        try:
            stored = read_signature_defs_metadata(model_bytes)
        except Exception as e:  # a corrupt flexbuffer or proto
            raise invalid_argument(f"Invalid SignatureDefs found in TfLite model: {e}") from None
        if stored:
            for signature in stored.values():
                for kind, names in (("input", self.input_index), ("output", self.output_index)):
                    tensors = signature.inputs if kind == "input" else signature.outputs
                    for alias, info in tensors.items():
                        try:
                            info.name = fix_tensor_name(names, info.name)
                        except ServingError as e:
                            raise _internal(
                                f"Signature {kind} {alias} references an unknown tensor: "
                                f"{e.message}"
                            ) from None
            return stored
        # TF Serving's generated signature: every tensor under its legacy name.
        signature = meta_graph_pb2.SignatureDef(method_name=PREDICT_METHOD_NAME)
        for detail in interpreter.get_input_details():
            signature.inputs[legacy_tensor_name(detail["name"])].CopyFrom(_tensor_info(detail))
        for detail in interpreter.get_output_details():
            signature.outputs[legacy_tensor_name(detail["name"])].CopyFrom(_tensor_info(detail))
        return {DEFAULT_SIGNATURE_KEY: signature}

    @staticmethod
    def _max_execution_batch_size(interpreter: Any, options: TfLitePoolOptions) -> int | None:
        """TfLiteSession::Create's max_execution_batch_size; None = no scheduler."""
        if options.num_interpreters_per_pool <= 1:
            return None
        inputs = interpreter.get_input_details()
        # GetModelBatchSize: only a single-input model has one.
        model_batch = (
            int(inputs[0]["shape"][0]) if len(inputs) == 1 and inputs[0]["shape"].size else -1
        )
        if model_batch > 1:
            return model_batch
        return math.ceil(INITIAL_BATCH_SIZE / options.num_interpreters_per_pool)

    # --- the TF Session surface Signature uses ----------------------------------
    def _make_callable_from_options(self, callable_options: Any) -> Callable[..., list]:
        try:
            feeds = [
                self.input_index[fix_tensor_name(self.input_index, n)]
                for n in callable_options.feed
            ]
        except ServingError as e:
            raise _internal(f"Missing input TFLite tensor: {e.message}") from None
        try:
            fetches = [
                self.output_index[fix_tensor_name(self.output_index, n)]
                for n in callable_options.fetch
            ]
        except ServingError as e:
            raise _internal(f"Missing output TFLite tensor: {e.message}") from None

        def run(*values: Any) -> list[np.ndarray]:
            return self.run(list(zip(feeds, (np.asarray(v) for v in values), strict=True)), fetches)

        return run

    def run(self, inputs: list[tuple[int, np.ndarray]], outputs: list[int]) -> list[np.ndarray]:
        chunks = self._split(inputs)
        if len(chunks) == 1 or self._splitter is None:
            results = [self._run_one(chunk, outputs) for chunk in chunks]
        else:
            results = list(self._splitter.map(lambda c: self._run_one(c, outputs), chunks))
        if len(results) == 1:
            return results[0]
        return [np.concatenate([r[i] for r in results]) for i in range(len(outputs))]

    def _split(self, inputs: list[tuple[int, np.ndarray]]) -> list[list[tuple[int, np.ndarray]]]:
        """SplitTfLiteInputTask: rows beyond the execution batch size go in further chunks."""
        limit = self.max_execution_batch_size
        if limit is None or not inputs or any(v.ndim == 0 for _, v in inputs):
            return [inputs]
        rows = {v.shape[0] for _, v in inputs}
        if len(rows) != 1 or (n := rows.pop()) <= limit:
            return [inputs]
        return [[(i, v[start : start + limit]) for i, v in inputs] for start in range(0, n, limit)]

    def _run_one(
        self, inputs: list[tuple[int, np.ndarray]], outputs: list[int]
    ) -> list[np.ndarray]:
        with self._interpreter() as interpreter:
            return interpreter.run(inputs, outputs)

    @contextmanager
    def _interpreter(self) -> Iterator[_Interpreter]:
        """TfLiteInterpreterPool::GetInterpreter / ReturnInterpreter."""
        if self._closed.is_set():
            raise ServingError(grpc.StatusCode.UNAVAILABLE, "TFLite session is closed")
        interpreter = self._free.get()
        try:
            yield interpreter
        finally:
            self._free.put(interpreter)

    def close(self) -> None:
        self._closed.set()
        if self._splitter is not None:
            self._splitter.shutdown(wait=False)
        while True:  # drop the interpreters (and their tensors) now
            try:
                self._free.get_nowait()
            except queue.Empty:
                return


def load_tflite_session(path: str, options: TfLitePoolOptions) -> TfLiteSession:
    import os

    with open(os.path.join(path, TFLITE_MODEL_FILENAME), "rb") as f:
        model_bytes = f.read()
    return TfLiteSession(model_bytes, options)
