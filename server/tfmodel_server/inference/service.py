"""Transport-independent request handling shared by the gRPC and REST surfaces.

TF Serving keeps this in predict_impl / classification_service /
regression_service / multi_inference / get_model_metadata_impl; here it is one
small class so grpc_api and rest_api stay thin adapters that only translate
wire formats.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    input_pb2,
    regression_pb2,
)

from tfmodel_server.codecs.json_request import InputSpecs
from tfmodel_server.codecs.limits import DEFAULT_MAX_REQUEST_DECODED_BYTES, DecodeBudget
from tfmodel_server.core.manager import ServableManager
from tfmodel_server.errors import ServingError, invalid_argument
from tfmodel_server.inference import request_logging
from tfmodel_server.inference.request_logging import RequestLogger, Spec
from tfmodel_server.inference.runner import InferenceRunner
from tfmodel_server.inference.shadow import CanaryCall, Outputs, ShadowTraffic, signature_call
from tfmodel_server.monitoring.request_context import note_runtime, note_served
from tfmodel_server.servables.tensorflow import classify_regress
from tfmodel_server.servables.tensorflow.servable import (
    DEFAULT_SIGNATURE_KEY,
    Servable,
    Signature,
)


@dataclass(frozen=True)
class ModelRef:
    """What a request asks for: model name plus at most one of version / label."""

    name: str
    version: int | None = None
    label: str | None = None


@dataclass
class Served:
    """Which servable answered, for the response's model_spec."""

    name: str
    version: int
    signature_name: str


class InferenceService:
    def __init__(
        self,
        manager: ServableManager,
        runner: InferenceRunner,
        check_method_name: bool = False,
        max_request_decoded_bytes: int = DEFAULT_MAX_REQUEST_DECODED_BYTES,
        request_log: RequestLogger | None = None,
        shadow: ShadowTraffic | None = None,
    ) -> None:
        self.manager = manager
        # Shadow traffic: a share of stable's requests re-run on the canary after the reply.
        self.shadow = shadow
        # ModelConfig.logging_config: a sampled share of successful calls, written off-path.
        self.request_log = request_log
        self.runner = runner
        self.max_request_decoded_bytes = max_request_decoded_bytes
        # --enable_signature_method_name_check: classify/regress only on signatures
        # whose method_name says so (off by default in TF Serving: TF2 exports say "predict").
        self.check_method_name = check_method_name

    def budget(self) -> DecodeBudget:
        """A fresh --max_request_decoded_bytes budget for one request's decoding."""
        return DecodeBudget(self.max_request_decoded_bytes)

    def input_specs(self, ref: ModelRef) -> dict[str, InputSpecs] | None:
        """Each signature's input specs in the version `ref` names now ("" for the default
        one), so that a REST body can be decoded before predict() resolves `ref` again;
        None when there is no such model or version (predict() words that error)."""
        try:
            with self.manager.get_handle(ref.name, ref.version, ref.label) as handle:
                signatures = handle.servable.signatures
        except ServingError:
            return None
        specs = {key: signature_input_specs(sig) for key, sig in signatures.items()}
        if DEFAULT_SIGNATURE_KEY in specs:
            specs[""] = specs[DEFAULT_SIGNATURE_KEY]
        return specs

    async def predict(
        self,
        ref: ModelRef,
        signature_name: str,
        inputs: dict[str, np.ndarray] | Callable[[Signature], Awaitable[dict[str, np.ndarray]]],
        output_filter: Sequence[str] = (),
    ) -> tuple[Served, dict[str, np.ndarray]]:
        """Run a predict; `inputs` may be an async function of the signature (REST parses
        JSON by the signature's dtypes, under the same handle that runs it, off the
        event loop when the body is large)."""
        with self.manager.get_handle(ref.name, ref.version, ref.label) as handle:
            signature = handle.servable.signature(signature_name)
            # Before REST decodes against the signature: its input errors are this version's
            # requests in the metrics, as gRPC's (validate_inputs) are.
            note_served(handle.servable.version, signature.key)
            if callable(inputs):
                inputs = await inputs(signature)
            arrays = signature.validate_inputs(inputs)
            start = time.perf_counter()
            outputs = await self._run(handle.servable, signature, arrays, output_filter)
            seconds = time.perf_counter() - start
            served = _served(handle.servable, signature)
            self._shadow(
                ref,
                served.version,
                lambda: signature_call(signature.key, self._predict_on(arrays, output_filter)),
                outputs,
                seconds,
            )
            if self.request_log is not None and (plan := self.request_log.sample(ref.name)):
                request_spec, served_spec = _spec(ref, signature_name), _served_spec(served)
                logged_inputs, wanted = inputs, tuple(output_filter)
                self.request_log.submit(
                    plan,
                    served_spec,
                    lambda: request_logging.predict_record(
                        request_spec, served_spec, logged_inputs, wanted, outputs
                    ),
                    request_logging.arrays_nbytes(logged_inputs, outputs),
                )
            return served, outputs

    def _shadow(
        self,
        ref: ModelRef,
        served_version: int,
        make_call: Callable[[], CanaryCall],
        outputs: Outputs,
        seconds: float,
    ) -> None:
        """Hand the request to shadow traffic when it is picked (the call is built only then)."""
        if self.shadow is None:
            return
        pair = self.shadow.pick(ref.name, ref.version, ref.label, served_version)
        if pair is not None:
            self.shadow.submit(pair, make_call(), outputs, seconds)

    def _predict_on(self, inputs: dict[str, np.ndarray], output_filter: Sequence[str]):
        """The same predict on another version (shadow): its own signature checks the inputs."""
        wanted = tuple(output_filter)

        async def run(servable: Servable, signature: Signature) -> dict[str, np.ndarray]:
            return await self.runner.run(
                servable, signature, signature.validate_inputs(inputs), wanted
            )

        return run

    def _examples_on(self, request_input: input_pb2.Input, feed_fn):
        """The same classify / regress feed built for another version's signature (shadow)."""

        async def run(servable: Servable, signature: Signature) -> dict[str, np.ndarray]:
            feed = feed_fn(
                signature,
                request_input,
                check_method_name=self.check_method_name,
                budget=self.budget(),
            )
            return await self.runner.run(servable, signature, feed, ())

        return run

    async def _run(self, servable, signature, arrays, output_filter) -> dict[str, np.ndarray]:
        """The runner call, timed for :tensorflow:serving:runtime_latency."""
        start = time.perf_counter()
        try:
            return await self.runner.run(servable, signature, arrays, output_filter)
        finally:
            note_runtime(time.perf_counter() - start)

    async def classify(
        self, ref: ModelRef, signature_name: str, request_input: input_pb2.Input
    ) -> tuple[Served, classification_pb2.ClassificationResult]:
        return await self._on_examples(ref, signature_name, request_input, _CLASSIFY)

    async def regress(
        self, ref: ModelRef, signature_name: str, request_input: input_pb2.Input
    ) -> tuple[Served, regression_pb2.RegressionResult]:
        return await self._on_examples(ref, signature_name, request_input, _REGRESS)

    async def _on_examples(self, ref: ModelRef, signature_name: str, request_input, steps):
        """Classify or regress: serialize the examples, run through the runner (so
        batching applies), build the result proto."""
        feed_fn, result_fn = steps
        with self.manager.get_handle(ref.name, ref.version, ref.label) as handle:
            signature = handle.servable.signature(signature_name)
            note_served(handle.servable.version, signature.key)
            feed = feed_fn(
                signature,
                request_input,
                check_method_name=self.check_method_name,
                budget=self.budget(),
            )
            start = time.perf_counter()
            outputs = await self._run(handle.servable, signature, feed, ())
            seconds = time.perf_counter() - start
            result = result_fn(signature, outputs, _num_examples(feed))
            served = _served(handle.servable, signature)
            self._shadow(
                ref,
                served.version,
                lambda: signature_call(signature.key, self._examples_on(request_input, feed_fn)),
                outputs,
                seconds,
            )
            if self.request_log is not None and (plan := self.request_log.sample(ref.name)):
                request_spec, served_spec = _spec(ref, signature_name), _served_spec(served)
                record_fn = (
                    request_logging.classify_record
                    if steps is _CLASSIFY
                    else request_logging.regress_record
                )
                self.request_log.submit(
                    plan,
                    served_spec,
                    lambda: record_fn(request_spec, served_spec, request_input, result),
                    request_input.ByteSize() + result.ByteSize(),
                )
            return served, result

    async def multi_inference(
        self, request: inference_pb2.MultiInferenceRequest
    ) -> inference_pb2.MultiInferenceResponse:
        """classify_regress.run_multi_inference (multi_inference.cc's checks and
        order) on one servable, in a worker thread."""
        if not request.tasks:
            raise invalid_argument("Found no inference tasks in request.")
        first = model_ref_from_spec(request.tasks[0].model_spec)
        with self.manager.get_handle(first.name, first.version, first.label) as handle:
            servable = handle.servable
            note_served(servable.version, request.tasks[0].model_spec.signature_name)
            start = time.perf_counter()
            try:
                response = await self._multi_inference_in_thread(request, servable)
            finally:
                note_runtime(time.perf_counter() - start)
            if self.request_log is not None and (plan := self.request_log.sample(first.name)):
                served = Spec(servable.name, servable.version, None, "")
                self.request_log.submit(
                    plan,
                    served,
                    lambda: request_logging.multi_inference_record(request, response),
                    request.ByteSize() + response.ByteSize(),
                )
            return response

    async def _multi_inference_in_thread(self, request, servable: Servable):
        return await asyncio.to_thread(
            classify_regress.run_multi_inference,
            request,
            servable.signatures,
            lambda signature, feed, wanted: signature.run(feed, wanted),
            servable.version,
            check_method_name=self.check_method_name,
            budget=self.budget(),
        )


_CLASSIFY = (classify_regress.classification_feed, classify_regress.classification_result)
_REGRESS = (classify_regress.regression_feed, classify_regress.regression_result)


def model_ref_from_spec(spec) -> ModelRef:  # spec: model_pb2.ModelSpec
    """Read a gRPC ModelSpec; an empty name is TF Serving's INVALID_ARGUMENT."""
    if not spec.name:
        raise invalid_argument("ModelSpec has no name specified.")
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return ModelRef(spec.name, version=spec.version.value)
    if choice == "version_label":
        return ModelRef(spec.name, label=spec.version_label)
    return ModelRef(spec.name)


def signature_input_specs(signature: Signature) -> InputSpecs:
    """alias -> (DataType, shape): what the REST decoders build a signature's inputs by."""
    return {alias: (info.dtype, info.shape) for alias, info in signature.inputs.items()}


def _served(servable: Servable, signature: Signature) -> Served:
    return Served(servable.name, servable.version, signature.key)


def _spec(ref: ModelRef, signature_name: str) -> Spec:
    return Spec(ref.name, ref.version, ref.label, signature_name)


def _served_spec(served: Served) -> Spec:
    return Spec(served.name, served.version, None, served.signature_name)


def fill_model_spec(spec, served: Served) -> None:
    """Set a response ModelSpec to the version that actually served."""
    spec.name = served.name
    spec.version.value = served.version
    spec.signature_name = served.signature_name


def _num_examples(feed: dict[str, np.ndarray]) -> int:
    for array in feed.values():
        return int(array.shape[0]) if array.ndim else 1
    return 0
