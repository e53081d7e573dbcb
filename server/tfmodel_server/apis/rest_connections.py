"""REST connections: slow and idle clients cannot hold sockets; a bound on how many are open.

aiohttp starts timing a request only once its headers are parsed, and
--rest_api_timeout_in_ms only once its body is read, so a client sending one
byte a second held its socket (and a file descriptor) forever. Here:
- ConnectionGuard wraps aiohttp's protocol factory: it counts open connections
  (beyond --rest_api_max_connections a connection gets 503 and is closed) and
  starts a header deadline at the first byte of each request;
- limits_middleware reads the body under its own deadline before any handler
  runs, and while the server drains answers with `Connection: close`;
- the idle keep-alive timeout is aiohttp's own keepalive_timeout (server.py).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
from aiohttp import web

from tfmodel_server.model_servers.admission import (
    PROTOCOL_REST,
    RETRY_AFTER_SECONDS,
    AdmissionControl,
    Refused,
    Ticket,
    unlimited,
)

log = logging.getLogger(__name__)

# Descriptors kept free for gRPC, model files and TensorFlow when the REST
# connection bound is fitted under RLIMIT_NOFILE.
FD_RESERVE = 256

_BUSY_BODY = b'{"error": "Too many open connections; retry later."}'
_TIMEOUT_BODY = b'{"error": "Request headers not received in time."}'


def _raw_response(status: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float = 10.0  # 0 = none
    body_timeout: float = 60.0  # 0 = none
    max_connections: int = 1000  # 0 = none


def fit_max_connections(requested: int) -> int:
    """The connection bound, lowered (with a warning) to fit the fd limit.

    Past the fd limit accept() fails with EMFILE and model loads and gRPC fail
    with it; a bound just under it keeps those working and says why.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if requested == 0 or soft == resource.RLIM_INFINITY:
        return requested
    ceiling = max(soft - FD_RESERVE, 16)
    if requested > ceiling:
        log.warning(
            "--rest_api_max_connections=%d lowered to %d: RLIMIT_NOFILE is %d "
            "(%d descriptors kept for gRPC, model files and TensorFlow)",
            requested,
            ceiling,
            soft,
            FD_RESERVE,
        )
        return ceiling
    return requested


class ConnectionGuard:
    """The protocol factory given to loop.create_server in place of aiohttp's."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self._factory: Callable[[], asyncio.Protocol] | None = None
        self.limits = limits
        self._open: dict[asyncio.BaseTransport, _GuardedConnection] = {}
        self._refused = 0

    def bind(self, factory: Callable[[], asyncio.Protocol]) -> None:
        """aiohttp's protocol factory (runner.server), made after the app."""
        self._factory = factory

    def __call__(self) -> asyncio.Protocol:
        assert self._factory is not None, "bind() before listening"
        limit = self.limits.max_connections
        if limit and len(self._open) >= limit:
            self._refused += 1
            if self._refused == 1 or self._refused % 1000 == 0:
                log.warning(
                    "REST connection limit reached (--rest_api_max_connections=%d): "
                    "answering 503 and closing new connections (%d refused so far)",
                    limit,
                    self._refused,
                )
            return _Refuse()
        if self._refused:
            log.info("REST connections below the limit again (%d were refused)", self._refused)
            self._refused = 0
        return _GuardedConnection(self, self._factory())

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def request_started(self, transport: asyncio.BaseTransport | None) -> None:
        if transport is not None and (conn := self._open.get(transport)) is not None:
            conn.set_busy(True)

    def request_finished(self, transport: asyncio.BaseTransport | None) -> None:
        if transport is not None and (conn := self._open.get(transport)) is not None:
            conn.set_busy(False)

    def close_idle(self) -> None:
        """Close keep-alive connections with no request started (drain)."""
        for transport, conn in list(self._open.items()):
            if conn.idle:
                transport.close()

    def abort_all(self) -> None:
        for transport in list(self._open):
            transport.abort()  # type: ignore[attr-defined]


class _GuardedConnection(asyncio.Protocol):
    """Forwards to aiohttp's RequestHandler and times each request's headers."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner
        self._transport: asyncio.Transport | None = None
        self._busy = False
        self._header_timer: asyncio.TimerHandle | None = None

    @property
    def idle(self) -> bool:
        return not self._busy and self._header_timer is None

    def set_busy(self, busy: bool) -> None:
        # Headers are in once a handler runs; after the response the next
        # request's header clock starts at its first byte.
        self._busy = busy
        self._cancel_timer()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._guard._open[transport] = self  # noqa: SLF001
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        timeout = self._guard.limits.header_timeout
        if timeout and not self._busy and self._header_timer is None and data:
            loop = asyncio.get_running_loop()
            self._header_timer = loop.call_later(timeout, self._headers_too_slow)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        if self._transport is not None:
            self._guard._open.pop(self._transport, None)  # noqa: SLF001
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._transport is None or self._busy:
            return
        log.info(
            "REST client %s: headers not complete after %.0fs; closing",
            self._transport.get_extra_info("peername"),
            self._guard.limits.header_timeout,
        )
        self._transport.write(_raw_response("408 Request Timeout", _TIMEOUT_BODY))
        self._transport.close()

    def _cancel_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None


class _Refuse(asyncio.Protocol):
    """Over the connection limit: a 503 that costs nothing, then close."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(_raw_response("503 Service Unavailable", _BUSY_BODY))  # type: ignore[attr-defined]
        transport.close()


async def listen(
    guard: ConnectionGuard,
    host: str,
    port: int,
    reuse_port: bool,
    ssl_context: object | None,
) -> asyncio.Server:
    """The REST listener, with the guard as its protocol factory."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        guard,
        host,
        port,
        ssl=ssl_context,  # type: ignore[arg-type]
        backlog=128,
        reuse_port=reuse_port or None,
    )


async def drain(listener: asyncio.Server, guard: ConnectionGuard, deadline: float) -> None:
    """Stop listening, close idle keep-alive connections, let requests in progress
    finish until `deadline` (loop time), then abort whatever is still open."""
    listener.close()
    loop = asyncio.get_running_loop()
    while guard.open_connections and loop.time() < deadline:
        guard.close_idle()
        await asyncio.sleep(0.05)
    if guard.open_connections:
        log.warning(
            "drain timeout: aborting %d REST connection(s) still open", guard.open_connections
        )
        guard.abort_all()
        await asyncio.sleep(0)  # let connection_lost run before aiohttp's cleanup


def limits_middleware(
    guard: ConnectionGuard,
    draining: Callable[[], bool],
    admission: AdmissionControl | None = None,
) -> Callable:
    """Outermost middleware: admission, body deadline, then `Connection: close` while draining."""
    body_timeout = guard.limits.body_timeout
    admission = admission or unlimited()

    @web.middleware
    async def guard_request(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        transport = request.transport
        guard.request_started(transport)
        ticket: Ticket | None = None
        try:
            if _is_work(request):
                try:
                    # Before one byte of the body is read: Content-Length, or (chunked)
                    # the minimum now and the rest as it arrives (_read_counted).
                    ticket = admission.admit(request.content_length or 0, PROTOCOL_REST)
                except Refused as e:
                    return _refusal(e)
            if request.body_exists:
                try:
                    # Cached by aiohttp: the handler's own read() returns it.
                    await asyncio.wait_for(_read_body(request, ticket), body_timeout or None)
                except asyncio.TimeoutError:
                    return await _body_too_slow(request, body_timeout)
                except Refused as e:
                    return _refusal(e)
                except web.HTTPRequestEntityTooLarge:
                    # client_max_size is --max_request_decoded_bytes (rest_api.build_app).
                    limit = request.client_max_size
                    return _json_error(
                        413,
                        f"Request body is larger than this server's limit of {limit} bytes "
                        "(--max_request_decoded_bytes)",
                    )
                except web.HTTPException as e:
                    return _json_error(e.status, e.text or e.reason)
            response = await handler(request)
            if draining():
                # Keep-alive clients reconnect through the Service, to a pod
                # that stays.
                response.force_close()
            return response
        finally:
            if ticket is not None:
                ticket.release()
            guard.request_finished(transport)

    return guard_request


def _is_work(request: web.Request) -> bool:
    """Prediction calls (POST /v1/...); probes, metrics, status and metadata never wait."""
    return request.method == "POST" and request.raw_path[:4].lower() == "/v1/"


async def _read_body(request: web.Request, ticket: Ticket | None) -> bytes:
    """The body, as aiohttp's read() would return it, charging `ticket` as a chunked
    body grows (it has no Content-Length to charge up front).

    Kept as a list of chunks and joined once: aiohttp's read() extends one bytearray
    (reallocated as it grows) and copies it at the end, on the event loop, which
    measured as the loop's largest cost while 30 MB bodies arrived.
    """
    limit = request.client_max_size
    if limit and hasattr(request.content, "set_read_chunk_size"):
        # As aiohttp's read(): bigger buffers, fewer pause/resume cycles (and loop turns).
        request.content.set_read_chunk_size(limit)
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.readany():
        chunks.append(chunk)
        size += len(chunk)
        if limit and size > limit:
            raise web.HTTPRequestEntityTooLarge(limit, size)
        if ticket is not None and request.content_length is None:
            ticket.grow(size)
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    chunks.clear()
    # aiohttp's read() returns this cache, so the handler reads what was counted here.
    request._read_bytes = data  # noqa: SLF001
    return data


def _refusal(error: Refused) -> web.Response:
    """429 + Retry-After (or 413 for a request larger than the whole budget).

    Not force-closed: aiohttp then reads and discards the unread body ("lingering")
    after answering, so a client still sending it gets the answer, not a reset.
    """
    response = web.Response(
        status=error.http_status,
        body=orjson.dumps({"error": error.message}),
        content_type="application/json",
    )
    if error.retryable:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _json_error(status: int, message: str) -> web.Response:
    response = web.Response(
        status=status, body=orjson.dumps({"error": message}), content_type="application/json"
    )
    response.force_close()
    return response


async def _body_too_slow(request: web.Request, timeout: float) -> web.StreamResponse:
    log.info("REST client %s: body not complete after %.0fs; closing", request.remote, timeout)
    response = _json_error(408, f"Request body not received within {timeout:g} s.")
    # Written and closed here: aiohttp would otherwise keep reading the rest of
    # the body ("lingering") from the very client that is too slow.
    await response.prepare(request)
    await response.write_eof()
    if request.transport is not None:
        request.transport.close()
    return response
