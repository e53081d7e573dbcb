"""--rest_api_enable_cors_support: TF Serving's CORS headers on REST responses.

With the flag, every response carries Access-Control-Allow-Origin: * and the
allowed methods/headers, and an OPTIONS preflight is answered 200 with no body.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, GET",
    "Access-Control-Allow-Headers": "Content-Type, Authorization",
}


def cors_middleware() -> Callable:
    @web.middleware
    async def add_cors(request: web.Request, handler: Callable) -> web.StreamResponse:
        if request.method == "OPTIONS":
            return web.Response(status=200, headers=CORS_HEADERS)
        try:
            response = await handler(request)
        except web.HTTPException as e:
            e.headers.update(CORS_HEADERS)
            raise
        response.headers.update(CORS_HEADERS)
        return response

    return add_cors
