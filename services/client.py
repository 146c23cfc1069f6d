"""Python clients for a Tessera server, sync (`TesseraClient`) and async (`AsyncTesseraClient`).

numpy in, numpy out. Calls that fail with UNAVAILABLE are retried with
exponential backoff by gRPC's own retry policy (set in the channel's service
config). API keys travel as `x-api-key` metadata; TLS takes a CA bundle and,
for mutual TLS, a client certificate and key.

    with TesseraClient("127.0.0.1:50051") as client:
        vectors = client.embed(["a red bicycle"], space="minilm")
        client.create_corpus("docs", space="minilm", modality="text")
        client.upsert("docs", [{"id": "1", "text": "a red bicycle", "metadata": {"year": 2020}}])
        hits = client.search("bicycle", space="minilm", top_k=5).hits
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tessera.embedder.modality import Modality
from tessera.v1 import tessera_pb2 as pb
from tessera.v1 import tessera_pb2_grpc as pb_grpc
from tqdm.auto import tqdm

from .wire import MODALITY_TO_PB, PB_TO_MODALITY, dict_to_struct, struct_to_dict, vector_from_pb, vector_to_pb

DEFAULT_ADDRESS = "127.0.0.1:50051"
FUSIONS = {"calibrated": pb.FUSION_CALIBRATED, "pair": pb.FUSION_PAIR, "rrf": pb.FUSION_RRF, "raw": pb.FUSION_RAW}
RETRY_POLICY = {
    "methodConfig": [
        {
            "name": [{"service": "tessera.v1.Tessera"}, {"service": "grpc.health.v1.Health"}],
            "retryPolicy": {
                "maxAttempts": 5,
                "initialBackoff": "0.1s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}


@dataclass
class Hit:
    id: str
    corpus: str
    modality: str
    score: float
    raw_score: float
    calibrated_score: float
    metadata: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    uri: str = ""
    vector: np.ndarray | None = None


@dataclass
class SearchResult:
    hits: list[Hit]
    searched: list[str]
    skipped: list[tuple[str, str]]


# ---- message building, shared by both clients --------------------------------------------
def content_message(modality: Modality | str, value: Any) -> pb.Content:
    modality = Modality.parse(modality)
    if isinstance(value, np.ndarray) or modality is Modality.VECTOR:
        return pb.Content(modality=pb.MODALITY_VECTOR, vector=vector_to_pb(value))
    if isinstance(value, Path):
        value = value.read_bytes()
    if isinstance(value, str):
        return pb.Content(modality=MODALITY_TO_PB[modality], text=value)
    return pb.Content(modality=MODALITY_TO_PB[modality], data=bytes(value))


QueryParts = str | Sequence[tuple[Any, ...]]


def search_request(
    query: QueryParts,
    *,
    space: str,
    top_k: int = 10,
    filter: dict[str, Any] | None = None,
    corpora: Sequence[str] | None = None,
    target_modalities: Sequence[str] | None = None,
    fusion: str = "calibrated",
    nprobe: int | None = None,
    ef_search: int | None = None,
    include_vectors: bool = False,
) -> pb.SearchRequest:
    """`query` is text, or parts: (modality, value) or (modality, value, weight) tuples."""
    parts = [("text", query)] if isinstance(query, str) else list(query)
    request = pb.SearchRequest(
        space=space,
        parts=[pb.QueryPart(content=content_message(p[0], p[1]), weight=p[2] if len(p) > 2 else 1.0) for p in parts],
        top_k=top_k,
        corpora=list(corpora or []),
        target_modalities=[MODALITY_TO_PB[Modality.parse(m)] for m in target_modalities or []],
        fusion=FUSIONS[fusion],
        nprobe=nprobe or 0,
        ef_search=ef_search or 0,
        include_vectors=include_vectors,
    )
    if filter is not None:
        request.filter.CopyFrom(dict_to_struct(filter))
    return request


def search_result(response: pb.SearchResponse) -> SearchResult:
    hits = [
        Hit(
            id=h.id,
            corpus=h.corpus,
            modality=PB_TO_MODALITY[h.modality].value,
            score=h.score,
            raw_score=h.raw_score,
            calibrated_score=h.calibrated_score,
            metadata=struct_to_dict(h.metadata),
            text=h.text,
            uri=h.uri,
            vector=vector_from_pb(h.vector, "hit.vector") if h.HasField("vector") else None,
        )
        for h in response.hits
    ]
    return SearchResult(hits, list(response.searched), [(s.corpus, s.reason) for s in response.skipped])


def item_message(item: dict[str, Any] | Any, modality: str | None) -> pb.Item:
    """A dict with id and one of vector / text / data / path, plus optional metadata and uri."""
    if not isinstance(item, dict):
        item = {k: getattr(item, k) for k in ("id", "vector", "text", "data", "uri", "metadata") if hasattr(item, k)}
    message = pb.Item(id=str(item["id"]), uri=item.get("uri") or "")
    if item.get("vector") is not None:
        message.vector.CopyFrom(vector_to_pb(item["vector"]))
    for key in ("text", "data", "path"):
        if item.get(key) is not None:
            message.content.CopyFrom(content_message(item.get("modality") or modality or "text", item[key]))
            break
    if item.get("metadata"):
        message.metadata.CopyFrom(dict_to_struct(item["metadata"]))
    return message


def embed_vectors(response: pb.EmbedResponse) -> np.ndarray:
    if not response.vectors:
        return np.empty((0, response.dim), dtype=np.float32)
    return np.stack([vector_from_pb(v, f"vectors[{i}]") for i, v in enumerate(response.vectors)])


def embed_request(inputs: Sequence[Any], modality: str, space: str) -> pb.EmbedRequest:
    return pb.EmbedRequest(space=space, items=[content_message(modality, x) for x in inputs])


def corpus_dict(info: pb.CorpusInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "space": info.space_id,
        "modality": PB_TO_MODALITY[info.modality].value,
        "dim": info.dim,
        "count": info.count,
        "index": info.index_factory,
        "searching": info.index_searching,
        "bytes_on_disk": info.bytes_on_disk,
        "on_gpu": info.on_gpu,
        "tombstones": info.tombstones,
        "similarity": info.similarity,
    }


def create_request(
    name: str,
    space: str,
    modality: str,
    factory: str,
    nprobe: int | None,
    ef_search: int | None,
    ef_construction: int | None = None,
) -> Any:
    return pb.CreateCorpusRequest(
        name=name,
        space=space,
        modality=MODALITY_TO_PB[Modality.parse(modality)],
        index=pb.IndexConfig(
            factory=factory, nprobe=nprobe or 0, ef_search=ef_search or 0, ef_construction=ef_construction or 0
        ),
    )


def upsert_messages(
    corpus: str, items: Iterable[Any], modality: str | None, batch_size: int, bar: tqdm | None
) -> Iterator[pb.UpsertRequest]:
    batch: list[pb.Item] = []
    first = True
    for item in items:
        batch.append(item_message(item, modality))
        if len(batch) >= batch_size:
            yield pb.UpsertRequest(corpus=corpus if first else "", items=batch)
            if bar is not None:
                bar.update(len(batch))
            first, batch = False, []
    if batch or first:
        yield pb.UpsertRequest(corpus=corpus, items=batch)
        if bar is not None:
            bar.update(len(batch))


def parquet_items(
    path: str | Path,
    id_column: str,
    vector_column: str | None,
    text_column: str | None,
    metadata_columns: Sequence[str] | None,
    batch_rows: int = 4096,
) -> Iterator[dict[str, Any]]:
    """Stream rows of a Parquet file (e.g. `tessera embed` output) as upsert items."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    names = parquet.schema_arrow.names
    if vector_column is None and "vector" in names:
        vector_column = "vector"
    meta = (
        list(metadata_columns)
        if metadata_columns is not None
        else [n for n in names if n not in (id_column, vector_column, text_column)]
    )
    for batch in parquet.iter_batches(batch_size=batch_rows):
        columns = batch.to_pydict()
        for row in range(batch.num_rows):
            item: dict[str, Any] = {"id": str(columns[id_column][row])}
            if vector_column:
                item["vector"] = np.asarray(columns[vector_column][row], dtype=np.float32)
            if text_column:
                item["text"] = columns[text_column][row]
            item["metadata"] = {m: columns[m][row] for m in meta if columns[m][row] is not None}
            yield item


def _channel_args(address: str, api_key: str | None, max_message_bytes: int) -> tuple[list[tuple[str, Any]], Any]:
    options = [
        ("grpc.service_config", json.dumps(RETRY_POLICY)),
        ("grpc.enable_retries", 1),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]
    metadata = (("x-api-key", api_key),) if api_key else None
    return options, metadata


def _credentials(tls_ca: str | Path | None, tls_cert: str | Path | None, tls_key: str | Path | None) -> Any:
    read = lambda p: Path(p).read_bytes() if p else None  # noqa: E731
    return grpc.ssl_channel_credentials(read(tls_ca), read(tls_key), read(tls_cert))


# ---- the clients --------------------------------------------------------------------------
class TesseraClient:
    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        api_key: str | None = None,
        tls: bool = False,
        tls_ca: str | Path | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        timeout: float | None = 60.0,
        max_message_bytes: int = 64 << 20,
    ) -> None:
        options, self._metadata = _channel_args(address, api_key, max_message_bytes)
        if tls or tls_ca or tls_cert:
            self.channel = grpc.secure_channel(address, _credentials(tls_ca, tls_cert, tls_key), options=options)
        else:
            self.channel = grpc.insecure_channel(address, options=options)
        self.stub = pb_grpc.TesseraStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)
        self.timeout = timeout

    def _call(self, method: Any, request: Any, timeout: float | None = None) -> Any:
        return method(request, timeout=timeout or self.timeout, metadata=self._metadata)

    def health(self, service: str = "") -> str:
        response = self._call(self.health_stub.Check, health_pb2.HealthCheckRequest(service=service))
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def wait_ready(self, timeout: float = 30.0) -> None:
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    def embed(self, inputs: Sequence[Any], *, modality: str = "text", space: str = "minilm") -> np.ndarray:
        return embed_vectors(self._call(self.stub.Embed, embed_request(inputs, modality, space)))

    def embed_stream(
        self, batches: Iterable[Sequence[Any]], *, modality: str = "text", space: str = "minilm"
    ) -> Iterator[np.ndarray]:
        """One bidirectional stream: each batch of inputs sent yields its vectors, in order."""
        requests = (embed_request(batch, modality, space) for batch in batches)
        for response in self.stub.EmbedStream(requests, timeout=None, metadata=self._metadata):
            yield embed_vectors(response)

    def list_spaces(self) -> list[dict[str, Any]]:
        response = self._call(self.stub.ListSpaces, pb.ListSpacesRequest())
        return [
            {
                "name": s.name,
                "available": s.available,
                "note": s.note,
                "modalities": [PB_TO_MODALITY[m].value for m in s.modalities],
            }
            for s in response.spaces
        ]

    def create_corpus(
        self,
        name: str,
        *,
        space: str,
        modality: str,
        factory: str = "auto",
        nprobe: int | None = None,
        ef_search: int | None = None,
        ef_construction: int | None = None,
    ) -> dict[str, Any]:
        request = create_request(name, space, modality, factory, nprobe, ef_search, ef_construction)
        return corpus_dict(self._call(self.stub.CreateCorpus, request).corpus)

    def list_corpora(self) -> list[dict[str, Any]]:
        return [corpus_dict(c) for c in self._call(self.stub.ListCorpora, pb.ListCorporaRequest()).corpora]

    def describe_corpus(self, name: str) -> dict[str, Any]:
        return corpus_dict(self._call(self.stub.DescribeCorpus, pb.DescribeCorpusRequest(name=name)).corpus)

    def drop_corpus(self, name: str) -> None:
        self._call(self.stub.DropCorpus, pb.DropCorpusRequest(name=name))

    def upsert(
        self,
        corpus: str,
        items: Iterable[Any],
        *,
        modality: str | None = None,
        batch_size: int = 256,
        progress: bool = False,
        total: int | None = None,
    ) -> int:
        """Stream items (dicts with id and vector, text, data or path) in messages of `batch_size`."""
        bar = tqdm(total=total, unit="item", desc=f"upsert {corpus}") if progress else None
        try:
            messages = upsert_messages(corpus, items, modality, batch_size, bar)
            return self.stub.Upsert(messages, timeout=None, metadata=self._metadata).upserted
        finally:
            if bar is not None:
                bar.close()

    def upsert_parquet(
        self,
        corpus: str,
        path: str | Path,
        *,
        id_column: str = "id",
        vector_column: str | None = None,
        text_column: str | None = None,
        metadata_columns: Sequence[str] | None = None,
        batch_size: int = 256,
        progress: bool = True,
    ) -> int:
        import pyarrow.parquet as pq

        total = pq.ParquetFile(path).metadata.num_rows
        items = parquet_items(path, id_column, vector_column, text_column, metadata_columns)
        return self.upsert(corpus, items, batch_size=batch_size, progress=progress, total=total)

    def get(self, corpus: str, ids: Sequence[str], *, include_vectors: bool = False) -> list[dict[str, Any]]:
        response = self._call(
            self.stub.Get, pb.GetRequest(corpus=corpus, ids=list(ids), include_vectors=include_vectors)
        )
        return [
            {
                "id": i.id,
                "metadata": struct_to_dict(i.metadata),
                "text": i.text,
                "uri": i.uri,
                "vector": vector_from_pb(i.vector, "item.vector") if i.HasField("vector") else None,
            }
            for i in response.items
        ]

    def delete(self, corpus: str, *, ids: Sequence[str] | None = None, filter: dict[str, Any] | None = None) -> int:
        request = pb.DeleteRequest(corpus=corpus, ids=list(ids or []))
        if filter is not None:
            request.filter.CopyFrom(dict_to_struct(filter))
        return self._call(self.stub.Delete, request).deleted

    def search(self, query: QueryParts, *, space: str, timeout: float | None = None, **options: Any) -> SearchResult:
        return search_result(self._call(self.stub.Search, search_request(query, space=space, **options), timeout))

    def batch_search(self, queries: Sequence[QueryParts], *, space: str, **options: Any) -> list[SearchResult]:
        request = pb.BatchSearchRequest(queries=[search_request(q, space=space, **options) for q in queries])
        return [search_result(r) for r in self._call(self.stub.BatchSearch, request).results]

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> TesseraClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncTesseraClient:
    """The same calls as TesseraClient, awaitable (grpc.aio)."""

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        api_key: str | None = None,
        tls: bool = False,
        tls_ca: str | Path | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        timeout: float | None = 60.0,
        max_message_bytes: int = 64 << 20,
    ) -> None:
        options, self._metadata = _channel_args(address, api_key, max_message_bytes)
        if tls or tls_ca or tls_cert:
            self.channel = grpc.aio.secure_channel(address, _credentials(tls_ca, tls_cert, tls_key), options=options)
        else:
            self.channel = grpc.aio.insecure_channel(address, options=options)
        self.stub = pb_grpc.TesseraStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)
        self.timeout = timeout

    async def _call(self, method: Any, request: Any, timeout: float | None = None) -> Any:
        return await method(request, timeout=timeout or self.timeout, metadata=self._metadata)

    async def health(self, service: str = "") -> str:
        response = await self._call(self.health_stub.Check, health_pb2.HealthCheckRequest(service=service))
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    async def embed(self, inputs: Sequence[Any], *, modality: str = "text", space: str = "minilm") -> np.ndarray:
        return embed_vectors(await self._call(self.stub.Embed, embed_request(inputs, modality, space)))

    async def create_corpus(
        self,
        name: str,
        *,
        space: str,
        modality: str,
        factory: str = "auto",
        nprobe: int | None = None,
        ef_search: int | None = None,
        ef_construction: int | None = None,
    ) -> dict[str, Any]:
        request = create_request(name, space, modality, factory, nprobe, ef_search, ef_construction)
        return corpus_dict((await self._call(self.stub.CreateCorpus, request)).corpus)

    async def list_corpora(self) -> list[dict[str, Any]]:
        return [corpus_dict(c) for c in (await self._call(self.stub.ListCorpora, pb.ListCorporaRequest())).corpora]

    async def upsert(
        self, corpus: str, items: Iterable[Any], *, modality: str | None = None, batch_size: int = 256
    ) -> int:
        messages = list(upsert_messages(corpus, items, modality, batch_size, None))
        return (await self.stub.Upsert(iter(messages), metadata=self._metadata)).upserted

    async def search(
        self, query: QueryParts, *, space: str, timeout: float | None = None, **options: Any
    ) -> SearchResult:
        request = search_request(query, space=space, **options)
        return search_result(await self._call(self.stub.Search, request, timeout))

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncTesseraClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
