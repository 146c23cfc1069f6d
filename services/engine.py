"""The service core: spaces, corpora, embedding with micro-batching, writes and routed search.

The gRPC server, the CLI and Python callers all go through an Engine, so the
rules (limits, which space a corpus belongs to, how content is embedded) live
in one place. Embedding is async (it shares model batches across concurrent
callers); everything CPU-bound runs in worker threads, off the event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tessera.embedder import Modality, Space, UnknownSpaceError, load_space
from tessera.embedder.quoting import quote
from tessera.index import blas
from tessera.index.catalog import Catalog, CorpusNotFoundError
from tessera.index.config import IndexConfig
from tessera.index.corpus import Corpus
from tessera.index.fusion import Fusion
from tessera.index.items import Item
from tessera.index.milvus_corpus import MilvusCorpus
from tessera.index.milvus_store import MilvusStore
from tessera.index.routing import Query, QueryPart, RoutedResult, Router

from .batching import MicroBatcher

# Modalities whose `prepare` only validates, run on the event loop for small requests.
INLINE_PREPARE = frozenset({Modality.TEXT, Modality.VECTOR})
INLINE_PREPARE_MAX = 16


class LimitError(ValueError):
    """A request is larger than the server accepts (RESOURCE_EXHAUSTED)."""


@dataclass(frozen=True)
class Limits:
    max_items_per_request: int = 1024
    max_query_parts: int = 8
    max_top_k: int = 1000
    max_batch_queries: int = 64
    max_message_bytes: int = 64 << 20


@dataclass
class Content:
    """One input for one modality: text, encoded bytes, or a vector already in the space.

    An upserted item's content may leave `modality` None: it is then the corpus's.
    """

    modality: Modality | None
    value: Any  # str for text, bytes for media, np.ndarray / list for a vector


@dataclass
class NewItem:
    id: str
    content: Content | None = None
    vector: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    uri: str | None = None


class Engine:
    def __init__(
        self,
        data_dir: str | Path,
        *,
        batching: bool = True,
        max_batch: int = 64,
        max_wait_ms: float = 0.0,
        limits: Limits | None = None,
        device: str | None = None,
        on_batch: Any = None,
        allow_space_paths: bool = True,
        min_free_bytes: int = 0,
        milvus: MilvusStore | None = None,
        blas_on_caller_threads: bool = False,
    ) -> None:
        if blas_on_caller_threads:
            # A server's requests run concurrently in worker threads, and numpy's BLAS pool would fight
            # them (index/blas.py). Off by default: in a user's own process numpy's threads are theirs.
            blas.run_blas_on_caller_threads()
        # Below min_free_bytes free on the data directory, upserts are refused (RESOURCE_EXHAUSTED).
        # With `milvus`, the corpora of that Milvus server are served beside the local ones (Catalog).
        self.catalog = Catalog(data_dir, min_free_bytes=min_free_bytes, milvus=milvus)
        # A network-facing server turns this off: a client must not make it read files of its choosing.
        self.allow_space_paths = allow_space_paths
        self.spaces_dir = Path(data_dir) / "spaces"  # saved spaces, loaded by name
        self.router = Router(self.catalog)
        self.limits = limits or Limits()
        self.batching = batching
        self.max_batch = max_batch
        self.max_wait_ms = max_wait_ms
        self.device = device
        self._on_batch = on_batch
        self._spaces: dict[str, Space] = {}
        self._space_lock = threading.Lock()
        self._batchers: dict[tuple[str, Modality], MicroBatcher] = {}

    # ---- spaces --------------------------------------------------------------------------
    def space(self, name: str) -> Space:
        """A space by name or id ("name@version"), loaded once and kept."""
        if not name:
            raise ValueError("name a space, e.g. 'minilm'; ListSpaces shows what this server can load")
        with self._space_lock:
            space = self._spaces.get(name)
            if space is None:
                base = name.rsplit("@", 1)[0] if "@" in name else name
                space = self._spaces.get(base) or load_space(
                    base, self.device, spaces_dir=self.spaces_dir, allow_paths=self.allow_space_paths
                )
                if "@" in name and space.id != name:
                    raise UnknownSpaceError(
                        f"space {quote(name)} is not loadable here; {quote(base)} is version {space.id}"
                    )
                self._spaces[base] = self._spaces[space.id] = space
            return space

    def loaded_space(self, name: str) -> Space | None:
        """The space if this engine has loaded it already (nothing is loaded here)."""
        return self._spaces.get(name)

    def corpus_space(self, corpus: Corpus) -> Space:
        return self.space(corpus.space_id)

    def query_space(self, corpora: Sequence[Corpus]) -> str:
        """The space a query without one is embedded in: the one space its corpora share."""
        spaces = sorted({c.space_id for c in corpora})
        if len(spaces) == 1:
            return spaces[0]
        if not spaces:
            raise ValueError("there are no corpora to search; create one first, or name a space to embed in")
        raise ValueError(
            f"the corpora searched are in {len(spaces)} spaces ({', '.join(spaces)}); "
            "name the space to embed the query in, or pick corpora of one space"
        )

    # ---- embedding -----------------------------------------------------------------------
    def _batcher(self, space: Space, modality: Modality) -> MicroBatcher:
        key = (space.id, modality)
        batcher = self._batchers.get(key)
        if batcher is None:
            batcher = MicroBatcher(
                lambda items: space.embed_merged(modality, items),
                max_batch=self.max_batch,
                max_wait_ms=self.max_wait_ms,
                on_batch=self._on_batch,
            )
            self._batchers[key] = batcher
        return batcher

    async def embed(
        self, space_name: str, modality: Modality | str, values: Sequence[Any], ids: Sequence[str] | None = None
    ) -> np.ndarray:
        """Vectors for inputs of one modality; a bad input raises DecodeError naming it."""
        modality = Modality.parse(modality)
        if len(values) > self.limits.max_items_per_request:
            raise LimitError(f"{len(values)} items in one request; the limit is {self.limits.max_items_per_request}")
        space = self.space(space_name)
        space.encoder(modality)  # ValueError if the space does not embed this modality
        labels = list(ids) if ids is not None else list(range(len(values)))
        if modality in INLINE_PREPARE and len(values) <= INLINE_PREPARE_MAX:
            # Text and vectors are only validated here (no decoding): a thread hop would cost more.
            prepared = [space.prepare(modality, v, labels[i]) for i, v in enumerate(values)]
        else:
            prepared = await asyncio.to_thread(
                lambda: [space.prepare(modality, v, labels[i]) for i, v in enumerate(values)]
            )
        if not prepared:
            return np.empty((0, space.dim), dtype=np.float32)
        if modality is Modality.VECTOR and len(prepared) <= INLINE_PREPARE_MAX:
            # No model to share: a vector query is normalised at once instead of waiting for a batch.
            return space.embed_prepared(modality, prepared)
        if not self.batching:
            return await asyncio.to_thread(space.embed_prepared, modality, prepared)
        batcher = self._batcher(space, modality)
        parts = [prepared[i : i + self.max_batch] for i in range(0, len(prepared), self.max_batch)]
        vectors = await asyncio.gather(*(batcher.submit(p) for p in parts))
        return np.concatenate(vectors)

    async def embed_contents(self, space_name: str, contents: Sequence[Content]) -> np.ndarray:
        """Mixed modalities in one call: grouped per modality, returned in input order."""
        space = self.space(space_name)
        out = np.empty((len(contents), space.dim), dtype=np.float32)
        by_modality: dict[Modality, list[int]] = {}
        for i, c in enumerate(contents):
            by_modality.setdefault(c.modality, []).append(i)
        groups = list(by_modality.items())
        results = await asyncio.gather(
            *(self.embed(space_name, m, [contents[i].value for i in rows], ids=rows) for m, rows in groups)
        )
        for (_, rows), vectors in zip(groups, results, strict=True):
            out[rows] = vectors
        return out

    # ---- corpora -------------------------------------------------------------------------
    def create_corpus(
        self,
        name: str,
        space_name: str,
        modality: Modality | str,
        index: IndexConfig | Mapping[str, Any] | None = None,
        backend: str | None = None,
    ) -> Corpus | MilvusCorpus:
        """A new corpus; `backend` "local" or "milvus" (None: milvus when the engine has a Milvus server)."""
        space = self.space(space_name)
        modality = Modality.parse(modality)
        if modality is not Modality.VECTOR:
            space.encoder(modality)
        return self.catalog.create(
            name,
            space=space.id,
            modality=modality,
            dim=space.dim,
            similarity=space.similarity,
            index=index,
            backend=backend,
        )

    def corpus(self, name: str) -> Corpus:
        if not name:
            raise ValueError("name a corpus; ListCorpora shows them")
        return self.catalog.get(name)

    async def upsert(self, corpus_name: str, items: Sequence[NewItem]) -> int:
        """Items with their own vectors are stored as given; the rest are embedded in the corpus's space."""
        if len(items) > self.limits.max_items_per_request:
            raise LimitError(f"{len(items)} items in one message; the limit is {self.limits.max_items_per_request}")
        corpus = self.corpus(corpus_name)
        to_embed = [i for i, item in enumerate(items) if item.vector is None]
        vectors: dict[int, np.ndarray] = {}
        if to_embed:
            for i in to_embed:
                if items[i].content is None:
                    raise ValueError(f"item {quote(items[i].id)} has neither content nor a vector")
                if items[i].content.modality is None:
                    items[i].content.modality = Modality.parse(corpus.modality)
                if items[i].content.modality.value != corpus.modality:
                    raise ValueError(
                        f"item {quote(items[i].id)} is {items[i].content.modality.value} content; "
                        f"corpus {corpus.name!r} holds {corpus.modality}"
                    )
            embedded = await self.embed(
                corpus.space_id,
                corpus.modality,
                [items[i].content.value for i in to_embed],
                ids=[items[i].id for i in to_embed],
            )
            vectors = dict(zip(to_embed, embedded, strict=True))
        records = []
        for i, item in enumerate(items):
            content = item.content.value if item.content is not None else None
            records.append(
                Item(
                    id=item.id,
                    vector=vectors.get(i, item.vector),
                    text=content if isinstance(content, str) else None,
                    data=bytes(content) if isinstance(content, (bytes, bytearray)) else None,
                    uri=item.uri,
                    metadata=dict(item.metadata),
                )
            )
        result = await asyncio.to_thread(corpus.upsert, records)
        return result.count

    # ---- search --------------------------------------------------------------------------
    async def search(
        self,
        space_name: str,
        parts: Sequence[tuple[Content, float]],
        *,
        top_k: int = 10,
        filter: Mapping[str, Any] | None = None,
        corpora: Sequence[str] | None = None,
        target_modalities: Sequence[Modality | str] | None = None,
        fusion: Fusion | str = Fusion.CALIBRATED,
        nprobe: int | None = None,
        ef_search: int | None = None,
        with_vectors: bool = False,
    ) -> RoutedResult:
        """Embed the parts and search. The server's limits are checked here and the query's values where
        the `Query` is made; named corpora are resolved once, before any embedding work (NOT_FOUND first)."""
        if len(parts) > self.limits.max_query_parts:
            raise LimitError(f"{len(parts)} query parts; the limit is {self.limits.max_query_parts}")
        if isinstance(top_k, int) and top_k > self.limits.max_top_k:
            raise LimitError(f"top_k must be between 1 and {self.limits.max_top_k}, got {top_k}")
        named = [self.corpus(name) for name in corpora or []]
        if not parts:
            raise ValueError("a query needs at least one part")
        # Without named corpora, the ones that load: a damaged corpus does not stop a search of the rest.
        space = self.space(space_name or self.query_space(named or self.catalog.corpora()))
        vectors = await self.embed_contents(space.id, [c for c, _ in parts])
        query = Query(
            parts=[QueryPart(c.modality, v, w) for (c, w), v in zip(parts, vectors, strict=True)],
            space=space.id,
            top_k=top_k,
            filter=filter,
            corpora=named or None,
            target_modalities=target_modalities,
            fusion=fusion,
            nprobe=nprobe,
            ef_search=ef_search,
            with_vectors=with_vectors,
        )
        return await asyncio.to_thread(self.router.search, query)

    async def close(self) -> None:
        for batcher in self._batchers.values():
            await batcher.close()
        await asyncio.to_thread(self.catalog.close)


__all__ = ["Content", "CorpusNotFoundError", "Engine", "LimitError", "Limits", "NewItem"]
