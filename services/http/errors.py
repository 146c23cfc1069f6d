"""gRPC status codes as HTTP statuses, and the JSON error body both transports' messages go into.

The code and message come from `service.status_of`, the function the gRPC server uses, so an HTTP
caller reads the same `code` and `message` a gRPC caller gets for the same bad request. Only the
number on the status line is HTTP's own:

    INVALID_ARGUMENT 400, UNAUTHENTICATED 401, PERMISSION_DENIED 403, NOT_FOUND 404,
    ALREADY_EXISTS 409, FAILED_PRECONDITION 409 (the corpus's state conflicts with the call; the
    body's `code` tells it from ALREADY_EXISTS), RESOURCE_EXHAUSTED 413 for a request over a size
    limit, 429 for the concurrency cap, 507 for a full disk, DEADLINE_EXCEEDED 504,
    DATA_LOSS 500, INTERNAL 500, UNAVAILABLE 503.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.responses import JSONResponse

from tessera.index.diskspace import DiskFullError, is_disk_full
from tessera.service import INTERNAL, StatusError, status_of

log = logging.getLogger("tessera.http")

HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "FAILED_PRECONDITION": 409,
    "RESOURCE_EXHAUSTED": 413,
    "CANCELLED": 499,
    "DATA_LOSS": 500,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


class HttpStatusError(Exception):
    """A refusal made by the HTTP layer itself (auth, a body too large, the concurrency cap)."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or HTTP_STATUS[code]


def http_status(code: str, exc: BaseException) -> int:
    """The HTTP status for a status code; RESOURCE_EXHAUSTED says which limit by its number.

    From the Service it is a size limit (413) or a full disk (507); the concurrency cap (429) is
    the HTTP layer's own refusal, an `HttpStatusError`.
    """
    while isinstance(exc, StatusError) and exc.__cause__ is not None:  # Upsert wraps the cause
        exc = exc.__cause__
    if code == "RESOURCE_EXHAUSTED" and (isinstance(exc, DiskFullError) or is_disk_full(exc)):
        return 507  # Insufficient Storage: the request was fine, the server's disk is not
    return HTTP_STATUS.get(code, 500)


def error_response(code: str, message: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def response_for(exc: BaseException, method: str) -> tuple[JSONResponse, str]:
    """(the JSON error response, the status code name) for an exception raised while answering `method`."""
    if isinstance(exc, HttpStatusError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.code == "UNAUTHENTICATED" else None
        if exc.status == 429:
            headers = {"Retry-After": "1"}
        return error_response(exc.code, exc.message, exc.status, headers), exc.code
    code, message = status_of(exc)
    if code == INTERNAL:
        log.exception("unhandled error in %s (HTTP)", method, exc_info=exc)
    return error_response(code, message, http_status(code, exc)), code


def error_schema() -> dict[str, Any]:
    """The OpenAPI description of the error body, for every route's non-2xx responses."""
    return {
        "description": "an error: the gRPC status name and the same message a gRPC caller gets",
        "content": {
            "application/json": {"example": {"error": {"code": "NOT_FOUND", "message": "corpus 'nope' does not exist"}}}
        },
    }
