"""Client-side: Python values to request messages and responses to Python values.

Shared by the remote and the embedded client, so both send the embedded engine exactly what a
server would receive. Nothing here loads a model or opens an index (no torch, FAISS or pyarrow).
A value the client cannot turn into a message raises `InvalidArgument` naming the item and what
to fix, before anything is sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tessera.embedder.modality import Modality
from tessera.index.fusion import Fusion
from tessera.v1 import tessera_pb2 as pb

from .errors import InvalidArgument
from .wire import (
    FUSION_TO_PB,
    MODALITY_TO_PB,
    PB_TO_MODALITY,
    dict_to_struct,
    struct_to_dict,
    vector_from_pb,
    vector_to_pb,
)

ITEM_KEYS = ("id", "vector", "text", "data", "path", "uri", "metadata", "modality")


@dataclass
class Hit:
    """One search result: which item, from which corpus, and how it scored.

    `score` is what the ranking used (the calibrated score under the default fusion);
    `raw_score` is the corpus's own similarity; `vector` is set when the search asked for it.
    """

    id: str
    corpus: str
    modality: Modality
    score: float
    raw_score: float
    calibrated_score: float
    metadata: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    uri: str = ""
    vector: np.ndarray | None = None


@dataclass
class SearchResult:
    """The hits, best first; the corpora searched; and (corpus, reason) for each corpus skipped."""

    hits: list[Hit]
    searched: list[str]
    skipped: list[tuple[str, str]]

    def __len__(self) -> int:
        return len(self.hits)

    def __iter__(self) -> Iterator[Hit]:
        return iter(self.hits)


def _modality(value: Modality | str, where: str) -> Modality:
    try:
        return Modality.parse(value)
    except ValueError as exc:
        raise InvalidArgument(f"{where}: {exc}") from None


def content_message(modality: Modality | str | None, value: Any, where: str = "content") -> pb.Content:
    """`modality` None (upserts only) leaves it to the corpus: the server uses the corpus's modality."""
    if modality is None and isinstance(value, str):
        modality = Modality.TEXT
    modality = _modality(modality, where) if modality is not None else None
    if isinstance(value, np.ndarray) or modality is Modality.VECTOR:
        return pb.Content(modality=pb.MODALITY_VECTOR, vector=vector_to_pb(value))
    if isinstance(value, Path):
        try:
            value = value.read_bytes()
        except OSError as exc:
            raise InvalidArgument(f"{where}: cannot read {str(value)[:200]!r} ({exc.strerror or exc})") from exc
    code = MODALITY_TO_PB[modality] if modality is not None else pb.MODALITY_UNSPECIFIED
    if isinstance(value, str):
        return pb.Content(modality=code, text=value)
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise InvalidArgument(
            f"{where}: give a str, bytes, a pathlib.Path or a numpy vector, not {type(value).__name__}"
        )
    return pb.Content(modality=code, data=bytes(value))


# A query is text, or parts: (modality, value) or (modality, value, weight) tuples.
QueryParts = str | Sequence[tuple[Any, ...]]


def query_parts(query: QueryParts) -> list[pb.QueryPart]:
    parts = [("text", query)] if isinstance(query, str) else list(query)
    out = []
    for i, part in enumerate(parts):
        if not isinstance(part, (tuple, list)) or len(part) not in (2, 3):
            raise InvalidArgument(
                f"query part {i}: give (modality, value) or (modality, value, weight), got {str(part)[:80]!r}"
            )
        weight = float(part[2]) if len(part) > 2 else 1.0
        out.append(pb.QueryPart(content=content_message(part[0], part[1], f"query part {i}"), weight=weight))
    return out


def filter_struct(filter: dict[str, Any], where: str = "filter") -> Any:
    if not isinstance(filter, dict):
        raise InvalidArgument(
            f"{where}: give a dict such as {{'year': {{'range': {{'gte': 2020}}}}}}, not {type(filter).__name__}"
        )
    try:
        return dict_to_struct(filter)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"{where}: {exc}: {str(filter)[:120]}") from None


def search_request(
    query: QueryParts,
    *,
    space: str | None = None,
    top_k: int = 10,
    filter: dict[str, Any] | None = None,
    corpora: Sequence[str] | None = None,
    target_modalities: Sequence[str] | None = None,
    fusion: Fusion | str = Fusion.CALIBRATED,
    nprobe: int | None = None,
    ef_search: int | None = None,
    include_vectors: bool = False,
) -> pb.SearchRequest:
    if isinstance(corpora, str):
        corpora = [corpora]
    try:
        fusion = Fusion.parse(fusion)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise InvalidArgument(f"top_k must be a positive integer, got {top_k!r}")
    request = pb.SearchRequest(
        space=space or "",
        parts=query_parts(query),
        top_k=int(top_k),
        corpora=list(corpora or []),
        target_modalities=[MODALITY_TO_PB[_modality(m, "target_modalities")] for m in target_modalities or []],
        fusion=FUSION_TO_PB[fusion],
        nprobe=nprobe or 0,
        ef_search=ef_search or 0,
        include_vectors=include_vectors,
    )
    if filter is not None:
        request.filter.CopyFrom(filter_struct(filter))
    return request


def search_result(response: pb.SearchResponse) -> SearchResult:
    hits = [
        Hit(
            id=h.id,
            corpus=h.corpus,
            modality=PB_TO_MODALITY[h.modality],
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


def item_message(item: dict[str, Any] | Any, modality: str | None, position: int = 0) -> pb.Item:
    """A dict (or object) with id and one of vector / text / data / path, plus optional metadata and uri."""
    if not isinstance(item, dict):
        item = {k: getattr(item, k) for k in ITEM_KEYS if hasattr(item, k)}
    where = f"item {position}" + (f" (id {str(item['id'])[:60]!r})" if item.get("id") not in (None, "") else "")
    if item.get("id") in (None, ""):
        raise InvalidArgument(f"{where}: every item needs an 'id'; got keys {sorted(item)[:10]}")
    unknown = sorted(set(item) - set(ITEM_KEYS))
    if unknown:
        raise InvalidArgument(
            f"{where}: unknown keys {unknown[:5]}; an item takes {', '.join(ITEM_KEYS)} "
            "(put other fields in 'metadata')"
        )
    message = pb.Item(id=str(item["id"]), uri=item.get("uri") or "")
    if item.get("vector") is not None:
        message.vector.CopyFrom(vector_to_pb(item["vector"]))
    for key in ("text", "data", "path"):
        if item.get(key) is not None:
            value = Path(item[key]) if key == "path" else item[key]
            message.content.CopyFrom(content_message(item.get("modality") or modality, value, where))
            break
    if item.get("metadata"):
        message.metadata.CopyFrom(filter_struct(item["metadata"], f"{where}.metadata"))
    return message


def embed_vectors(response: pb.EmbedResponse) -> np.ndarray:
    if not response.vectors:
        return np.empty((0, response.dim), dtype=np.float32)
    return np.stack([vector_from_pb(v, f"vectors[{i}]") for i, v in enumerate(response.vectors)])


def embed_request(inputs: Sequence[Any], modality: str, space: str) -> pb.EmbedRequest:
    if isinstance(inputs, (str, bytes)):
        raise InvalidArgument("embed takes a list of inputs; wrap a single one in a list: embed([text])")
    return pb.EmbedRequest(
        space=space, items=[content_message(modality, x, f"input {i}") for i, x in enumerate(inputs)]
    )


def corpus_dict(info: pb.CorpusInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "space": info.space_id,
        # A damaged corpus whose manifest is lost may not know its modality any more.
        "modality": PB_TO_MODALITY[info.modality].value if info.modality in PB_TO_MODALITY else "unknown",
        "dim": info.dim,
        "count": info.count,
        "index": info.index_factory,
        "searching": info.index_searching,
        "bytes_on_disk": info.bytes_on_disk,
        "on_gpu": info.on_gpu,
        "tombstones": info.tombstones,
        "similarity": info.similarity,
        "index_state": info.index_state,
        "index_note": info.index_note,
        "backend": info.backend,  # "local" or "milvus"
        "damaged": info.damaged,  # its files are damaged: it is listed, and every other call answers DATA_LOSS
        "damage": info.damage,
    }


def spaces_list(response: pb.ListSpacesResponse) -> list[dict[str, Any]]:
    return [
        {
            "name": s.name,
            "available": s.available,
            "note": s.note,
            "modalities": [PB_TO_MODALITY[m].value for m in s.modalities],
        }
        for s in response.spaces
    ]


def stored_items(response: pb.GetResponse) -> list[dict[str, Any]]:
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


def create_request(
    name: str,
    space: str,
    modality: str,
    index: str,
    nprobe: int | None,
    ef_search: int | None,
    ef_construction: int | None = None,
    backend: str | None = None,
) -> pb.CreateCorpusRequest:
    return pb.CreateCorpusRequest(
        name=name,
        backend=backend or "",
        space=space,
        modality=MODALITY_TO_PB[_modality(modality, "modality")],
        index=pb.IndexConfig(
            factory=index, nprobe=nprobe or 0, ef_search=ef_search or 0, ef_construction=ef_construction or 0
        ),
    )


def delete_request(corpus: str, ids: Sequence[str] | None, filter: dict[str, Any] | None) -> pb.DeleteRequest:
    if isinstance(ids, str):
        ids = [ids]
    request = pb.DeleteRequest(corpus=corpus, ids=list(ids or []))
    if filter is not None:
        request.filter.CopyFrom(filter_struct(filter))
    return request


def get_request(corpus: str, ids: Sequence[str], include_vectors: bool) -> pb.GetRequest:
    if isinstance(ids, str):
        ids = [ids]
    return pb.GetRequest(corpus=corpus, ids=list(ids), include_vectors=include_vectors)


def upsert_messages(
    corpus: str, items: Iterable[Any], modality: str | None, batch_size: int, progress: Any = None
) -> Iterator[pb.UpsertRequest]:
    """Items in messages of `batch_size`; `progress` (a tqdm bar) advances as each message is built."""
    if isinstance(items, dict):
        raise InvalidArgument("upsert takes a list of items; wrap a single item in a list")
    batch: list[pb.Item] = []
    first = True
    for position, item in enumerate(items):
        batch.append(item_message(item, modality, position))
        if len(batch) >= batch_size:
            yield pb.UpsertRequest(corpus=corpus if first else "", items=batch)
            if progress is not None:
                progress.update(len(batch))
            first, batch = False, []
    if batch or first:
        yield pb.UpsertRequest(corpus=corpus, items=batch)
        if progress is not None:
            progress.update(len(batch))


def parquet_items(
    path: str | Path,
    id_column: str,
    vector_column: str | None,
    text_column: str | None,
    metadata_columns: Sequence[str] | None,
    batch_rows: int = 4096,
) -> tuple[int, Iterator[dict[str, Any]]]:
    """(row count, rows as upsert items) of a Parquet file, e.g. `tessera embed` output."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"{str(path)[:200]}: not a readable Parquet file ({exc})") from exc
    names = parquet.schema_arrow.names
    if id_column not in names:
        raise InvalidArgument(f"{str(path)[:200]}: no id column {id_column!r}; its columns are {names[:20]}")
    if vector_column is None and "vector" in names:
        vector_column = "vector"
    for column in (vector_column, text_column):
        if column is not None and column not in names:
            raise InvalidArgument(f"{str(path)[:200]}: no column {column!r}; its columns are {names[:20]}")
    meta = (
        list(metadata_columns)
        if metadata_columns is not None
        else [n for n in names if n not in (id_column, vector_column, text_column)]
    )

    def rows() -> Iterator[dict[str, Any]]:
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

    return parquet.metadata.num_rows, rows()
