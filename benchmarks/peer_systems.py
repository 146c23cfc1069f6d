"""One adapter per system that benchmarks/peers.py compares, all behind the same small interface.

Every adapter indexes the same unit vectors under inner product (= cosine), with ids
0..n-1, and answers one query at a time with the ids of its top k. The graph indexes
share one configuration (M = 32 links per node, 64 on the base layer, and a build
beam of 100) so the curves compare engines, not settings; `knob` is the search-time
setting each system's docs tell users to turn for recall, swept by the driver.

Peers are imported inside their adapters: each runs in its own process, and a peer
that is not installed, or fails, is reported with its exact error rather than dropped.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
M = 32  # graph links per node (64 on the base layer) for every HNSW below
EF_CONSTRUCTION = 100  # build beam for every HNSW below: Chroma's default, inside hnswlib's advised 100-200
EF_VALUES = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384)
# Tried in turn only while a system's recall is still under the bar (hard data: a million clustered vectors).
EF_EXTRA = (512, 768, 1024, 1536, 2048)
INSERT_BATCH = 5_000


class PeerSystem:
    """Build once, then search one query at a time; `knob` takes each of `knob_values` in turn."""

    name = ""
    knob = "ef"
    knob_values: Sequence[int] = EF_VALUES
    knob_extra: Sequence[int] = EF_EXTRA
    thread_safe = True  # may 8 client threads call `search` at once?

    def __init__(self, root: Path, dim: int, ef_construction: int = EF_CONSTRUCTION) -> None:
        self.root = root
        self.dim = dim
        self.ef_construction = ef_construction
        self.value: int = self.knob_values[0]

    def config(self) -> dict[str, Any]:
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError

    def ingest(self, vectors: np.ndarray) -> None:
        """Insert every vector (ids 0..n-1), as a user's bulk load would."""
        raise NotImplementedError

    def build(self) -> None:
        """Whatever is left before searches hit the index (index creation, flush, load)."""

    def set_knob(self, value: int) -> None:
        self.value = value

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        raise NotImplementedError

    def persist(self) -> Path:
        """Write everything to disk (closing if that is how the system persists); the path to measure."""
        return self.root

    def close(self) -> None:
        pass


def _batches(n: int, size: int = INSERT_BATCH) -> list[tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _ids(values: Sequence[Any]) -> np.ndarray:
    return np.fromiter((int(v) for v in values), dtype=np.int64, count=len(values))


# ---- Tessera --------------------------------------------------------------------------------
class TesseraInProcess(PeerSystem):
    name = "tessera"

    def config(self) -> dict[str, Any]:
        return {
            "index": "FAISS HNSW32 in a Tessera corpus",
            "M": M,
            "ef_construction": self.ef_construction,
            "api": "Corpus.upsert / Corpus.search (ids and exact cosines, no payload)",
            "durable": True,
        }

    def version(self) -> str:
        import faiss

        return f"tessera 0.1.0 (faiss {faiss.__version__})"

    def ingest(self, vectors: np.ndarray) -> None:
        from tessera.index.catalog import Catalog
        from tessera.index.items import Item

        self.catalog = Catalog(self.root)
        self.corpus = self.catalog.create(
            "bench",
            space=f"vectors:{self.dim}",
            modality="vector",
            dim=self.dim,
            index={"factory": f"HNSW{M}", "ef_construction": self.ef_construction, "use_gpu": False},
        )
        for start, stop in _batches(len(vectors)):
            self.corpus.upsert([Item(id=str(i), vector=vectors[i]) for i in range(start, stop)])

    def build(self) -> None:
        self.corpus.wait_idle()
        if self.corpus.ann is None:
            self.corpus.rebuild()

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        hits = self.corpus.search(query[None, :], k, ef_search=self.value, with_payload=False)[0]
        return _ids([h.id for h in hits])

    def persist(self) -> Path:
        self.catalog.close()  # writes the snapshot: vectors, payload and the FAISS index
        return self.root

    def close(self) -> None:
        pass


class TesseraGrpc(PeerSystem):
    name = "tessera-grpc"

    def config(self) -> dict[str, Any]:
        return {
            "index": "FAISS HNSW32 in a Tessera corpus",
            "M": M,
            "ef_construction": self.ef_construction,
            "api": "`tessera serve` subprocess on 127.0.0.1; Client.upsert (stream) and .search",
            "durable": True,
        }

    def version(self) -> str:
        import grpc

        return f"tessera 0.1.0 (grpcio {grpc.__version__})"

    def ingest(self, vectors: np.ndarray) -> None:
        from tessera.client import Client

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tessera.cli", "serve", "--data-dir", str(self.root), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=REPO,
        )
        line = self.proc.stdout.readline()
        if "serving on" not in line:
            raise RuntimeError(f"tessera serve did not start: {line!r}")
        self.client = Client(line.split(" on ")[1].split(" ")[0], timeout=600)
        self.space = f"vectors:{self.dim}"
        self.client.create_corpus(
            "bench", space=self.space, modality="vector", index=f"HNSW{M}", ef_construction=self.ef_construction
        )
        self.client.upsert(
            "bench", ({"id": str(i), "vector": vectors[i]} for i in range(len(vectors))), batch_size=1000
        )

    def build(self) -> None:
        while self.client.describe_corpus("bench")["searching"] != f"HNSW{M}":
            time.sleep(0.2)

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        result = self.client.search(
            [("vector", query)], space=self.space, top_k=k, corpora=["bench"], ef_search=self.value
        )
        return _ids([h.id for h in result.hits])

    def persist(self) -> Path:
        self.close()  # SIGTERM: the server finishes, snapshots and exits
        return self.root

    def close(self) -> None:
        if getattr(self, "proc", None) is not None and self.proc.poll() is None:
            self.client.close()
            self.proc.terminate()
            self.proc.wait(timeout=600)


# ---- raw libraries --------------------------------------------------------------------------
class RawFaiss(PeerSystem):
    name = "faiss"

    def config(self) -> dict[str, Any]:
        return {
            "index": "IndexHNSWFlat (HNSW32), inner product",
            "M": M,
            "ef_construction": self.ef_construction,
            "api": "index.search(q, k, params=SearchParametersHNSW(efSearch))",
            "durable": False,
        }

    def version(self) -> str:
        import faiss

        return f"faiss-cpu {faiss.__version__}"

    def ingest(self, vectors: np.ndarray) -> None:
        import faiss

        self.index = faiss.IndexHNSWFlat(self.dim, M, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = self.ef_construction
        for start, stop in _batches(len(vectors), 50_000):
            self.index.add(vectors[start:stop])

    def set_knob(self, value: int) -> None:
        import faiss

        self.value = value
        self.params = faiss.SearchParametersHNSW(efSearch=value)

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        return self.index.search(query[None, :], k, params=self.params)[1][0]

    def persist(self) -> Path:
        import faiss

        path = self.root / "index.faiss"
        faiss.write_index(self.index, str(path))
        return path


class Hnswlib(PeerSystem):
    name = "hnswlib"

    def config(self) -> dict[str, Any]:
        return {
            "index": "hnswlib Index(space='ip')",
            "M": M,
            "ef_construction": self.ef_construction,
            "api": "knn_query(q, k) after set_ef(ef)",
            "durable": False,
        }

    def version(self) -> str:
        from importlib.metadata import version

        return f"hnswlib {version('hnswlib')}"

    def ingest(self, vectors: np.ndarray) -> None:
        import hnswlib

        self.index = hnswlib.Index(space="ip", dim=self.dim)
        self.index.init_index(max_elements=len(vectors), M=M, ef_construction=self.ef_construction, random_seed=0)
        for start, stop in _batches(len(vectors), 50_000):
            self.index.add_items(vectors[start:stop], np.arange(start, stop))

    def set_knob(self, value: int) -> None:
        self.value = value
        self.index.set_ef(max(value, 10))

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        return self.index.knn_query(query, k=k, num_threads=1)[0][0].astype(np.int64)

    def persist(self) -> Path:
        path = self.root / "index.hnsw"
        self.index.save_index(str(path))
        return path


# ---- databases ------------------------------------------------------------------------------
class MilvusLite(PeerSystem):
    name = "milvus-lite"

    def config(self) -> dict[str, Any]:
        return {
            "index": "HNSW, metric IP",
            "M": M,
            "ef_construction": self.ef_construction,
            "api": "MilvusClient(local .db file): insert, flush, create_index, load; search(params ef)",
            "durable": True,
        }

    def version(self) -> str:
        from importlib.metadata import version

        return f"pymilvus {version('pymilvus')}, milvus-lite {version('milvus-lite')}"

    def ingest(self, vectors: np.ndarray) -> None:
        from pymilvus import DataType, MilvusClient

        self.client = MilvusClient(str(self.root / "milvus.db"))
        schema = self.client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        self.client.create_collection("bench", schema=schema)
        for start, stop in _batches(len(vectors)):
            rows = [{"id": i, "vector": vectors[i]} for i in range(start, stop)]
            self.client.insert("bench", rows)

    def build(self) -> None:
        self.client.flush("bench")
        params = self.client.prepare_index_params()
        params.add_index(
            field_name="vector",
            index_type="HNSW",
            metric_type="IP",
            params={"M": M, "efConstruction": self.ef_construction},
        )
        self.client.create_index("bench", params)
        self.client.load_collection("bench")
        info = self.client.describe_index("bench", "vector")
        if info.get("index_type") != "HNSW":
            raise RuntimeError(f"Milvus Lite did not build HNSW: {info}")

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        found = self.client.search("bench", data=[query], limit=k, search_params={"params": {"ef": max(self.value, k)}})
        return _ids([hit["id"] for hit in found[0]])

    def persist(self) -> Path:
        self.client.close()
        return self.root

    def close(self) -> None:
        if getattr(self, "client", None) is not None:
            self.client.close()


class Chroma(PeerSystem):
    name = "chroma"

    def config(self) -> dict[str, Any]:
        return {
            "index": "Chroma's HNSW (hnswlib), space 'ip'",
            "M": M,
            "ef_construction": self.ef_construction,
            "api": "PersistentClient; collection.add; collection.query(include=['distances'])",
            "knob_via": "collection.modify(configuration={'hnsw': {'ef_search': ef}}), then the client reopened",
            "durable": True,
        }

    def version(self) -> str:
        import chromadb

        return f"chromadb {chromadb.__version__}"

    def ingest(self, vectors: np.ndarray) -> None:
        import chromadb

        self.settings = chromadb.Settings(anonymized_telemetry=False)
        self.client = chromadb.PersistentClient(path=str(self.root), settings=self.settings)
        self.collection = self.client.create_collection(
            "bench",
            embedding_function=None,
            configuration={"hnsw": {"space": "ip", "max_neighbors": M, "ef_construction": self.ef_construction}},
        )
        batch = min(INSERT_BATCH, self.client.get_max_batch_size())
        for start, stop in _batches(len(vectors), batch):
            self.collection.add(ids=[str(i) for i in range(start, stop)], embeddings=vectors[start:stop])

    def set_knob(self, value: int) -> None:
        import chromadb
        from chromadb.api.client import SharedSystemClient

        self.value = value
        self.collection.modify(configuration={"hnsw": {"ef_search": value}})
        # A loaded collection keeps searching with the ef_search it was opened with (chromadb 1.5);
        # reopening the client is how a new value reaches the index.
        SharedSystemClient.clear_system_cache()
        self.client = chromadb.PersistentClient(path=str(self.root), settings=self.settings)
        self.collection = self.client.get_collection("bench")
        configured = self.collection.configuration_json["hnsw"]["ef_search"]
        if configured != value:
            raise RuntimeError(f"Chroma kept ef_search={configured} after asking for {value}")

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        found = self.collection.query(query_embeddings=query[None, :], n_results=k, include=["distances"])
        return _ids(found["ids"][0])


class QdrantLocal(PeerSystem):
    name = "qdrant-local"
    knob = "exact"
    knob_values = (1,)  # local mode searches exactly: there is no index to tune
    knob_extra = ()

    def config(self) -> dict[str, Any]:
        return {
            "index": "none: qdrant-client local mode scans every vector with numpy (no HNSW)",
            "api": "QdrantClient(path=...); upload_collection; query_points",
            "distance": "Cosine",
            "durable": True,
        }

    def version(self) -> str:
        from importlib.metadata import version

        return f"qdrant-client {version('qdrant-client')} (local mode)"

    def ingest(self, vectors: np.ndarray) -> None:
        from qdrant_client import QdrantClient, models

        self.client = QdrantClient(path=str(self.root))
        self.client.create_collection(
            "bench", vectors_config=models.VectorParams(size=self.dim, distance=models.Distance.COSINE)
        )
        self.client.upload_collection("bench", vectors=vectors, ids=range(len(vectors)), batch_size=INSERT_BATCH)

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        return _ids([p.id for p in self.client.query_points("bench", query=query, limit=k).points])

    def persist(self) -> Path:
        self.client.close()
        return self.root


class LanceDB(PeerSystem):
    name = "lancedb"

    def config(self) -> dict[str, Any]:
        return {
            "index": "IVF_HNSW_FLAT (one HNSW per IVF partition, float vectors), metric dot",
            "m": M,
            "ef_construction": self.ef_construction,
            "num_partitions": self.partitions,
            "nprobes": self.partitions,
            "api": "table.search(q).distance_type('dot').ef(ef).nprobes(p).limit(k)",
            "durable": True,
        }

    def version(self) -> str:
        import lancedb

        return f"lancedb {lancedb.__version__}"

    @property
    def partitions(self) -> int:
        # Lance's guidance for HNSW variants: partitions of about a million rows or fewer.
        return max(1, getattr(self, "n", 0) // 500_000)

    def ingest(self, vectors: np.ndarray) -> None:
        import lancedb
        import pyarrow as pa

        self.n = len(vectors)
        self.db = lancedb.connect(str(self.root))
        schema = pa.schema([pa.field("id", pa.int64()), pa.field("vector", pa.list_(pa.float32(), self.dim))])
        self.table = self.db.create_table("bench", schema=schema)
        for start, stop in _batches(len(vectors), 50_000):
            flat = pa.array(vectors[start:stop].ravel(), type=pa.float32())
            column = pa.FixedSizeListArray.from_arrays(flat, self.dim)
            self.table.add(pa.table({"id": pa.array(np.arange(start, stop)), "vector": column}, schema=schema))

    def build(self) -> None:
        self.table.create_index(
            metric="dot",
            index_type="IVF_HNSW_FLAT",
            num_partitions=self.partitions,
            m=M,
            ef_construction=self.ef_construction,
        )

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        found = (
            self.table.search(query)
            .distance_type("dot")
            .ef(max(self.value, k))
            .nprobes(self.partitions)
            .select(["id"])
            .limit(k)
            .to_arrow()
        )
        return found["id"].to_numpy().astype(np.int64)


SYSTEMS: dict[str, type[PeerSystem]] = {
    # Qdrant local last: at a million vectors its pure-Python ingest is the longest by far.
    cls.name: cls
    for cls in (TesseraInProcess, TesseraGrpc, RawFaiss, Hnswlib, MilvusLite, Chroma, LanceDB, QdrantLocal)
}


def disk_mb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20
