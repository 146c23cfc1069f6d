"""A corpus whose items live in a Milvus collection: the `milvus` backend.

It answers what the engine asks of a local `Corpus` (upsert, delete by ids or filter, get,
`run_search` with the same `SearchArgs` and the same `Hit`s, sample_vectors for calibration,
describe) so routing, calibrated fusion and composite queries work the same over both. Milvus
is the durable store: a write is acknowledged once Milvus acknowledged it, and this object keeps
no state of its own beyond the corpus's settings, so replicas can come and go.

Scores are inner products over unit vectors (cosine), or of the unnormalised Symile product
(MIP), as locally. Indexes whose distances are approximate (PQ, SQ8, AUTOINDEX) fetch the
candidates' vectors and re-score them exactly, so scores compare across corpora and backends.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tessera.embedder.modality import Modality
from tessera.embedder.quoting import quote
from tessera.embedder.similarity import Similarity

from . import manifests
from .corpus import WriteResult
from .errors import CorpusError, CorpusNotFoundError
from .filters import compile_filter, operators_used
from .items import Item, ItemError, payload_table, validate_items
from .milvus_filters import milvus_expression
from .milvus_indexes import MilvusIndex, milvus_index
from .milvus_store import MAX_VARCHAR_BYTES, MilvusStore, MilvusUnavailableError, collection_name
from .search import Hit, SearchArgs, checked_args

log = logging.getLogger(__name__)

BACKEND = "milvus"
# Rows per insert call: Milvus takes up to 64 MB per message; 1,000 rows of 1,024-d floats are 4 MB.
UPSERT_BATCH = 1_000
# Ids per `id in [...]` expression when counting or fetching by id.
ID_BATCH = 1_000
PAYLOAD_FIELDS = ["metadata", "text", "uri"]
# len() is asked on every routed search (calibration refreshes its sample once a corpus has grown by a
# share of its size), and a count is a Milvus query that scans (270 ms at 5,000 rows on milvus-lite,
# holding its server meanwhile): len() answers from the last count and, once that is older than this,
# counts again in the background, never on the search's path. Writes through this replica recount.
COUNT_TTL_S = 30.0


def ids_expression(ids: Sequence[str]) -> str:
    """`id in [...]` with each id a JSON string literal. Not pymilvus's `get(ids=)`/`delete(ids=)`: they
    wrap ids in single quotes unescaped, so an id holding `'] or id != '` would select every row."""
    return f"id in [{', '.join(json.dumps(i, ensure_ascii=False) for i in ids)}]"


class MilvusCorpus:
    def __init__(self, store: MilvusStore, manifest: dict[str, Any]) -> None:
        self.store = store
        self.manifest = manifest
        self.name: str = manifest["name"]
        self.uid: str = str(manifest.get("uid") or uuid.uuid4().hex)
        self.space_id: str = manifest["space"]
        self.modality = Modality.parse(manifest["modality"])
        self.dim: int = int(manifest["dim"])
        self.similarity = Similarity.parse(manifest.get("similarity", "cosine"))
        self.config = manifests.index_config(manifest)
        self.index: MilvusIndex = milvus_index(self.config, self.dim)
        self.collection = collection_name(self.name)
        self.list_fields: set[str] = set(manifest.get("list_fields") or [])
        self.read_only = False
        self.closed = False
        self._counted: tuple[float, int] | None = None  # (when, count) behind len()
        self._counting = threading.Lock()  # one background count at a time

    # ---- lifecycle -----------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        store: MilvusStore,
        *,
        name: str,
        space: str,
        modality: Modality | str,
        dim: int,
        similarity: Similarity | str,
        index: Any,
    ) -> MilvusCorpus:
        manifest = {**manifests.identity(name, space, modality, dim, similarity, index), "backend": BACKEND}
        chosen = milvus_index(index, dim)  # refuses a spec Milvus has no equivalent of, before anything is made
        store.create(manifest, chosen.index_type, chosen.params)
        return cls(store, {**manifest, "list_fields": []})

    @classmethod
    def open(cls, store: MilvusStore, name: str) -> MilvusCorpus:
        return cls(store, store.manifest(name))

    def close(self, *, snapshot: bool = True) -> None:
        self.closed = True  # Milvus holds everything; nothing to flush or snapshot here

    def snapshot(self) -> str:
        return ""  # Milvus persists every acknowledged write itself

    def wait_idle(self) -> None:
        pass  # Milvus builds its indexes itself

    def rebuild(self) -> None:
        pass

    def _check_open(self) -> None:
        if self.closed:
            raise CorpusError(f"corpus {self.name!r} is closed")

    def _call(self, what: str, method: str, **kwargs: Any) -> Any:
        try:
            return self.store.call(f"{what} (corpus {self.name!r})", getattr(self.store.client, method), **kwargs)
        except MilvusUnavailableError:
            if not self.store.has(self.name):  # not a fault of Milvus: another replica dropped the corpus
                raise CorpusNotFoundError(f"no corpus named {quote(self.name)}: it was dropped") from None
            raise

    # ---- writes --------------------------------------------------------------------------
    def upsert(self, items: Sequence[Item]) -> WriteResult:
        self._check_open()
        if not items:
            return WriteResult(0, 0)
        _, vectors = validate_items(items, self.dim)
        payload_table(items)  # the local backend's rule: one type per metadata field within a batch
        rows = [self._row(item, vector) for item, vector in zip(items, vectors, strict=True)]
        lists = {k for item in items for k, v in item.metadata.items() if isinstance(v, (list, tuple))}
        if lists - self.list_fields:  # recorded before the rows land: a range filter must never miss them
            self.list_fields = self.store.add_list_fields(self.name, lists)
        try:
            for start in range(0, len(rows), UPSERT_BATCH):
                self._call("upsert", "upsert", collection_name=self.collection, data=rows[start : start + UPSERT_BATCH])
        finally:
            self._counted = None
        return WriteResult(len(items), 0)

    def _row(self, item: Item, vector: np.ndarray) -> dict[str, Any]:
        for field, value in (("text", item.text), ("uri", item.uri)):
            if value is not None and len(value.encode("utf-8", "surrogatepass")) > MAX_VARCHAR_BYTES:
                raise ItemError(
                    f"item {quote(item.id)}: {field} is longer than {MAX_VARCHAR_BYTES:,} bytes, the most a Milvus "
                    "field holds; store the content elsewhere and give its uri"
                )
        return {
            "id": item.id,
            "vector": vector.tolist(),
            "metadata": {
                k: (list(v) if isinstance(v, tuple) else v) for k, v in item.metadata.items() if v is not None
            },
            "text": item.text,
            "uri": item.uri,
        }

    def delete(self, ids: Sequence[str] | None = None, filter: Mapping[str, Any] | None = None) -> WriteResult:
        self._check_open()
        if (ids is None) == (filter is None):
            raise ValueError("delete takes ids or a filter, not both and not neither")
        if filter is not None:
            if compile_filter(filter) is None:
                raise ValueError("an empty filter would delete everything; use drop to remove a whole corpus")
            expression = milvus_expression(filter, self._list_fields_for(filter))
            count = self._count(expression)
            if count:
                self._counted = None
                self._call("delete by filter", "delete", collection_name=self.collection, filter=expression)
            return WriteResult(count, 0)
        targets = [i for i in dict.fromkeys(ids or []) if isinstance(i, str)]
        found = [row["id"] for row in self._by_ids(targets, ["id"])]
        if found:
            self._counted = None
            for start in range(0, len(found), ID_BATCH):
                expression = ids_expression(found[start : start + ID_BATCH])
                self._call("delete by ids", "delete", collection_name=self.collection, filter=expression)
        return WriteResult(len(found), 0)

    # ---- reads ---------------------------------------------------------------------------
    def __len__(self) -> int:
        """The item count, at most COUNT_TTL_S old (another replica's writes show within that); exact after
        this replica's own writes. `describe()` always counts afresh."""
        counted = self._counted
        if counted is None:  # the first ask, or after a write here: count now
            counted = self._counted = (time.monotonic(), self._count(""))
        elif time.monotonic() - counted[0] > COUNT_TTL_S and self._counting.acquire(blocking=False):
            threading.Thread(target=self._recount, name=f"count-{self.name}", daemon=True).start()
        return counted[1]

    def _recount(self) -> None:
        try:
            self._counted = (time.monotonic(), self._count(""))
        except Exception as exc:  # the next len() tries again; searches report Milvus's state themselves
            log.warning({"event": "milvus_count_failed", "corpus": self.name, "reason": str(exc)})
        finally:
            self._counting.release()

    def _count(self, expression: str) -> int:
        rows = self._call(
            "count", "query", collection_name=self.collection, filter=expression, output_fields=["count(*)"]
        )
        return int(rows[0]["count(*)"]) if rows else 0

    def _by_ids(self, ids: Sequence[str], fields: list[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for start in range(0, len(ids), ID_BATCH):
            chunk = list(ids[start : start + ID_BATCH])
            if chunk:
                expression = ids_expression(chunk)
                out.extend(
                    self._call("get", "query", collection_name=self.collection, filter=expression, output_fields=fields)
                )
        return out

    def get(self, ids: Sequence[str], *, with_vectors: bool = True, with_data: bool = True) -> list[Item]:
        """Items by id, in the order asked; ids not in the corpus are left out. Media bytes are never stored."""
        self._check_open()
        fields = PAYLOAD_FIELDS + (["vector"] if with_vectors else [])
        rows = {row["id"]: row for row in self._by_ids(list(dict.fromkeys(ids)), fields)}
        return [self._item(rows[i], with_vectors) for i in ids if i in rows]

    def _item(self, row: Mapping[str, Any], with_vector: bool) -> Item:
        vector = np.asarray(row["vector"], dtype=np.float32) if with_vector else None
        return Item(
            id=row["id"], vector=vector, text=row.get("text"), uri=row.get("uri"), metadata=row.get("metadata") or {}
        )

    def sample_vectors(self, n: int, seed: int = 0) -> np.ndarray:
        """Up to n stored vectors (for calibration statistics): the first n Milvus returns, not a random draw."""
        rows = self._call(
            "sample vectors", "query", collection_name=self.collection, filter="", output_fields=["vector"], limit=n
        )
        if not rows:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray([row["vector"] for row in rows], dtype=np.float32)

    # ---- search --------------------------------------------------------------------------
    def search(
        self,
        queries: np.ndarray,
        k: int = 10,
        *,
        filter: Any = None,
        nprobe: int | None = None,
        ef_search: int | None = None,
        exact: bool = False,
        normalize: bool = True,
        with_payload: bool = True,
        with_vectors: bool = False,
    ) -> list[list[Hit]]:
        """As `Corpus.search`: top-k items per query row by inner product over unit vectors."""
        args = checked_args(
            queries,
            k,
            self.dim,
            self.name,
            filter,
            nprobe,
            ef_search,
            normalize,
            exact,
            None,
            with_payload,
            with_vectors,
        )
        return self.run_search(args)

    def run_search(self, args: SearchArgs) -> list[list[Hit]]:
        self._check_open()
        if args.exact and self.index.index_type != "FLAT":
            raise CorpusError(
                f"corpus {self.name!r} lives in Milvus with index {self.index.index_type}, which cannot search "
                "exactly; create it with index 'Flat' for exact search"
            )
        rescore = not self.index.exact_scores and (self.config.rescore if args.rescore is None else args.rescore)
        fields = (PAYLOAD_FIELDS if args.with_payload else []) + (["vector"] if args.with_vectors or rescore else [])
        expression = milvus_expression(args.filter.spec, self._list_fields_for(args.filter.spec)) if args.filter else ""
        found = self._call(
            "search",
            "search",
            collection_name=self.collection,
            data=args.queries.tolist(),
            limit=args.k,
            filter=expression,
            output_fields=fields,
            search_params={
                "metric_type": "IP",
                "params": self.index.search_params(args.k, args.nprobe, args.ef_search, self.config),
            },
        )
        out = []
        for query, row in zip(args.queries, found, strict=True):
            hits = [self._hit(found_hit, args, query if rescore else None) for found_hit in row]
            if rescore:
                hits.sort(key=lambda h: -h.score)
            out.append(hits)
        return out

    def _hit(self, found: Mapping[str, Any], args: SearchArgs, rescore_with: np.ndarray | None) -> Hit:
        entity = found.get("entity") or {}
        vector = np.asarray(entity["vector"], dtype=np.float32) if "vector" in entity else None
        score = float(found["distance"]) if rescore_with is None else float(vector @ rescore_with)
        hit = Hit(found["id"], score, corpus=self.name, modality=self.modality, raw_score=score)
        if args.with_payload:
            hit.metadata, hit.text, hit.uri = entity.get("metadata") or {}, entity.get("text"), entity.get("uri")
        if args.with_vectors:
            hit.vector = vector
        return hit

    def _list_fields_for(self, spec: Mapping[str, Any]) -> set[str]:
        """The list fields, read fresh from Milvus when the filter has a range (another replica may have
        written lists since); a filter without one does not need them."""
        if "range" in operators_used(spec):
            self.list_fields = self.store.list_fields(self.name)
        return self.list_fields

    # ---- description ---------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        index = self._call("describe the index", "describe_index", collection_name=self.collection, index_name="vector")
        return {
            "name": self.name,
            "backend": BACKEND,
            "space": self.space_id,
            "modality": self.modality.value,
            "similarity": self.similarity.value,
            "dim": self.dim,
            "count": self._count(""),
            "index": {
                "factory": self.config.factory,
                "target": self.index.index_type,
                "built": index.get("index_type"),
                "searching": str(index.get("index_type") or self.index.index_type),
                "tombstones": 0,
                "gpu": False,
                "gpu_note": "",
                "building": int(index.get("pending_index_rows") or 0) > 0,
                "state": "built",
                "note": f"Milvus {index.get('index_type')} {json.dumps(self.index.params)}, metric IP",
                "last_build": {},
            },
            "milvus": {
                "uri": self.store.uri,
                "collection": self.collection,
                "index": {k: str(v) for k, v in index.items()},
            },
            "read_only": False,
            "bytes_on_disk": 0,
            "wal_bytes": 0,
            "recovery": {},
            "disk": {},
        }
