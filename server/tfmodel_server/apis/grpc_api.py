"""gRPC surface: tensorflow.serving PredictionService and ModelService on grpc.aio.

Only wire translation lives here; request logic is in service.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tfmodel_server.apis.grpc_parsing import add_servicer, received_bytes
from tfmodel_server.apis.metadata import model_metadata_response
from tfmodel_server.codecs import tensor_proto as tensor_codec
from tfmodel_server.errors import ServingError, bounded_message
from tfmodel_server.inference.service import (
    InferenceService,
    fill_model_spec,
    model_ref_from_spec,
)
from tfmodel_server.model_servers.admission import AdmissionControl
from tfmodel_server.model_servers.codec_pool import CodecPool
from tfmodel_server.model_servers.model_status import model_status_response
from tfmodel_server.monitoring import request_context
from tfmodel_server.monitoring.observers import RequestObserver, noop_observer

log = logging.getLogger(__name__)

# Callback the server supplies: apply a ModelServerConfig (raises ServingError).
ReloadConfig = Callable[[object], Awaitable[None]]


async def _observed_call(
    context: grpc.aio.ServicerContext,
    observer: RequestObserver,
    api: str,
    model: str,
    call: Callable[[], Awaitable[object]],
):
    """Time one RPC; ServingError becomes the RPC status, anything else INTERNAL."""
    record = request_context.begin()
    start = time.perf_counter()
    try:
        response = await call()
    except ServingError as e:
        observer(model, api, e.code, time.perf_counter() - start)
        await context.abort(e.code, bounded_message(e.message))
    except Exception as e:  # a bug or a TF failure must not surface as UNKNOWN
        log.exception("%s on model %r failed", api, model)
        observer(model, api, grpc.StatusCode.INTERNAL, time.perf_counter() - start)
        await context.abort(grpc.StatusCode.INTERNAL, bounded_message(f"{type(e).__name__}: {e}"))
    observer(model, api, grpc.StatusCode.OK, time.perf_counter() - start)
    if record.after_reply:
        # This task sends the response and the status, then ends: deferred work (shadow
        # traffic) starts only once the client has its answer.
        task = asyncio.current_task()
        if task is not None:
            task.add_done_callback(lambda _task: request_context.run_after_reply(record))
    return response


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(
        self,
        service: InferenceService,
        observer: RequestObserver = noop_observer,
        as_tensor_content: bool = False,
        codec_pool: CodecPool | None = None,
    ) -> None:
        self._service = service
        self._observer = observer
        self._as_tensor_content = as_tensor_content
        self._pool = codec_pool or CodecPool()

    async def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext
    ) -> predict_pb2.PredictResponse:
        async def call() -> predict_pb2.PredictResponse:
            ref = model_ref_from_spec(request.model_spec)
            # Large tensors are built (and answers encoded) in the codec pool, off the loop.
            inputs = await self._pool.run(received_bytes(request), self._decode_inputs, request)
            served, outputs = await self._service.predict(
                ref, request.model_spec.signature_name, inputs, list(request.output_filter)
            )
            encoded_size = sum(a.nbytes for a in outputs.values())
            response = await self._pool.run(encoded_size, self._encode_outputs, outputs)
            fill_model_spec(response.model_spec, served)
            return response

        return await _observed_call(
            context, self._observer, "predict", request.model_spec.name, call
        )

    def _decode_inputs(self, request: predict_pb2.PredictRequest) -> dict:
        budget = self._service.budget()  # one per request, shared by its inputs
        return {a: tensor_codec.to_ndarray(t, a, budget) for a, t in request.inputs.items()}

    def _encode_outputs(self, outputs: dict) -> predict_pb2.PredictResponse:
        response = predict_pb2.PredictResponse()
        for alias, array in outputs.items():
            response.outputs[alias].CopyFrom(
                tensor_codec.to_tensor_proto(array, as_tensor_content=self._as_tensor_content)
            )
        return response

    async def Classify(
        self,
        request: classification_pb2.ClassificationRequest,
        context: grpc.aio.ServicerContext,
    ) -> classification_pb2.ClassificationResponse:
        return await self._examples_rpc(
            request,
            context,
            "classify",
            self._service.classify,
            classification_pb2.ClassificationResponse,
        )

    async def Regress(
        self, request: regression_pb2.RegressionRequest, context: grpc.aio.ServicerContext
    ) -> regression_pb2.RegressionResponse:
        return await self._examples_rpc(
            request, context, "regress", self._service.regress, regression_pb2.RegressionResponse
        )

    async def _examples_rpc(self, request, context, api: str, run, response_type):
        """Classify and Regress differ only in the service call and response type."""

        async def call():
            ref = model_ref_from_spec(request.model_spec)
            served, result = await run(ref, request.model_spec.signature_name, request.input)
            response = response_type()
            fill_model_spec(response.model_spec, served)
            response.result.CopyFrom(result)
            return response

        return await _observed_call(context, self._observer, api, request.model_spec.name, call)

    async def MultiInference(
        self,
        request: inference_pb2.MultiInferenceRequest,
        context: grpc.aio.ServicerContext,
    ) -> inference_pb2.MultiInferenceResponse:
        model = request.tasks[0].model_spec.name if request.tasks else ""

        async def call() -> inference_pb2.MultiInferenceResponse:
            return await self._service.multi_inference(request)

        return await _observed_call(context, self._observer, "multi_inference", model, call)

    async def GetModelMetadata(
        self,
        request: get_model_metadata_pb2.GetModelMetadataRequest,
        context: grpc.aio.ServicerContext,
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        async def call() -> get_model_metadata_pb2.GetModelMetadataResponse:
            return model_metadata_response(self._service, request)

        return await _observed_call(
            context, self._observer, "get_model_metadata", request.model_spec.name, call
        )


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, service: InferenceService, reload_config: ReloadConfig) -> None:
        self._service = service
        self._reload_config = reload_config

    async def GetModelStatus(
        self,
        request: get_model_status_pb2.GetModelStatusRequest,
        context: grpc.aio.ServicerContext,
    ) -> get_model_status_pb2.GetModelStatusResponse:
        async def call() -> get_model_status_pb2.GetModelStatusResponse:
            ref = model_ref_from_spec(request.model_spec)
            return model_status_response(self._service.manager, ref)

        return await _observed_call(
            context, noop_observer, "get_model_status", request.model_spec.name, call
        )

    async def HandleReloadConfigRequest(
        self,
        request: model_management_pb2.ReloadConfigRequest,
        context: grpc.aio.ServicerContext,
    ) -> model_management_pb2.ReloadConfigResponse:
        async def call() -> model_management_pb2.ReloadConfigResponse:
            await self._reload_config(request.config)
            return model_management_pb2.ReloadConfigResponse()

        return await _observed_call(context, noop_observer, "reload_config", "", call)


def add_services(
    server: grpc.aio.Server,
    service: InferenceService,
    reload_config: ReloadConfig,
    observer: RequestObserver = noop_observer,
    as_tensor_content: bool = False,
    admission: AdmissionControl | None = None,
    codec_pool: CodecPool | None = None,
) -> list[str]:
    """Register both services; returns their full names (for reflection/health).

    Admission control applies to PredictionService only: ModelService (status,
    reload) and the health service are never refused.
    """
    pool = codec_pool or CodecPool()
    return [
        add_servicer(
            server,
            PredictionServicer(service, observer, as_tensor_content, pool),
            prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"],
            admission,
            pool,
        ),
        add_servicer(
            server,
            ModelServicer(service, reload_config),
            model_service_pb2.DESCRIPTOR.services_by_name["ModelService"],
            None,
            pool,
        ),
    ]
