"""API keys with roles, checked by a server interceptor.

Keys come from a file (one `key role` pair per line, or a JSON/YAML mapping of
key to role), re-read whenever it changes, or from the TESSERA_API_KEYS environment
variable (`key1:read,key2:admin`). Roles nest: admin > write > read. Keys are never
logged: errors name at most a key's first four characters.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

log = logging.getLogger("tessera.auth")

ROLES = ("read", "write", "admin")
METHOD_ROLES = {
    "Embed": "read",
    "EmbedStream": "read",
    "ListSpaces": "read",
    "Search": "read",
    "BatchSearch": "read",
    "Get": "read",
    "ListCorpora": "read",
    "DescribeCorpus": "read",
    "Upsert": "write",
    "Delete": "write",
    "CreateCorpus": "admin",
    "DropCorpus": "admin",
}
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
METADATA_KEY = "x-api-key"


def parse_keys(text: str) -> dict[str, str]:
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        keys = json.loads(text)
    elif ":" in text.splitlines()[0] and " " not in text.splitlines()[0].strip():
        keys = dict(pair.split(":", 1) for pair in text.replace("\n", ",").split(",") if pair.strip())
    else:
        keys = {}
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                key, role = line.split()
                keys[key] = role
    for key, role in keys.items():
        if role not in ROLES:
            raise ValueError(f"API key {key[:4]}...: unknown role {role!r}; use one of {', '.join(ROLES)}")
    return {k.strip(): v.strip() for k, v in keys.items()}


def load_keys(path: str | os.PathLike[str] | None) -> dict[str, str]:
    if path:
        return parse_keys(Path(path).read_text())
    return parse_keys(os.environ.get("TESSERA_API_KEYS", ""))


def allows(role: str, needed: str) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)


class KeyStore:
    """The keys in force. A key file is re-read when it changes, so deleting a line revokes that key
    (and adding one grants it) without restarting the server. A file that no longer parses keeps
    the previous keys in force and is logged, never half-applied."""

    def __init__(self, path: str | os.PathLike[str] | None = None, keys: dict[str, str] | None = None) -> None:
        self.path = Path(path) if path else None
        self._keys = dict(keys or {})
        self._stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()
        if self.path is not None:
            self._keys = parse_keys(self.path.read_text())
            self._stamp = self._file_stamp()

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()  # type: ignore[union-attr]
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def role(self, key: str) -> str | None:
        if self.path is not None:
            stamp = self._file_stamp()
            if stamp != self._stamp:
                with self._lock:
                    self._reload(stamp)
        return self._keys.get(key)

    def _reload(self, stamp: tuple[int, int] | None) -> None:
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._keys = parse_keys(self.path.read_text()) if stamp is not None else {}  # type: ignore[union-attr]
        except (OSError, ValueError) as exc:
            log.error({"event": "api_keys_reload_failed", "file": str(self.path), "error": str(exc)})
            return
        log.info({"event": "api_keys_reloaded", "file": str(self.path), "keys": len(self._keys)})

    def __bool__(self) -> bool:
        return bool(self._keys) or self.path is not None


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, keys: dict[str, str] | KeyStore) -> None:
        self.keys = keys if isinstance(keys, KeyStore) else KeyStore(keys=keys)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = details.method
        if method.startswith(OPEN_SERVICES):
            return await continuation(details)
        metadata = dict(details.invocation_metadata or ())
        key = metadata.get(METADATA_KEY)
        if key is None:
            auth = metadata.get("authorization", "")
            key = auth[7:] if auth.lower().startswith("bearer ") else None
        needed = METHOD_ROLES.get(method.rsplit("/", 1)[-1], "admin")
        handler = await continuation(details)
        if not key:
            return _deny(
                handler, grpc.StatusCode.UNAUTHENTICATED, f"missing API key: send it as '{METADATA_KEY}' metadata"
            )
        role = self.keys.role(key)
        if role is None:
            return _deny(handler, grpc.StatusCode.UNAUTHENTICATED, "unknown or revoked API key")
        if not allows(role, needed):
            return _deny(
                handler, grpc.StatusCode.PERMISSION_DENIED, f"this key has role {role!r}; {method} needs {needed!r}"
            )
        return handler


def _deny(handler: grpc.RpcMethodHandler | None, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same call shape as the real one that only aborts."""

    async def abort(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, message)

    if handler is None:
        return grpc.unary_unary_rpc_method_handler(abort)
    shapes = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    make = shapes[(handler.request_streaming, handler.response_streaming)]
    return make(
        abort,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
