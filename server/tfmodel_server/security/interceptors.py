"""The token check wired into gRPC (a server interceptor) and REST (middleware)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
from aiohttp import web

from tfmodel_server.security.auth import TokenStore

# Health checks, reflection and probes need no token (kubelet, load balancers).
OPEN_GRPC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
OPEN_REST_PATHS = frozenset({"/healthz", "/readyz"})
UNAUTHENTICATED_MESSAGE = "missing or invalid authorization token"


async def _deny(request: object, context: grpc.aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)


_DENY_HANDLER = grpc.unary_unary_rpc_method_handler(_deny)


class TokenInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, store: TokenStore) -> None:
        self._store = store

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method or ""
        if method.startswith(OPEN_GRPC_PREFIXES):
            return await continuation(handler_call_details)
        token = None
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                token = value if isinstance(value, str) else value.decode("utf-8", "replace")
                break
        if self._store.allows(token):
            return await continuation(handler_call_details)
        return _DENY_HANDLER


def rest_token_middleware(store: TokenStore) -> Callable:
    @web.middleware
    async def check(request: web.Request, handler: Callable) -> web.StreamResponse:
        if request.path in OPEN_REST_PATHS or request.method == "OPTIONS":
            return await handler(request)
        if not store.allows(request.headers.get("Authorization")):
            return web.json_response(
                {"error": UNAUTHENTICATED_MESSAGE},
                status=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return await handler(request)

    return check
