"""What every HTTP call goes through before and after the Service: key, cap, deadline, metrics, errors.

The gRPC server does these in interceptors and in `server._unary`; here one `Gateway.call` does
them in the same order, with the same KeyStore, method roles, limits and metrics, so a call
answers the same over either transport:

1. the API key (`x-api-key` header, or `Authorization: Bearer KEY`) and the method's role
   (auth.METHOD_ROLES): missing or unknown -> 401, too weak -> 403;
2. the concurrency cap (`--max-concurrent-rpcs`, counted for HTTP calls): over it -> 429;
3. the body, read up to `--max-message-mb` (over it -> 413) and decoded;
4. the Service coroutine under the caller's deadline (`X-Request-Timeout: SECONDS`) -> 504;
5. the outcome counted in `tessera_requests_total{method, code}` and timed in
   `tessera_request_seconds{method}`, the gRPC server's metrics, under the gRPC method's name.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from tessera.auth import METADATA_KEY, METHOD_ROLES, KeyStore, allows

from .errors import HttpStatusError, response_for

if TYPE_CHECKING:
    from starlette.datastructures import FormData

    from tessera.metrics import Metrics
    from tessera.service import Service

TIMEOUT_HEADER = "x-request-timeout"


class Gateway:
    def __init__(
        self,
        service: Service,
        *,
        keys: KeyStore | None = None,
        metrics: Metrics | None = None,
        max_body_bytes: int | None = None,
        max_concurrent: int | None = None,
    ) -> None:
        self.service = service
        self.engine = service.engine
        self.keys = keys if keys else None
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes or service.engine.limits.max_message_bytes
        self.max_concurrent = max_concurrent
        self.in_flight = 0

    async def call(
        self, request: Request, method: str, answer: Callable[[], Awaitable[Any]], role: str | None = None
    ) -> Response:
        """Run `answer()` as `method`; a dict it returns is sent as JSON, a Response as it is."""
        start = time.perf_counter()
        code = "OK"
        counted = False
        try:
            self.authorise(request, method, role or METHOD_ROLES.get(method, "admin"))
            if self.max_concurrent is not None and self.in_flight >= self.max_concurrent:
                raise HttpStatusError(
                    "RESOURCE_EXHAUSTED",
                    f"{self.in_flight} calls are in flight, the server's limit (--max-concurrent-rpcs "
                    f"{self.max_concurrent}); retry shortly",
                    429,
                )
            self.in_flight += 1
            counted = True
            result = await asyncio.wait_for(answer(), timeout=self.timeout(request))
            return result if isinstance(result, Response) else JSONResponse(result)
        except Exception as exc:
            response, code = response_for(exc, method)
            return response
        finally:
            if counted:
                self.in_flight -= 1
            if self.metrics is not None:
                self.metrics.latency.labels(method).observe(time.perf_counter() - start)
                self.metrics.requests.labels(method, code).inc()

    def authorise(self, request: Request, method: str, needed: str) -> None:
        if self.keys is None:
            return
        key = request.headers.get(METADATA_KEY)
        if key is None:
            auth = request.headers.get("authorization", "")
            key = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        if not key:
            raise HttpStatusError(
                "UNAUTHENTICATED", f"missing API key: send it as an '{METADATA_KEY}' header or 'Authorization: Bearer'"
            )
        have = self.keys.role(key)
        if have is None:
            raise HttpStatusError("UNAUTHENTICATED", "unknown or revoked API key")
        if not allows(have, needed):
            raise HttpStatusError("PERMISSION_DENIED", f"this key has role {have!r}; {method} needs {needed!r}")

    @staticmethod
    def timeout(request: Request) -> float | None:
        value = request.headers.get(TIMEOUT_HEADER)
        if value is None:
            return None
        try:
            seconds = float(value)
        except ValueError:
            raise ValueError(f"{TIMEOUT_HEADER}: give seconds as a number, got {value[:40]!r}") from None
        if not seconds > 0:
            raise ValueError(f"{TIMEOUT_HEADER}: give a positive number of seconds, got {value[:40]!r}")
        return seconds

    async def body(self, request: Request) -> bytes:
        """The request body, refused past the size limit before it is all read when Content-Length says so."""
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            raise self._too_large(int(length))
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > self.max_body_bytes:
                    raise self._too_large(size, at_least=True)
                chunks.append(chunk)
        except ClientDisconnect:
            raise HttpStatusError(
                "CANCELLED", "the client closed the connection before sending the whole body"
            ) from None
        body = b"".join(chunks)
        request._body = body  # what Request.form() reads: the capped body, not the socket again
        return body

    def _too_large(self, size: int, at_least: bool = False) -> HttpStatusError:
        return HttpStatusError(
            "RESOURCE_EXHAUSTED",
            f"request body of {'more than ' if at_least else ''}{size} bytes; the limit is {self.max_body_bytes} "
            "(--max-message-mb)",
        )

    async def json(self, request: Request) -> Any:
        body = await self.body(request)
        if not body:
            return {}
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"request body is not valid JSON ({exc})") from None

    async def form(self, request: Request) -> FormData:
        await self.body(request)
        try:
            return await request.form(
                max_files=self.engine.limits.max_items_per_request, max_part_size=self.max_body_bytes
            )
        except (HTTPException, MultiPartException) as exc:
            raise ValueError(
                f"multipart body: {getattr(exc, 'detail', None) or getattr(exc, 'message', exc)}"
            ) from None


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("multipart/form-data")
