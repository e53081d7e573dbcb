"""One error type for every layer, carrying a gRPC status code.

TF Serving reports every failure as a tensorflow::Status; the gRPC layer sends
the code as-is and the REST layer maps it to HTTP (http_rest_api_handler.cc).
"""

from __future__ import annotations

import grpc

# TF Serving's ToHTTPStatusCode (util/net_http/... and http_rest_api_handler.cc).
_HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def http_status_for(code: grpc.StatusCode) -> int:
    """HTTP status TF Serving's REST handler uses for a status code."""
    return _HTTP_STATUS.get(code, 500)


class ServingError(Exception):
    """A failure with a gRPC status code and a client-facing message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return http_status_for(self.code)

    def __repr__(self) -> str:
        return f"ServingError({self.code.name}, {self.message!r})"


def invalid_argument(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def failed_precondition(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.FAILED_PRECONDITION, message)


def unavailable(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.UNAVAILABLE, message)


# gRPC sends the message percent-encoded in a trailer, and clients drop trailers over
# 16 KiB (they then see RESOURCE_EXHAUSTED instead of the error): 2 KiB of UTF-8 stays
# under 6 KiB encoded. REST bodies have no such limit but get a bound all the same.
MAX_GRPC_MESSAGE_BYTES = 2048
MAX_REST_MESSAGE_BYTES = 8192


def bounded_message(message: str, max_bytes: int = MAX_GRPC_MESSAGE_BYTES) -> str:
    """`message` as valid UTF-8 (lone surrogates escaped) of at most ~max_bytes."""
    data = message.encode("utf-8", "backslashreplace")
    if len(data) <= max_bytes:
        return data.decode("utf-8")
    head = data[:max_bytes].decode("utf-8", "ignore")  # never split a character
    return f"{head}... ({len(data) - len(head.encode('utf-8'))} more bytes)"
