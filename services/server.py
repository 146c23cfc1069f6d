"""The gRPC server (grpc.aio): the Tessera service, health checking, reflection, auth, metrics, TLS.

The answers themselves come from `service.Service`, which the embedded client
runs too; this module adds what only a network server needs: each call runs
under its deadline, and an exception becomes a status code through
`service.status_of` (bad input -> INVALID_ARGUMENT, unknown corpus or space ->
NOT_FOUND, too large or a full disk -> RESOURCE_EXHAUSTED, past the deadline ->
DEADLINE_EXCEEDED). A handler never lets an exception take the server down.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from tessera.embedder import inference
from tessera.index.diskspace import is_disk_full
from tessera.index.milvus_store import MilvusStore
from tessera.v1 import tessera_pb2 as pb
from tessera.v1 import tessera_pb2_grpc as pb_grpc

from .auth import ApiKeyInterceptor, KeyStore
from .engine import Engine, Limits
from .metrics import Metrics, MetricsInterceptor
from .service import INTERNAL, UNARY_METHODS, Service, status_of

log = logging.getLogger("tessera.server")
SERVICE = pb.DESCRIPTOR.services_by_name["Tessera"].full_name


def _within_deadline(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else max(0.0, remaining)


class _RefusalLog:
    """Writes refused for a full disk, logged at most once every `every_s` with a count of the rest."""

    def __init__(self, every_s: float = 5.0) -> None:
        self.every_s = every_s
        self._last = -float("inf")
        self._suppressed = 0

    def note(self, method: str, message: str) -> None:
        now = time.monotonic()
        if now - self._last < self.every_s:
            self._suppressed += 1
            return
        log.warning(
            {"event": "write_refused_disk_full", "method": method, "message": message, "also_refused": self._suppressed}
        )
        self._last, self._suppressed = now, 0


_disk_refusals = _RefusalLog()


async def _abort(context: grpc.aio.ServicerContext, method: str, exc: Exception) -> None:
    code, message = status_of(exc)
    if code == INTERNAL:
        log.exception("unhandled error in %s", method)
    elif code == "RESOURCE_EXHAUSTED" and is_disk_full(exc):
        _disk_refusals.note(method, message)
    await context.abort(grpc.StatusCode[code], message)


def _unary(method: str) -> Callable[..., Any]:
    """A servicer method that runs `Service.<method>` under the call's deadline."""

    async def handler(self: TesseraServicer, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await asyncio.wait_for(getattr(self.service, method)(request), timeout=_within_deadline(context))
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, method, exc)

    handler.__name__ = method
    return handler


class TesseraServicer(pb_grpc.TesseraServicer):
    def __init__(self, engine: Engine, metrics: Metrics | None = None) -> None:
        self.engine = engine
        self.service = Service(engine, metrics)

    async def EmbedStream(
        self, request_iterator: AsyncIterator[pb.EmbedRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.EmbedResponse]:
        try:
            async for request in request_iterator:
                yield await asyncio.wait_for(self.service.Embed(request), timeout=_within_deadline(context))
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, "EmbedStream", exc)

    async def Upsert(
        self, request_iterator: AsyncIterator[pb.UpsertRequest], context: grpc.aio.ServicerContext
    ) -> pb.UpsertResponse:
        try:
            return await self.service.Upsert(request_iterator, timeout=_within_deadline(context))
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, "Upsert", exc)


for _method in UNARY_METHODS:
    setattr(TesseraServicer, _method, _unary(_method))


@dataclass
class TLSConfig:
    cert: Path
    key: Path
    client_ca: Path | None = None  # set for mutual TLS: clients must present a certificate it signed


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    engine: Engine
    health: health.aio.HealthServicer
    http: Any = None  # a tessera.http.HttpServer when HTTP is on (--http-port); stopped first

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, let in-flight calls finish, then snapshot and close every corpus."""
        await self.health.enter_graceful_shutdown()
        if self.http is not None:
            await self.http.stop(grace)
        await self.server.stop(grace)
        await self.engine.close()


async def start_server(
    engine: Engine,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    api_keys: dict[str, str] | KeyStore | None = None,
    tls: TLSConfig | None = None,
    metrics: Metrics | None = None,
    max_message_bytes: int | None = None,
    max_concurrent_rpcs: int | None = None,
) -> RunningServer:
    interceptors: list[grpc.aio.ServerInterceptor] = []
    if api_keys:
        interceptors.append(ApiKeyInterceptor(api_keys))
    if metrics is not None:
        interceptors.append(MetricsInterceptor(metrics))
    limit = max_message_bytes or engine.limits.max_message_bytes
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)],
        # Beyond this many calls in flight, new ones get RESOURCE_EXHAUSTED instead of queueing without bound.
        maximum_concurrent_rpcs=max_concurrent_rpcs,
    )
    pb_grpc.add_TesseraServicer_to_server(TesseraServicer(engine, metrics), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    address = f"{host}:{port}"
    if tls is not None:
        credentials = grpc.ssl_server_credentials(
            [(tls.key.read_bytes(), tls.cert.read_bytes())],
            root_certificates=tls.client_ca.read_bytes() if tls.client_ca else None,
            require_client_auth=tls.client_ca is not None,
        )
        bound = server.add_secure_port(address, credentials)
    else:
        bound = server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot listen on {address}")
    await server.start()
    for name in ("", SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info({"event": "serving", "address": f"{host}:{bound}", "tls": tls is not None, "auth": bool(api_keys)})
    return RunningServer(server, bound, engine, health_servicer)


async def serve_forever(running: RunningServer, grace: float = 10.0) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info({"event": "shutting_down", "grace_s": grace})
    await running.stop(grace)
    log.info({"event": "stopped"})


@dataclass
class ServeOptions:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 50051
    api_keys_file: Path | None = None
    tls: TLSConfig | None = None
    metrics_port: int | None = None
    batching: bool = True
    max_batch: int = 64
    max_wait_ms: float = 0.0
    max_message_bytes: int = 64 << 20
    limits: Limits | None = None
    max_concurrent_rpcs: int | None = None
    allow_space_paths: bool = False
    grace_s: float = 10.0
    min_free_bytes: int = 0  # --min-free-mb: refuse upserts below this much free space on the data directory
    http_port: int | None = None  # --http-port: HTTP/JSON API and web console on this port (tessera.http)
    milvus_uri: str | None = None  # --milvus-uri: serve that Milvus server's corpora too (index/milvus_store.py)
    milvus_token: str | None = None


async def start_http_for(running: RunningServer, options: ServeOptions, keys: KeyStore, metrics: Metrics) -> Any:
    """The HTTP/JSON API on the same Engine, keys, TLS files, limits and metrics as the gRPC server."""
    from .http import start_http

    return await start_http(
        Service(running.engine, metrics),
        options.host,
        options.http_port or 0,
        keys=keys or None,
        tls=options.tls,
        metrics=metrics,
        max_body_bytes=options.max_message_bytes,
        max_concurrent=options.max_concurrent_rpcs,
    )


def serve(options: ServeOptions) -> None:
    """`tessera serve`: run until SIGTERM/SIGINT, then drain calls and snapshot every corpus."""
    from . import audit
    from .auth import KeyStore, load_keys
    from .logs import configure

    configure()
    inference.preload()  # before the audit: a library's own start-up reads are not a request's
    audit.install_from_env(options.data_dir)  # test-only: TESSERA_AUDIT_OPENS (tests/test_hostile.py)
    keys = KeyStore(options.api_keys_file) if options.api_keys_file else KeyStore(keys=load_keys(None))

    async def main() -> None:
        metrics = Metrics()
        if options.metrics_port:
            metrics.serve(options.metrics_port, options.host)
        engine = Engine(
            options.data_dir,
            batching=options.batching,
            max_batch=options.max_batch,
            max_wait_ms=options.max_wait_ms,
            on_batch=metrics.batch_size.observe,
            limits=options.limits,
            allow_space_paths=options.allow_space_paths,
            min_free_bytes=options.min_free_bytes,
            milvus=MilvusStore(options.milvus_uri, options.milvus_token) if options.milvus_uri else None,
            blas_on_caller_threads=True,  # this process only serves
        )
        metrics.track_disk(engine.catalog.guard)
        metrics.track_damage(engine.catalog)
        running = await start_server(
            engine,
            options.host,
            options.port,
            api_keys=keys or None,
            tls=options.tls,
            metrics=metrics,
            max_message_bytes=options.max_message_bytes,
            max_concurrent_rpcs=options.max_concurrent_rpcs,
        )
        milvus = f", milvus: {options.milvus_uri}" if options.milvus_uri else ""
        print(f"tessera serving on {options.host}:{running.port} (data: {options.data_dir}{milvus})", flush=True)
        if options.http_port is not None:
            running.http = await start_http_for(running, options, keys, metrics)
            print(f"tessera http on {options.host}:{running.http.port} (console: {running.http.url}/)", flush=True)
        await serve_forever(running, options.grace_s)

    asyncio.run(main())
