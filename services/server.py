"""The gRPC server (grpc.aio): the Tessera service, health checking, reflection, auth, metrics, TLS.

Every handler maps the engine's exceptions to status codes in one place
(`_status_of`): bad input -> INVALID_ARGUMENT, unknown corpus or space ->
NOT_FOUND, too large -> RESOURCE_EXHAUSTED, past the deadline ->
DEADLINE_EXCEEDED. A handler never lets an exception take the server down.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import DecodeError as ProtobufDecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from tessera.embedder import Modality, UnknownSpaceError, list_spaces
from tessera.index.catalog import CorpusExistsError, CorpusNotFoundError
from tessera.index.corpus import CorpusError
from tessera.v1 import tessera_pb2 as pb
from tessera.v1 import tessera_pb2_grpc as pb_grpc

from .auth import ApiKeyInterceptor, KeyStore
from .convert import FUSION_FROM_PB, content_from_pb, hit_to_pb
from .engine import Engine, LimitError, Limits, NewItem
from .metrics import Metrics, MetricsInterceptor
from .wire import MODALITY_TO_PB, dict_to_struct, modality_from_pb, struct_to_dict, vector_from_pb, vector_to_pb

log = logging.getLogger("tessera.server")
SERVICE = pb.DESCRIPTOR.services_by_name["Tessera"].full_name


def _status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, LimitError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
    if isinstance(exc, (CorpusNotFoundError, UnknownSpaceError)):
        return grpc.StatusCode.NOT_FOUND, str(exc).strip("'\"")
    if isinstance(exc, CorpusExistsError):
        return grpc.StatusCode.ALREADY_EXISTS, str(exc)
    if isinstance(exc, CorpusError):
        return grpc.StatusCode.FAILED_PRECONDITION, str(exc)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return grpc.StatusCode.DEADLINE_EXCEEDED, "the request's deadline passed before it finished"
    if isinstance(exc, (ValueError, TypeError, json.JSONDecodeError)):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, ProtobufDecodeError):
        # A client-stream message is parsed inside the handler's loop, so protobuf's error lands here.
        return grpc.StatusCode.INVALID_ARGUMENT, f"a message in the stream is not a valid protobuf message ({exc})"
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); the server log has the details"


def _within_deadline(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else max(0.0, remaining)


def unary(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a handler under the call's deadline and turn exceptions into status codes."""

    @functools.wraps(fn)
    async def handler(self: TesseraServicer, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await asyncio.wait_for(fn(self, request, context), timeout=_within_deadline(context))
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            code, message = _status_of(exc)
            if code is grpc.StatusCode.INTERNAL:
                log.exception("unhandled error in %s", fn.__name__)
            await context.abort(code, message)

    return handler


class TesseraServicer(pb_grpc.TesseraServicer):
    def __init__(self, engine: Engine, metrics: Metrics | None = None) -> None:
        self.engine = engine
        self.metrics = metrics

    # ---- embedding -----------------------------------------------------------------------
    async def _embed(self, request: pb.EmbedRequest) -> pb.EmbedResponse:
        contents = [content_from_pb(c, f"items[{i}]") for i, c in enumerate(request.items)]
        if len(contents) > self.engine.limits.max_items_per_request:
            raise LimitError(f"{len(contents)} items; the limit is {self.engine.limits.max_items_per_request}")
        space = self.engine.space(request.space)
        vectors = await self.engine.embed_contents(space.id, contents)
        return pb.EmbedResponse(
            space_id=space.id, dim=space.dim, vectors=[vector_to_pb(v) for v in vectors], request_id=request.request_id
        )

    @unary
    async def Embed(self, request: pb.EmbedRequest, context: grpc.aio.ServicerContext) -> pb.EmbedResponse:
        return await self._embed(request)

    async def EmbedStream(
        self, request_iterator: AsyncIterator[pb.EmbedRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.EmbedResponse]:
        try:
            async for request in request_iterator:
                yield await asyncio.wait_for(self._embed(request), timeout=_within_deadline(context))
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await context.abort(*_status_of(exc))

    @unary
    async def ListSpaces(
        self, request: pb.ListSpacesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSpacesResponse:
        infos = await asyncio.to_thread(list_spaces, request.include_unavailable)
        out = []
        for info in infos:
            modalities = [MODALITY_TO_PB[Modality.parse(m.strip())] for m in info.modalities.split(",") if m.strip()]
            loaded = self.engine._spaces.get(info.name)
            out.append(
                pb.SpaceInfo(
                    name=info.name,
                    id=loaded.id if loaded else "",
                    dim=loaded.dim if loaded else 0,
                    modalities=modalities,
                    similarity=loaded.similarity if loaded else "",
                    available=info.ready,
                    note=info.note,
                )
            )
        return pb.ListSpacesResponse(spaces=out)

    # ---- corpora -------------------------------------------------------------------------
    def _corpus_info(self, name: str) -> pb.CorpusInfo:
        info = self.engine.catalog.describe(name)
        if self.metrics:
            self.metrics.corpus_items.labels(name).set(info["count"])
        return pb.CorpusInfo(
            name=info["name"],
            space_id=info["space"],
            modality=MODALITY_TO_PB[Modality.parse(info["modality"])],
            dim=info["dim"],
            count=info["count"],
            index_factory=info["index"]["factory"],
            index_searching=info["index"]["searching"],
            bytes_on_disk=info["bytes_on_disk"],
            on_gpu=info["index"]["gpu"],
            tombstones=info["index"]["tombstones"],
            similarity=info["similarity"],
        )

    @unary
    async def CreateCorpus(self, request: pb.CreateCorpusRequest, context: grpc.aio.ServicerContext) -> Any:
        index: dict[str, Any] = {"factory": request.index.factory or "auto", "use_gpu": not request.index.disable_gpu}
        if request.index.nprobe:
            index["nprobe"] = request.index.nprobe
        if request.index.ef_search:
            index["ef_search"] = request.index.ef_search
        if request.index.ef_construction:
            index["ef_construction"] = request.index.ef_construction
        modality = modality_from_pb(request.modality)
        await asyncio.to_thread(self.engine.create_corpus, request.name, request.space, modality, index)
        return pb.CreateCorpusResponse(corpus=await asyncio.to_thread(self._corpus_info, request.name))

    @unary
    async def ListCorpora(self, request: pb.ListCorporaRequest, context: grpc.aio.ServicerContext) -> Any:
        names = self.engine.catalog.names()
        return pb.ListCorporaResponse(corpora=[await asyncio.to_thread(self._corpus_info, n) for n in names])

    @unary
    async def DescribeCorpus(self, request: pb.DescribeCorpusRequest, context: grpc.aio.ServicerContext) -> Any:
        return pb.DescribeCorpusResponse(corpus=await asyncio.to_thread(self._corpus_info, request.name))

    @unary
    async def DropCorpus(self, request: pb.DropCorpusRequest, context: grpc.aio.ServicerContext) -> Any:
        await asyncio.to_thread(self.engine.catalog.drop, request.name)
        return pb.DropCorpusResponse()

    # ---- items ---------------------------------------------------------------------------
    async def Upsert(
        self, request_iterator: AsyncIterator[pb.UpsertRequest], context: grpc.aio.ServicerContext
    ) -> pb.UpsertResponse:
        corpus, upserted, batches = "", 0, 0
        try:
            async for request in request_iterator:
                corpus = request.corpus or corpus
                if not corpus:
                    raise ValueError("the first UpsertRequest must name the corpus")
                items = [self._new_item(item, f"items[{i}]") for i, item in enumerate(request.items)]
                upserted += await asyncio.wait_for(self.engine.upsert(corpus, items), timeout=_within_deadline(context))
                batches += 1
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            code, message = _status_of(exc)
            if code is grpc.StatusCode.INTERNAL:
                log.exception("unhandled error in Upsert")
            # Messages before the bad one are durable; say how many so the client can resume.
            await context.abort(code, f"{message} (after {upserted} items in {batches} messages were stored)")
        return pb.UpsertResponse(upserted=upserted, batches=batches)

    @staticmethod
    def _new_item(item: pb.Item, where: str) -> NewItem:
        if not item.id:
            raise ValueError(f"{where}: the item needs an id")
        return NewItem(
            id=item.id,
            content=content_from_pb(item.content, f"{where}.content") if item.HasField("content") else None,
            vector=vector_from_pb(item.vector, f"{where}.vector") if item.HasField("vector") else None,
            metadata=struct_to_dict(item.metadata),
            uri=item.uri or None,
        )

    @unary
    async def Get(self, request: pb.GetRequest, context: grpc.aio.ServicerContext) -> pb.GetResponse:
        corpus = self.engine.corpus(request.corpus)
        # StoredItem has no field for the media bytes, so they are not read.
        items = await asyncio.to_thread(
            corpus.get, list(request.ids), with_vectors=request.include_vectors, with_data=False
        )
        out = []
        for item in items:
            stored = pb.StoredItem(
                id=item.id, metadata=dict_to_struct(item.metadata), text=item.text or "", uri=item.uri or ""
            )
            if request.include_vectors and item.vector is not None:
                stored.vector.CopyFrom(vector_to_pb(item.vector))
            out.append(stored)
        return pb.GetResponse(items=out)

    @unary
    async def Delete(self, request: pb.DeleteRequest, context: grpc.aio.ServicerContext) -> pb.DeleteResponse:
        corpus = self.engine.corpus(request.corpus)
        has_filter = request.HasField("filter")
        if bool(request.ids) == has_filter:
            raise ValueError("Delete takes ids or a filter, not both and not neither")
        if has_filter:
            result = await asyncio.to_thread(corpus.delete, filter=struct_to_dict(request.filter))
        else:
            result = await asyncio.to_thread(corpus.delete, ids=list(request.ids))
        return pb.DeleteResponse(deleted=result.count)

    # ---- search --------------------------------------------------------------------------
    async def _search(self, request: pb.SearchRequest) -> pb.SearchResponse:
        parts = [
            (content_from_pb(p.content, f"parts[{i}].content"), p.weight or 1.0) for i, p in enumerate(request.parts)
        ]
        result = await self.engine.search(
            request.space,
            parts,
            top_k=request.top_k or 10,
            filter=struct_to_dict(request.filter) if request.HasField("filter") else None,
            corpora=list(request.corpora) or None,
            target_modalities=[modality_from_pb(m, "target_modalities") for m in request.target_modalities] or None,
            fusion=FUSION_FROM_PB.get(request.fusion, "calibrated"),
            nprobe=request.nprobe or None,
            ef_search=request.ef_search or None,
        )
        vectors: dict[tuple[str, str], Any] = {}
        if request.include_vectors:
            for name in {h.corpus for h in result.hits}:
                ids = [h.id for h in result.hits if h.corpus == name]
                found = await asyncio.to_thread(self.engine.corpus(name).get, ids, with_data=False)
                vectors.update({(name, item.id): item.vector for item in found})
        return pb.SearchResponse(
            hits=[hit_to_pb(h, vectors.get((h.corpus, h.id))) for h in result.hits],
            searched=result.searched,
            skipped=[pb.SkippedCorpus(corpus=s["corpus"], reason=s["reason"]) for s in result.skipped],
        )

    @unary
    async def Search(self, request: pb.SearchRequest, context: grpc.aio.ServicerContext) -> pb.SearchResponse:
        return await self._search(request)

    @unary
    async def BatchSearch(self, request: pb.BatchSearchRequest, context: grpc.aio.ServicerContext) -> Any:
        if len(request.queries) > self.engine.limits.max_batch_queries:
            raise LimitError(f"{len(request.queries)} queries; the limit is {self.engine.limits.max_batch_queries}")
        results = await asyncio.gather(*(self._search(q) for q in request.queries))
        return pb.BatchSearchResponse(results=results)


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

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, let in-flight calls finish, then snapshot and close every corpus."""
        await self.health.enter_graceful_shutdown()
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
    max_wait_ms: float = 5.0
    max_message_bytes: int = 64 << 20
    limits: Limits | None = None
    max_concurrent_rpcs: int | None = None
    allow_space_paths: bool = False
    grace_s: float = 10.0


def serve(options: ServeOptions) -> None:
    """`tessera serve`: run until SIGTERM/SIGINT, then drain calls and snapshot every corpus."""
    from .auth import KeyStore, load_keys
    from .logs import configure

    configure()
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
        )
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
        print(f"tessera serving on {options.host}:{running.port} (data: {options.data_dir})", flush=True)
        await serve_forever(running, options.grace_s)

    asyncio.run(main())
