"""REST surface: TF Serving's http_rest_api_handler.cc on aiohttp, plus probes.

URL forms and error JSON follow TF Serving exactly; `GET /v1/models`,
`/healthz` and `/readyz` are tfmodel additions for Kubernetes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

import grpc
import numpy as np
import orjson
from aiohttp import web
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2

from tfmodel_server.apis.metadata import model_metadata_response
from tfmodel_server.codecs import decode_worker, json_response
from tfmodel_server.codecs import json_request as json_tensor
from tfmodel_server.errors import (
    MAX_REST_MESSAGE_BYTES,
    ServingError,
    bounded_message,
    invalid_argument,
)
from tfmodel_server.inference.service import InferenceService, ModelRef, signature_input_specs
from tfmodel_server.model_servers.codec_pool import CodecPool
from tfmodel_server.model_servers.model_status import (
    model_status_response,
    status_json,
    status_response,
)
from tfmodel_server.monitoring import request_context
from tfmodel_server.monitoring.observers import RequestObserver

log = logging.getLogger(__name__)

_PREDICTION_RE = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
_STATUS_RE = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)
_JSON = "application/json"
_INT64_MAX = 2**63 - 1


@dataclass
class RestState:
    """What the REST layer reads from the server besides the service."""

    draining: bool = False
    config_status: dict = field(default_factory=lambda: {"ok": True, "error": "", "source": ""})


class _ThenRun(web.Response):
    """A response that starts deferred work (shadow traffic) once aiohttp has written it."""

    def __init__(self, *args, after: request_context.RequestRecord, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._after = after

    async def write_eof(self, data: bytes = b"") -> None:
        await super().write_eof(data)
        request_context.run_after_reply(self._after)


def _json_response(payload: bytes | dict, status: int = 200) -> web.Response:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return web.Response(body=body, status=status, content_type=_JSON)


def error_response(error: ServingError) -> web.Response:
    # Bounded, and valid UTF-8 even when the message quotes a lone surrogate from the body.
    message = bounded_message(error.message, MAX_REST_MESSAGE_BYTES)
    return _json_response({"error": message}, error.http_status)


def _ref(name: str, version: str | None, label: str | None) -> ModelRef:
    name = unquote(name)
    if version is not None:
        # absl::SimpleAtoi into an int64, as TF Serving parses it (leading zeros are fine;
        # int() of a 5000-digit string would itself fail).
        digits = version.lstrip("0") or "0"
        if not version.isascii() or len(digits) > 19 or int(digits) > _INT64_MAX:
            raise invalid_argument(
                f"Failed to convert version: {bounded_message(version, 64)} to numeric."
            )
        return ModelRef(name, version=int(digits))
    if label is not None:
        return ModelRef(name, label=unquote(label))
    return ModelRef(name)


class RestHandlers:
    def __init__(
        self,
        service: InferenceService,
        state: RestState,
        observer: RequestObserver,
        timeout_seconds: float,
        codec_pool: CodecPool | None = None,
    ) -> None:
        self.service = service
        self.state = state
        self.observer = observer
        self.timeout = timeout_seconds
        self.codec_pool = codec_pool or CodecPool()

    async def dispatch_v1(self, request: web.Request) -> web.Response:
        """Every /v1/... request; matched on the raw path as TF Serving does."""
        path = request.raw_path.split("?", 1)[0]
        record = request_context.begin()
        start = time.perf_counter()
        api, model = "unknown", ""
        try:
            if request.method == "POST" and (m := _PREDICTION_RE.fullmatch(path)):
                api, model = m.group(4).lower(), unquote(m.group(1))
                body = await request.read()
                ref = _ref(m.group(1), m.group(2), m.group(3))
                payload: bytes | dict = await asyncio.wait_for(
                    self._prediction(api, ref, body), self.timeout
                )
                response = _json_response(payload)
            elif request.method == "GET" and (m := _STATUS_RE.fullmatch(path)):
                api = "get_model_metadata" if m.group(4) else "get_model_status"
                if m.group(1) is None:
                    if m.group(2) or m.group(3) or m.group(4):
                        raise invalid_argument("Missing model name in request.")
                    return _json_response(self._list_models())
                model = unquote(m.group(1))
                ref = _ref(m.group(1), m.group(2), m.group(3))
                payload = self._metadata(ref) if m.group(4) else self._status(ref)
                response = _json_response(payload)
            else:
                raise invalid_argument(f"Malformed request: {request.method} {path}")
        except ServingError as e:
            self.observer(model, api, e.code, time.perf_counter() - start)
            return error_response(e)
        except web.HTTPRequestEntityTooLarge:
            self.observer(model, api, grpc.StatusCode.INVALID_ARGUMENT, time.perf_counter() - start)
            limit = self.service.max_request_decoded_bytes
            message = f"Request body is larger than this server's limit of {limit} bytes"
            return _json_response({"error": f"{message} (--max_request_decoded_bytes)"}, 413)
        except asyncio.TimeoutError:
            code = grpc.StatusCode.DEADLINE_EXCEEDED
            self.observer(model, api, code, time.perf_counter() - start)
            return error_response(ServingError(code, "Request timed out."))
        except Exception as e:  # a bug must answer 500, not drop the connection
            log.exception("REST %s %s failed", request.method, path)
            self.observer(model, api, grpc.StatusCode.INTERNAL, time.perf_counter() - start)
            return error_response(
                ServingError(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
            )
        self.observer(model, api, grpc.StatusCode.OK, time.perf_counter() - start)
        if record.after_reply:
            response = _ThenRun(
                body=response.body, status=response.status, headers=response.headers, after=record
            )
        return response

    async def _prediction(self, api: str, ref: ModelRef, body: bytes) -> bytes:
        # Large bodies are parsed, turned into tensors and their answers encoded in the
        # codec pool, so the loop keeps serving small requests and probes meanwhile.
        pool = self.codec_pool
        size = len(body)
        if api == "predict":
            formats: list[json_tensor.JsonFormat] = []
            outputs = None
            if pool.processes is not None and size >= pool.inline_max_bytes:
                outputs = await self._predict_decoded_apart(ref, body, formats)
            if outputs is None:
                outputs = await self._predict_decoded_here(ref, body, formats)
            # JSON text of numbers is a few times their binary size.
            encoded_size = 4 * sum(a.nbytes for a in outputs.values())
            return await pool.run(
                encoded_size, json_response.format_predict_response, outputs, formats[0]
            )
        parsed = await pool.run(size, json_tensor.parse_examples_request, body)
        if api == "classify":
            _, result = await self.service.classify(ref, parsed.signature_name, parsed.input)
            return json_response.format_classify_response(result)
        _, result = await self.service.regress(ref, parsed.signature_name, parsed.input)
        return json_response.format_regress_response(result)

    async def _predict_decoded_here(
        self, ref: ModelRef, body: bytes, formats: list[json_tensor.JsonFormat]
    ) -> dict[str, np.ndarray]:
        """Decode in this process (on the loop when small, in the codec threads when large)."""
        pool, size = self.codec_pool, len(body)
        doc = await pool.run(size, json_tensor.decode_body, body, True)

        def build_inputs(signature) -> dict:
            specs = signature_input_specs(signature)
            inputs, fmt = json_tensor.inputs_from_doc(doc, specs, self.service.budget())
            doc.clear()  # free the parsed JSON (~32 bytes a number) before TF runs
            formats.append(fmt)
            return inputs

        async def inputs_for(signature) -> dict:
            return await pool.run(size, build_inputs, signature)

        signature_name = json_tensor.signature_name_of(doc)
        _, outputs = await self.service.predict(ref, signature_name, inputs_for)
        return outputs

    async def _predict_decoded_apart(
        self, ref: ModelRef, body: bytes, formats: list[json_tensor.JsonFormat]
    ) -> dict[str, np.ndarray] | None:
        """Decode in a decode process, then predict; None: decode here instead (no such
        model yet, a signature the body names is unknown, the process failed), so every
        error is worded and counted as before."""
        processes = self.codec_pool.processes
        assert processes is not None
        specs = self.service.input_specs(ref)
        if specs is None:
            return None
        limit = self.service.max_request_decoded_bytes
        answer = await processes.decode_predict(body, specs, limit)
        if answer is None or answer[0] == decode_worker.FALLBACK:
            return None
        if answer[0] == decode_worker.PARSE_ERROR:
            raise ServingError(grpc.StatusCode[answer[1]], answer[2])
        signature_name = answer[1]
        decoded_by = specs[signature_name]

        async def inputs_for(signature) -> dict:
            if signature_input_specs(signature) != decoded_by:
                # Another version answers than the one whose specs were used (a label or
                # split moved meanwhile): decode again for this one.
                pool, size = self.codec_pool, len(body)
                doc = await pool.run(size, json_tensor.decode_body, body, True)
                specs_now = signature_input_specs(signature)
                inputs, fmt = await pool.run(
                    size, json_tensor.inputs_from_doc, doc, specs_now, self.service.budget()
                )
            elif answer[0] == decode_worker.INPUT_ERROR:
                raise ServingError(grpc.StatusCode[answer[2]], answer[3])
            else:
                inputs, fmt = answer[2], json_tensor.JsonFormat(answer[3])
            formats.append(fmt)
            return inputs

        _, outputs = await self.service.predict(ref, signature_name, inputs_for)
        return outputs

    def _status(self, ref: ModelRef) -> dict:
        return status_json(model_status_response(self.service.manager, ref))

    def _metadata(self, ref: ModelRef) -> dict:
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = ref.name
        if ref.version is not None:
            request.model_spec.version.value = ref.version
        elif ref.label is not None:
            request.model_spec.version_label = ref.label
        response = model_metadata_response(self.service, request)
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_defs)
        as_dict = {
            "preserving_proto_field_name": True,
            "always_print_fields_with_no_presence": True,
        }
        return {
            "model_spec": json_format.MessageToDict(response.model_spec, **as_dict),
            "metadata": {"signature_def": json_format.MessageToDict(signature_defs, **as_dict)},
        }

    def _list_models(self) -> dict:
        models = [
            {
                "name": info.name,
                **status_json(status_response(info.versions)),
                "version_labels": {k: str(v) for k, v in sorted(info.labels.items())},
                # tfmodel: why the base path could not be listed (what loaded keeps serving).
                **({"source_error": info.error} if info.error else {}),
            }
            for info in self.service.manager.list_models()
        ]
        return {"models": models, "config_status": self.state.config_status}

    async def healthz(self, request: web.Request) -> web.Response:
        return _json_response({"status": "alive"})

    async def readyz(self, request: web.Request) -> web.Response:
        if self.state.draining:
            return _json_response({"ready": False, "reason": "draining"}, 503)
        if not self.service.manager.ready():
            return _json_response({"ready": False, "reason": "models not available"}, 503)
        return _json_response({"ready": True})

    async def catch_all(self, request: web.Request) -> web.Response:
        # TF Serving's path regexes are case-insensitive, so "/V1/..." is an API call too.
        if request.raw_path[:4].lower() == "/v1/":
            return await self.dispatch_v1(request)
        return _json_response({"error": f"Not found: {request.method} {request.path}"}, 404)


def build_app(
    service: InferenceService,
    state: RestState,
    observer: RequestObserver,
    timeout_seconds: float,
    extra_routes: list[tuple[str, str, Callable]] | None = None,
    middlewares: list[Callable] | None = None,
    codec_pool: CodecPool | None = None,
) -> web.Application:
    """`middlewares` (CORS, token check) run outside the in-flight count."""
    handlers = RestHandlers(service, state, observer, timeout_seconds, codec_pool)
    # TF Serving accepts JSON bodies of any size. Here a body is at most the decoded-bytes
    # cap: JSON text is never smaller than the tensors it holds, and parsing it costs a
    # multiple of its size (bench/rest_decode_memory.py).
    app = web.Application(
        middlewares=list(middlewares or []),
        client_max_size=service.max_request_decoded_bytes,
    )
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    for method, path, handler in extra_routes or []:
        app.router.add_route(method, path, handler)
    app.router.add_route("*", "/{tail:.*}", handlers.catch_all)
    return app
