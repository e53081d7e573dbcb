"""One loaded model version: its signatures, input validation and the TF call.

The call path is a TF1 Session in the version's own Graph with a session
callable cached per (fed inputs, fetched outputs): the cheapest per-request
path TensorFlow offers from Python (see _session_callable).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from tfmodel_server.codecs.dtypes import NUMPY_DTYPES, dtype_name, dtype_string, numpy_to_dtype
from tfmodel_server.errors import ServingError, failed_precondition, invalid_argument

DEFAULT_SIGNATURE_KEY = "serving_default"

# gRPC code for each TF error code (they share the numbering).
_GRPC_CODES: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


def numpy_dtype_to_tf(dtype: np.dtype) -> int | None:
    """TF DataType enum for a numpy dtype (strings and objects are DT_STRING); None if none."""
    try:
        return numpy_to_dtype(dtype)
    except ServingError:
        return None


def status_code_for_tf_error(error: BaseException) -> grpc.StatusCode:
    """gRPC code of a tf.errors.OpError; INTERNAL for anything else."""
    code = getattr(error, "error_code", None)
    if isinstance(code, int) and code in _GRPC_CODES and code != 0:
        return _GRPC_CODES[code]
    return grpc.StatusCode.INTERNAL


def tf_error_message(error: BaseException) -> str:
    message = getattr(error, "message", None)
    return str(message if message else error)


@dataclass(frozen=True)
class TensorInfo:
    """One input/output alias of a signature."""

    alias: str
    tensor_name: str
    dtype: int
    shape: tuple[int, ...] | None

    @classmethod
    def from_proto(cls, alias: str, info: meta_graph_pb2.TensorInfo) -> TensorInfo:
        shape: tuple[int, ...] | None
        if not info.HasField("tensor_shape") or info.tensor_shape.unknown_rank:
            shape = None
        else:
            shape = tuple(int(d.size) for d in info.tensor_shape.dim)
        return cls(alias=alias, tensor_name=info.name, dtype=info.dtype, shape=shape)


def _to_string_array(value: np.ndarray) -> np.ndarray:
    """Object array of bytes, as a TF1 session expects for DT_STRING."""
    if value.dtype == object:
        flat = value.reshape(-1)
        if all(isinstance(v, bytes) for v in flat):
            return value
        out = np.empty(value.shape, dtype=object)
        out_flat = out.reshape(-1)
        for i, v in enumerate(flat):
            if isinstance(v, bytes):
                out_flat[i] = v
            elif isinstance(v, str):
                out_flat[i] = v.encode("utf-8")
            elif isinstance(v, (bytearray, memoryview)):
                out_flat[i] = bytes(v)
            else:
                raise TypeError(type(v).__name__)
        return out
    if value.dtype.kind == "U":
        return np.vectorize(lambda s: s.encode("utf-8"), otypes=[object])(value).reshape(
            value.shape
        )
    return value.astype(object)


class Signature:
    """A SignatureDef of one loaded version, runnable through its session."""

    def __init__(
        self,
        key: str,
        signature_def: meta_graph_pb2.SignatureDef,
        servable: Servable,
    ) -> None:
        self.key = key
        self.method_name = signature_def.method_name
        self.inputs: dict[str, TensorInfo] = {
            alias: TensorInfo.from_proto(alias, info)
            for alias, info in sorted(signature_def.inputs.items())
        }
        self.outputs: dict[str, TensorInfo] = {
            alias: TensorInfo.from_proto(alias, info)
            for alias, info in sorted(signature_def.outputs.items())
        }
        # Inputs with a default value in the SignatureDef may be omitted.
        self.defaults: frozenset[str] = frozenset(signature_def.defaults.keys())
        self._servable = servable
        self._callables: dict[tuple[tuple[str, ...], tuple[str, ...]], Any] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Signature({self.key!r}, inputs={list(self.inputs)}, outputs={list(self.outputs)})"

    def validate_inputs(self, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
        """TF Serving's predict_util checks (input names), plus the dtype check.

        Raises INVALID_ARGUMENT naming the alias; returns arrays ready for run().
        """
        sent = set(inputs)
        expected = set(self.inputs)
        if (sent - expected) or ((expected - sent) - self.defaults):
            extra = sorted(sent - expected)
            missing = sorted((expected - sent) - self.defaults)
            raise invalid_argument(
                f"input size does not match signature: {len(sent)}!={len(expected)} "
                f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
                f"Sent extra: {{{','.join(extra)}}}. Missing but required: {{{','.join(missing)}}}."
            )
        ready: dict[str, np.ndarray] = {}
        for alias, value in inputs.items():
            ready[alias] = self._check_input(self.inputs[alias], value)
        return ready

    def _check_input(self, info: TensorInfo, value: Any) -> np.ndarray:
        if info.dtype == types_pb2.DT_STRING:
            array = value if isinstance(value, np.ndarray) else np.asarray(value, dtype=object)
            if array.dtype.kind not in ("O", "S", "U"):
                self._dtype_error(info, numpy_dtype_to_tf(array.dtype))
            try:
                array = _to_string_array(array)
            except TypeError as e:
                raise invalid_argument(
                    f"input '{info.alias}' expects dtype DT_STRING but holds a {e} value"
                ) from None
        else:
            target = NUMPY_DTYPES.get(info.dtype)
            if isinstance(value, np.ndarray):
                array = value  # typed already (a decoded TensorProto): must match exactly
                if target is not None and array.dtype != target:
                    self._dtype_error(info, numpy_dtype_to_tf(array.dtype))
            else:
                array = self._cast_python_value(info, value, target)
        # No shape check against the signature: TF Serving's predict_util only builds
        # the tensor and feeds it (half_plus_two's x:0 is [-1,1] and its own tests
        # send [1] and [3]); the graph itself rejects a shape it cannot use.
        return array

    def _cast_python_value(
        self, info: TensorInfo, value: Any, target: np.dtype | None
    ) -> np.ndarray:
        """Python scalars/lists: cast when lossless (1 -> 1.0), never 1.5 -> 1."""
        try:
            array = np.asarray(value)
        except ValueError as e:
            raise invalid_argument(
                f"input '{info.alias}' is not a rectangular tensor: {e}"
            ) from None
        if target is None or array.dtype == target:
            return array
        if array.dtype.kind in "biuf" and np.can_cast(array.dtype, target, casting="same_kind"):
            cast = array.astype(target)
            if (
                array.dtype.kind in "biu"
                and target.kind in "biu"
                and not np.array_equal(cast, array)
            ):
                raise invalid_argument(
                    f"input '{info.alias}' has values out of range for {dtype_name(info.dtype)}"
                )
            return cast
        self._dtype_error(info, numpy_dtype_to_tf(array.dtype))
        return array  # unreachable

    def _dtype_error(self, info: TensorInfo, got: int | None) -> None:
        got_name = dtype_name(got) if got is not None else "an unsupported type"
        raise invalid_argument(
            f"Expects arg '{info.alias}' to be {dtype_string(info.dtype)} "
            f"but {dtype_string(got) if got is not None else got_name} is provided: "
            f"signature '{self.key}' input '{info.alias}' has dtype {dtype_name(info.dtype)}, "
            f"request has {got_name}"
        )

    def resolve_output_filter(self, output_filter: Sequence[str] = ()) -> tuple[str, ...]:
        """Output aliases to fetch; INVALID_ARGUMENT for unknown or duplicate ones."""
        if not output_filter:
            return tuple(self.outputs)
        seen: set[str] = set()
        for alias in output_filter:
            if alias not in self.outputs:
                raise invalid_argument(
                    f"output tensor alias not found in signature: {alias} Outputs expected "
                    f"to be in the set {{{','.join(sorted(self.outputs))}}}."
                )
            if alias in seen:
                raise invalid_argument(f"duplicate output tensor alias: {alias}")
            seen.add(alias)
        return tuple(output_filter)

    def run(
        self, inputs: dict[str, np.ndarray], output_filter: Sequence[str] = ()
    ) -> dict[str, np.ndarray]:
        """Blocking TF call (call it from a worker thread); outputs by alias."""
        output_aliases = self.resolve_output_filter(output_filter)
        fed = tuple(sorted(inputs))
        unknown = [a for a in fed if a not in self.inputs]
        if unknown:
            raise invalid_argument(f"input tensor alias not found in signature: {unknown[0]}")
        runner = self._callable(fed, output_aliases)
        try:
            values = runner(*(inputs[a] for a in fed))
        except ServingError:
            raise
        except Exception as e:  # TF runtime errors: report, never crash
            code = status_code_for_tf_error(e)
            if code == grpc.StatusCode.INTERNAL and isinstance(e, (ValueError, TypeError)):
                code = grpc.StatusCode.INVALID_ARGUMENT
            raise ServingError(code, tf_error_message(e)) from None
        return {alias: np.asarray(v) for alias, v in zip(output_aliases, values, strict=True)}

    def _callable(self, fed: tuple[str, ...], fetched: tuple[str, ...]):
        key = (fed, fetched)
        runner = self._callables.get(key)
        if runner is not None:
            return runner
        with self._lock:
            runner = self._callables.get(key)
            if runner is None:
                session = self._servable._session
                if session is None:
                    raise ServingError(
                        grpc.StatusCode.UNAVAILABLE,
                        f"Servable {self._servable.name} version {self._servable.version} "
                        "has been unloaded",
                    )
                try:
                    runner = _session_callable(
                        session,
                        [self.inputs[a].tensor_name for a in fed],
                        [self.outputs[a].tensor_name for a in fetched],
                        self._servable.run_options,
                    )
                except Exception as e:
                    raise ServingError(status_code_for_tf_error(e), tf_error_message(e)) from None
                self._callables[key] = runner
        return runner

    def _drop(self) -> None:
        with self._lock:
            self._callables.clear()


def _session_callable(session: Any, feeds: list[str], fetches: list[str], run_options: Any = None):
    """A callable running one (feeds -> fetches) step, with `run_options` (a RunOptions:
    --thread_pool_factory_config_file's inter-op pool) on every run.

    Session.make_callable(fetch, feed_list) falls back to a full Session.run
    per call in TF 2.x (273 us vs 86 us per call, `python -m bench.callpaths`);
    a callable built from CallableOptions skips the feed/fetch mapping work.
    """
    make_from_options = getattr(session, "_make_callable_from_options", None)
    if make_from_options is None:  # not in this TF build: the public, slower path
        return session.make_callable(fetches, feed_list=feeds)
    from tensorflow.core.protobuf import config_pb2

    options = config_pb2.CallableOptions(feed=feeds, fetch=fetches)
    if run_options is not None:
        options.run_options.CopyFrom(run_options)
    return make_from_options(options)


class Servable:
    """One loaded version of a model."""

    def __init__(
        self,
        name: str,
        version: int,
        path: str,
        session: Any,
        graph: Any,
        meta_graph_def: meta_graph_pb2.MetaGraphDef,
    ) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.meta_graph_def = meta_graph_def
        # This version's own batching parameters (--enable_per_model_batching_parameters),
        # set after the load by the inference layer; None = not batched on its own.
        self.batching_params: Any = None
        # RunOptions of every request run (--thread_pool_factory_config_file), or None.
        self.run_options: Any = None
        self._session = session
        self._graph = graph
        self.signatures: dict[str, Signature] = {
            key: Signature(key, sig, self)
            for key, sig in sorted(meta_graph_def.signature_def.items())
        }

    def __repr__(self) -> str:
        return f"Servable({self.name!r}, version={self.version}, path={self.path!r})"

    @property
    def loaded(self) -> bool:
        return self._session is not None

    def signature(self, key: str) -> Signature:
        """'' means serving_default; unknown -> FAILED_PRECONDITION as TF Serving."""
        key = key or DEFAULT_SIGNATURE_KEY
        signature = self.signatures.get(key)
        if signature is None:
            raise failed_precondition(f'Serving signature key "{key}" not found.')
        return signature

    def signature_def_map(self) -> get_model_metadata_pb2.SignatureDefMap:
        """Every SignatureDef of the MetaGraphDef, as GetModelMetadata returns it."""
        result = get_model_metadata_pb2.SignatureDefMap()
        for key, sig in self.meta_graph_def.signature_def.items():
            result.signature_def[key].CopyFrom(sig)
        return result

    def unload(self) -> None:
        """Close the session and drop graph references so memory is released."""
        session, self._session = self._session, None
        self._graph = None
        for signature in self.signatures.values():
            signature._drop()
        if session is not None:
            session.close()
