"""The Tessera API on an Engine, in protobuf messages, with no transport attached.

`Service` answers each RPC of `tessera.v1.Tessera` as a coroutine (request in,
response out) and raises plain exceptions. Two transports call it: the gRPC
server (`server.py`, which adds deadlines, auth and metrics) and the embedded
client (`local.py`, which runs it in the caller's process). Both turn an
exception into a status with `status_of`, so an embedded caller and a remote
one see the same code and message for the same bad request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from google.protobuf.message import DecodeError as ProtobufDecodeError

from tessera.embedder import Modality, UnknownSpaceError, list_spaces
from tessera.embedder.errors import WeightsUnavailableError
from tessera.embedder.quoting import quote
from tessera.index.catalog import CorpusExistsError, CorpusNotFoundError
from tessera.index.corpus import CorpusError
from tessera.index.dirlock import DataDirLockedError
from tessera.index.diskspace import DiskFullError, DiskGuard, is_disk_full
from tessera.index.integrity import CorpusDamagedError
from tessera.index.milvus_store import MilvusUnavailableError
from tessera.v1 import tessera_pb2 as pb

from .convert import content_from_pb, hit_to_pb
from .engine import Engine, LimitError, NewItem
from .wire import (
    MODALITY_TO_PB,
    dict_to_struct,
    fusion_from_pb,
    modality_from_pb,
    struct_to_dict,
    vector_from_pb,
    vector_to_pb,
)

if TYPE_CHECKING:
    from .metrics import Metrics

INTERNAL = "INTERNAL"
_MODALITY_VALUES = frozenset(m.value for m in Modality)


class StatusError(Exception):
    """An error that already knows its status, e.g. an Upsert failure that says how much was stored."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# A message longer than this is cut: gRPC carries it in trailing metadata (8 KiB by default), and an
# oversized one reaches the client as RESOURCE_EXHAUSTED about metadata instead of the real status.
MAX_MESSAGE_CHARS = 1000


def status_of(exc: BaseException) -> tuple[str, str]:
    """(gRPC status name, message) for an exception raised while answering a request."""
    code, message = _status_of(exc)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 40] + f"... (message cut from {len(message)} chars)"
    return code, message


def _status_of(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, StatusError):
        return exc.code, exc.message
    if isinstance(exc, LimitError):
        return "RESOURCE_EXHAUSTED", str(exc)
    if isinstance(exc, DiskFullError):
        return "RESOURCE_EXHAUSTED", str(exc)
    if isinstance(exc, (CorpusNotFoundError, UnknownSpaceError)):
        return "NOT_FOUND", str(exc).strip("'\"")
    if isinstance(exc, CorpusExistsError):
        return "ALREADY_EXISTS", str(exc)
    if isinstance(exc, CorpusDamagedError):  # before CorpusError: a damaged file, named relative to the corpus
        return "DATA_LOSS", str(exc)
    if isinstance(exc, (CorpusError, DataDirLockedError, WeightsUnavailableError)):
        return "FAILED_PRECONDITION", str(exc)
    if isinstance(exc, MilvusUnavailableError):  # the store behind a milvus corpus; retrying may work
        return "UNAVAILABLE", str(exc)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "DEADLINE_EXCEEDED", "the request's deadline passed before it finished"
    if isinstance(exc, (ValueError, TypeError, json.JSONDecodeError)):
        return "INVALID_ARGUMENT", str(exc)
    if isinstance(exc, ProtobufDecodeError):
        # A client-stream message is parsed inside the handler's loop, so protobuf's error lands here.
        return "INVALID_ARGUMENT", f"a message in the stream is not a valid protobuf message ({exc})"
    if is_disk_full(exc):
        # Last, so no other error is taken for one: a full disk met where no write site named the directory.
        filename = getattr(exc, "filename", None)
        if filename:
            guard = DiskGuard(Path(filename).parent, label="directory")
            return "RESOURCE_EXHAUSTED", str(guard.refusal(exc, "a write"))
        return "RESOURCE_EXHAUSTED", f"a write failed for lack of disk space ({exc}); free some space and retry"
    return INTERNAL, f"internal error ({type(exc).__name__}); the server log has the details"


class Service:
    """One coroutine per RPC; `metrics`, when given, keeps the per-corpus item gauge current."""

    def __init__(self, engine: Engine, metrics: Metrics | None = None) -> None:
        self.engine = engine
        self.metrics = metrics

    # ---- embedding -----------------------------------------------------------------------
    async def Embed(self, request: pb.EmbedRequest) -> pb.EmbedResponse:
        contents = [content_from_pb(c, f"items[{i}]") for i, c in enumerate(request.items)]
        if len(contents) > self.engine.limits.max_items_per_request:
            raise LimitError(f"{len(contents)} items; the limit is {self.engine.limits.max_items_per_request}")
        space = self.engine.space(request.space)
        vectors = await self.engine.embed_contents(space.id, contents)
        return pb.EmbedResponse(
            space_id=space.id, dim=space.dim, vectors=[vector_to_pb(v) for v in vectors], request_id=request.request_id
        )

    async def ListSpaces(self, request: pb.ListSpacesRequest) -> pb.ListSpacesResponse:
        infos = await asyncio.to_thread(list_spaces, request.include_unavailable, self.engine.spaces_dir)
        out = []
        for info in infos:
            if info.is_template:
                continue  # "vectors:<dim>" and the like are families of names, not spaces with an id and a dim
            modalities = [MODALITY_TO_PB[Modality.parse(m.strip())] for m in info.modalities.split(",") if m.strip()]
            out.append(
                pb.SpaceInfo(
                    name=info.name,
                    id=info.id,
                    dim=info.dim,
                    modalities=modalities,
                    similarity=info.similarity,
                    available=info.ready,
                    note=info.note,
                )
            )
        return pb.ListSpacesResponse(spaces=out)

    # ---- corpora -------------------------------------------------------------------------
    def _corpus_info(self, name: str) -> pb.CorpusInfo:
        info = self.engine.catalog.describe(name)
        if info.get("damaged"):  # listed with what its manifest still says, and why it is not served
            modality = info.get("modality")
            return pb.CorpusInfo(
                name=info["name"],
                space_id=info["space"],
                modality=MODALITY_TO_PB.get(Modality(modality), 0) if modality in _MODALITY_VALUES else 0,
                dim=info["dim"],
                similarity=info["similarity"],
                damaged=True,
                damage=info["damage"],
            )
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
            index_state=info["index"]["state"],
            index_note=info["index"]["note"],
            similarity=info["similarity"],
            backend=info["backend"],
        )

    async def CreateCorpus(self, request: pb.CreateCorpusRequest) -> pb.CreateCorpusResponse:
        index: dict[str, Any] = {"factory": request.index.factory or "auto", "use_gpu": not request.index.disable_gpu}
        if request.index.nprobe:
            index["nprobe"] = request.index.nprobe
        if request.index.ef_search:
            index["ef_search"] = request.index.ef_search
        if request.index.ef_construction:
            index["ef_construction"] = request.index.ef_construction
        modality = modality_from_pb(request.modality)
        backend = request.backend or None
        await asyncio.to_thread(self.engine.create_corpus, request.name, request.space, modality, index, backend)
        return pb.CreateCorpusResponse(corpus=await asyncio.to_thread(self._corpus_info, request.name))

    async def ListCorpora(self, request: pb.ListCorporaRequest) -> pb.ListCorporaResponse:
        names = self.engine.catalog.names()
        return pb.ListCorporaResponse(corpora=[await asyncio.to_thread(self._corpus_info, n) for n in names])

    async def DescribeCorpus(self, request: pb.DescribeCorpusRequest) -> pb.DescribeCorpusResponse:
        return pb.DescribeCorpusResponse(corpus=await asyncio.to_thread(self._corpus_info, request.name))

    async def DropCorpus(self, request: pb.DropCorpusRequest) -> pb.DropCorpusResponse:
        await asyncio.to_thread(self.engine.catalog.drop, request.name)
        return pb.DropCorpusResponse()

    # ---- items ---------------------------------------------------------------------------
    async def Upsert(
        self, requests: AsyncIterator[pb.UpsertRequest], timeout: float | None = None
    ) -> pb.UpsertResponse:
        """Each message is stored (durably) before the next is read; a failure says how much was stored."""
        corpus, upserted, batches = "", 0, 0
        try:
            async for request in requests:
                if request.corpus and corpus and request.corpus != corpus:
                    raise ValueError(
                        f"message {batches + 1} of this Upsert stream names corpus {quote(request.corpus)}, but the "
                        f"stream writes to {quote(corpus)}; one stream writes one corpus: open another for another"
                    )
                corpus = request.corpus or corpus
                if not corpus:
                    raise ValueError("the first UpsertRequest must name the corpus")
                items = [self._new_item(item, f"items[{i}]") for i, item in enumerate(request.items)]
                upserted += await asyncio.wait_for(self.engine.upsert(corpus, items), timeout=timeout)
                batches += 1
        except Exception as exc:
            code, message = status_of(exc)
            if code == INTERNAL:
                raise
            # Messages before the bad one are durable; say how many so the client can resume.
            raise StatusError(code, f"{message} (after {upserted} items in {batches} messages were stored)") from exc
        return pb.UpsertResponse(upserted=upserted, batches=batches)

    @staticmethod
    def _new_item(item: pb.Item, where: str) -> NewItem:
        if not item.id:
            raise ValueError(f"{where}: the item needs an id")
        return NewItem(
            id=item.id,
            content=content_from_pb(item.content, f"{where}.content", unspecified_ok=True)
            if item.HasField("content")
            else None,
            vector=vector_from_pb(item.vector, f"{where}.vector") if item.HasField("vector") else None,
            metadata=struct_to_dict(item.metadata),
            uri=item.uri or None,
        )

    async def Get(self, request: pb.GetRequest) -> pb.GetResponse:
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

    async def Delete(self, request: pb.DeleteRequest) -> pb.DeleteResponse:
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
    async def Search(self, request: pb.SearchRequest) -> pb.SearchResponse:
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
            fusion=fusion_from_pb(request.fusion),
            nprobe=request.nprobe or None,
            ef_search=request.ef_search or None,
            with_vectors=request.include_vectors,
        )
        return pb.SearchResponse(
            hits=[hit_to_pb(h) for h in result.hits],
            searched=result.searched,
            skipped=[pb.SkippedCorpus(corpus=s["corpus"], reason=s["reason"]) for s in result.skipped],
        )

    async def BatchSearch(self, request: pb.BatchSearchRequest) -> pb.BatchSearchResponse:
        if len(request.queries) > self.engine.limits.max_batch_queries:
            raise LimitError(f"{len(request.queries)} queries; the limit is {self.engine.limits.max_batch_queries}")
        results = await asyncio.gather(*(self.Search(q) for q in request.queries))
        return pb.BatchSearchResponse(results=results)


UNARY_METHODS = (
    "Embed",
    "ListSpaces",
    "CreateCorpus",
    "ListCorpora",
    "DescribeCorpus",
    "DropCorpus",
    "Get",
    "Delete",
    "Search",
    "BatchSearch",
)

__all__ = ["UNARY_METHODS", "Service", "StatusError", "status_of"]
