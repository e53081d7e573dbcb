"""Register gRPC servicers so that an unparseable request is INVALID_ARGUMENT.

With the generated `add_*Servicer_to_server`, grpcio parses the request itself and
answers a DecodeError with UNKNOWN and a Python class name. Here handlers receive the
raw bytes and parse them, so the client gets TF Serving's code for a bad request;
that is also where admission control sees a call's size before anything is decoded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar

import grpc
from google.protobuf import descriptor, message, message_factory

from tfmodel_server.errors import bounded_message
from tfmodel_server.model_servers.admission import (
    PROTOCOL_GRPC,
    AdmissionControl,
    Refused,
    Ticket,
)
from tfmodel_server.model_servers.codec_pool import CodecPool

# The size of the message the current call received (set before the servicer runs):
# the servicer's size for "is this large" without request.ByteSize(), which on a parsed
# 12.5 MB request re-encodes it (11 ms, on the event loop).
RECEIVED_BYTES: ContextVar[int | None] = ContextVar("grpc_received_bytes", default=None)


def received_bytes(request: message.Message) -> int:
    """The current call's message size on the wire."""
    size = RECEIVED_BYTES.get()
    return request.ByteSize() if size is None else size


Impl = Callable[[message.Message, grpc.aio.ServicerContext], Awaitable[message.Message]]


def _parsing(
    impl: Impl,
    request_type: type[message.Message],
    admission: AdmissionControl | None,
    pool: CodecPool,
):
    full_name = request_type.DESCRIPTOR.full_name

    async def handler(raw: bytes, context: grpc.aio.ServicerContext) -> message.Message:
        ticket: Ticket | None = None
        if admission is not None:
            try:
                # Before parsing: the message's size is all that is known, and all it takes.
                ticket = admission.admit(len(raw), PROTOCOL_GRPC)
            except Refused as e:
                await context.abort(e.code, bounded_message(e.message))
        try:
            try:
                request = await pool.run(len(raw), request_type.FromString, raw)
            except Exception as e:  # DecodeError, and anything else a hostile buffer provokes
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    bounded_message(f"Could not parse request as {full_name}: {e}"),
                )
            RECEIVED_BYTES.set(len(raw))
            return await impl(request, context)
        finally:
            if ticket is not None:
                ticket.release()

    return handler


def _receiving(
    parsing: Callable[[bytes, grpc.aio.ServicerContext], Awaitable[message.Message]],
    admission: AdmissionControl,
):
    """The handler registered as client-streaming, so that it runs before the message
    has been received: it takes a receive slot or refuses the call at once (grpc core
    then drops what it has of the message), then reads the one message a unary client
    sends. On the wire a unary call and a one-message client stream are the same;
    clients see a unary method.
    """

    async def handler(
        _messages: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> message.Message:
        raw = None
        try:
            with admission.receiving_grpc():
                # context.read(), not `async for` over `_messages`: grpc.aio's async
                # generator, left suspended after one message, holds that message in a
                # reference cycle until the cyclic collector runs (OOM-killed the server
                # in bench.overload's mixed burst; docs/overload.md).
                received = await context.read()
                if received is not grpc.aio.EOF:
                    raw = received
        except Refused as e:
            await context.abort(e.code, bounded_message(e.message))
        if raw is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "No request message")
        assert raw is not None
        return await parsing(raw, context)

    return handler


def add_servicer(
    server: grpc.aio.Server,
    servicer: object,
    service: descriptor.ServiceDescriptor,
    admission: AdmissionControl | None = None,
    pool: CodecPool | None = None,
) -> str:
    """Register every (unary) method of `service` on `servicer`; returns the service name.

    With `admission`, messages are received a few at a time (receiving_grpc) and every
    call is charged its message size before it is parsed (RESOURCE_EXHAUSTED when the
    in-flight budget is spent); large messages are parsed in the codec pool.
    """
    pool = pool or CodecPool()
    handlers = {}
    for method in service.methods:
        request_type = message_factory.GetMessageClass(method.input_type)
        response_type = message_factory.GetMessageClass(method.output_type)
        parsing = _parsing(getattr(servicer, method.name), request_type, admission, pool)
        if admission is None:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                parsing, response_serializer=response_type.SerializeToString
            )
        else:
            handlers[method.name] = grpc.stream_unary_rpc_method_handler(
                _receiving(parsing, admission),
                response_serializer=response_type.SerializeToString,
            )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    return service.full_name
