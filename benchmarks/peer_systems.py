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

import base64
import fcntl
import json
import math
import os
import shutil
import subprocess
import sys
import threading
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

    @classmethod
    def prepare(cls) -> None:
        """Anything to set up once before a run, outside its timing and timeout (a side environment)."""

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
    factory = f"HNSW{M}"

    def config(self) -> dict[str, Any]:
        return {
            "index": f"FAISS {self.factory} in a Tessera corpus",
            "M": M,
            "ef_construction": self.ef_construction,
            "api": "`tessera serve` subprocess on 127.0.0.1; Client.upsert (stream) and .search",
            "durable": True,
        }

    def version(self) -> str:
        import grpc

        return f"tessera 0.1.0 (grpcio {grpc.__version__})"

    def _create(self, factory: str) -> None:
        extra = {"ef_construction": self.ef_construction} if factory.startswith("HNSW") else {}
        self.client.create_corpus("bench", space=self.space, modality="vector", index=factory, **extra)

    def _upsert(self, vectors: np.ndarray) -> None:
        self.client.upsert(
            "bench", ({"id": str(i), "vector": vectors[i]} for i in range(len(vectors))), batch_size=1000
        )

    def _wait_built(self, factory: str, timeout_s: float = 1800.0) -> None:
        """Until searches use `factory` and no build (an IVF's retraining as the corpus grew) is running."""
        searching, state = ("exact", "exact") if factory == "Flat" else (factory, "built")
        deadline = time.perf_counter() + timeout_s
        while (info := self.client.describe_corpus("bench"))["searching"] != searching or info["index_state"] != state:
            if info["index_state"] == "build_failed" or time.perf_counter() > deadline:
                raise RuntimeError(f"tessera did not build {factory}: {info}")
            time.sleep(0.2)

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
        self._create(self.factory)
        self._upsert(vectors)

    def build(self) -> None:
        self._wait_built(self.factory)

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


# ---- IVF and exact search, the index types Milvus Lite 2.5's local mode offers -------------
NPROBE_VALUES = (1, 2, 4, 8, 16, 32, 64, 128)


def ivf_nlists(n: int) -> tuple[int, int]:
    """The two list counts swept, a quarter apart: at most four times the power of two nearest sqrt(n),
    and at most n / 39 (FAISS's training sample per list, which Tessera waits for): 256 and 1024 at 100k."""
    most = min(4 * 2 ** round(math.log2(math.sqrt(n))), 2 ** math.floor(math.log2(n / 39)))
    return max(1, most // 4), most


def ivf_knob_values(n: int) -> list[str]:
    """The knob's values, "nlist/nprobe", nlist by nlist; changing nlist rebuilds the index."""
    return [f"{nlist}/{nprobe}" for nlist in ivf_nlists(n) for nprobe in NPROBE_VALUES if nprobe <= nlist]


def _nlist_nprobe(value: str) -> tuple[int, int]:
    nlist, nprobe = value.split("/")
    return int(nlist), int(nprobe)


class IvfKnob(PeerSystem):
    """An IVF system: the knob is "nlist/nprobe"; a new nlist means a new index, timed in `rebuilds`."""

    knob = "nlist/nprobe"
    knob_values: Sequence[str] = ("",)  # set by ivf_setup once the number of vectors is known
    knob_extra: Sequence[str] = ()

    def ivf_setup(self, n: int) -> None:
        self.knob_values = ivf_knob_values(n)
        self.value = self.knob_values[0]
        self.nlist = _nlist_nprobe(self.value)[0]
        self.rebuilds: dict[str, float] = {}

    def set_knob(self, value: str) -> None:
        nlist, _ = _nlist_nprobe(value)
        if nlist != self.nlist:
            started = time.perf_counter()
            self.reindex(nlist)
            self.rebuilds[str(nlist)] = time.perf_counter() - started
            self.nlist = nlist
        self.value = value

    @property
    def nprobe(self) -> int:
        return _nlist_nprobe(self.value)[1]

    def reindex(self, nlist: int) -> None:
        raise NotImplementedError


class TesseraGrpcIvf(IvfKnob, TesseraGrpc):
    name = "tessera-grpc-ivf"

    @property
    def factory(self) -> str:
        return f"IVF{self.nlist},Flat"

    def config(self) -> dict[str, Any]:
        return {
            "index": "FAISS IVF<nlist>,Flat in a Tessera corpus, inner product",
            "nlists": list(ivf_nlists(self.n)),
            "nprobes": list(NPROBE_VALUES),
            "first_nlist_build": "timed in build_s; each later nlist in rebuild_s (a new corpus, upserted again: "
            "a corpus's index type is fixed when it is created)",
            "rebuild_s": self.rebuilds,
            "api": "`tessera serve` subprocess on 127.0.0.1; Client.upsert (stream) and .search(nprobe=...)",
            "durable": True,
        }

    def ingest(self, vectors: np.ndarray) -> None:
        self.n, self.vectors = len(vectors), vectors
        self.ivf_setup(len(vectors))
        super().ingest(vectors)

    def reindex(self, nlist: int) -> None:
        self.client.drop_corpus("bench")
        self.nlist = nlist
        self._create(self.factory)
        self._upsert(self.vectors)
        self._wait_built(self.factory)

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        result = self.client.search(
            [("vector", query)], space=self.space, top_k=k, corpora=["bench"], nprobe=self.nprobe
        )
        return _ids([h.id for h in result.hits])


class TesseraGrpcFlat(TesseraGrpc):
    name = "tessera-grpc-flat"
    factory = "Flat"
    knob = "exact"
    knob_values = (1,)
    knob_extra = ()

    def config(self) -> dict[str, Any]:
        return {
            "index": "Flat: exact search over the corpus's stored vectors",
            "api": "`tessera serve` subprocess on 127.0.0.1; Client.upsert (stream) and .search",
            "durable": True,
        }

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        result = self.client.search([("vector", query)], space=self.space, top_k=k, corpora=["bench"])
        return _ids([h.id for h in result.hits])


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
    engine = "milvus-lite 3.x: pure-Python engine over FAISS"

    def config(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "index": "HNSW, metric IP",
            "M": M,
            "ef_construction": self.ef_construction,
            "api": "MilvusClient(local .db file): insert, flush, create_index, load; search(params ef)",
            "create_index_retried": getattr(self, "create_index_retried", None),
            "durable": True,
        }

    def version(self) -> str:
        from importlib.metadata import version

        return f"pymilvus {version('pymilvus')}, milvus-lite {version('milvus-lite')} ({self.engine})"

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
        try:
            self.client.create_index("bench", params)
        except Exception as exc:
            # Under load the index build outlasts pymilvus's call timeout; its retry of the same call then
            # fails with code 35, "index already exists", on the index the first attempt built.
            if "index already exists" not in str(exc):
                raise
            self.create_index_retried = str(exc)
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


# Milvus Lite 2.5.1: the Milvus C++ engine (knowhere, as the `milvus` binary in its wheel), which
# needs pymilvus 2.5 and setuptools<81. It cannot share the benchmark's environment (pymilvus 3 and
# milvus-lite 3, a pure-Python engine over FAISS), so it gets a venv of its own, made on first use.
SIDE_ENVS = Path(os.environ.get("TESSERA_BENCH_ENVS", Path.home() / ".cache" / "tessera-bench"))
MILVUS_LITE_25_PINS = ("milvus-lite==2.5.1", "pymilvus==2.5.18", "setuptools==80.9.0")
MILVUS_LITE_25_WORKER = Path(__file__).with_name("milvus_lite_worker.py")
# Rows per insert call. milvus-lite 2.5.1's insert cost grows faster than its batch: on 384-d
# vectors here 1,000 rows took 0.2 s, 2,000 1.7 s, 4,000 7 s and 5,000 36 s per call.
MILVUS_LITE_25_BATCH = 1_000
# From milvus-lite's C++ source (src/segcore_wrapper.cpp, src/milvus_local.cpp) and borne out by the curves.
MILVUS_LITE_25_NOTES = (
    "All rows live in one growing segcore segment (rows also kept in SQLite); create_index stores the index "
    "settings and reloads the collection into a new growing segment, so a growing segment's interim index "
    "serves the searches, not an IVF built with the requested nlist; every insert, search and query runs "
    "under one process-wide mutex (MilvusLocal), so concurrent clients are served one at a time."
)


def side_env(name: str, pins: Sequence[str]) -> Path:
    """The python of venv `name` under SIDE_ENVS with exactly `pins` installed; made (pip) if missing.

    A lock makes concurrent runs wait for one another; a marker written last means a venv whose
    install was interrupted is made again rather than used.
    """
    home = SIDE_ENVS / name
    python, marker = home / "bin" / "python", home / ".tessera-pins"
    SIDE_ENVS.mkdir(parents=True, exist_ok=True)
    with open(SIDE_ENVS / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and marker.read_text() == "\n".join(pins) and python.exists():
            return python
        shutil.rmtree(home, ignore_errors=True)
        for command in (
            [sys.executable, "-m", "venv", str(home)],
            [str(python), "-m", "pip", "install", "--quiet", "--no-input", "--disable-pip-version-check", *pins],
        ):
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
                raise RuntimeError(f"{' '.join(command[:4])} ... failed ({done.returncode}): {' / '.join(tail)}")
        marker.write_text("\n".join(pins))
    return python


class SideWorker:
    """A JSON-lines conversation with benchmarks/milvus_lite_worker.py; calls may come from many threads."""

    def __init__(self, python: Path, log: Path) -> None:
        self.log = open(log, "w")
        self.proc = subprocess.Popen(
            [str(python), "-I", str(MILVUS_LITE_25_WORKER)],  # isolated: nothing of the repo's environment
            cwd=log.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            bufsize=1,
        )
        self.log_path = log
        self._send_lock = threading.Lock()
        self._pending: dict[int, list[Any]] = {}  # id -> [event, answer]
        self._next = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            answer = json.loads(line)
            slot = self._pending.pop(answer["id"])
            slot[1] = answer
            slot[0].set()
        for slot in list(self._pending.values()):  # the worker died: wake everyone up
            slot[0].set()

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        slot: list[Any] = [threading.Event(), None]
        with self._send_lock:
            self._next += 1
            request_id = self._next
            self._pending[request_id] = slot
            self.proc.stdin.write(json.dumps({"id": request_id, "op": op, **fields}) + "\n")
            self.proc.stdin.flush()
        slot[0].wait()
        answer = slot[1]
        if answer is None:
            tail = self.log_path.read_text().strip().splitlines()[-3:]
            raise RuntimeError(f"milvus_lite_worker exited ({self.proc.poll()}) during {op}: {' / '.join(tail)}")
        if not answer.pop("ok"):
            raise RuntimeError(f"milvus-lite 2.5.1 {op}: {answer['error']}")
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("close")
            finally:
                self.proc.stdin.close()
                self.proc.wait(timeout=120)
        self.log.close()


class MilvusLite25(PeerSystem):
    """milvus-lite 2.5.1 (C++ engine) over a worker in its own venv; IVF_FLAT here, FLAT in the subclass."""

    name = "milvus-lite-2.5.1-ivf"
    index_type = "IVF_FLAT"
    engine = "milvus-lite 2.5.1: Milvus C++ engine (knowhere)"

    @classmethod
    def prepare(cls) -> None:
        side_env("milvus-lite-2.5.1", MILVUS_LITE_25_PINS)

    def config(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "index": f"{self.index_type}, metric IP",
            "api": "MilvusClient(local .db file) in a worker process of a venv of its own (pymilvus 2.5): insert "
            f"({MILVUS_LITE_25_BATCH:,} rows), flush, create_index, load_collection; search(params); "
            "queries reach the worker as JSON lines over a pipe",
            "pipe_round_trip_ms": self.round_trip_ms,
            "how_it_searches": MILVUS_LITE_25_NOTES,
            "index_info": self.index_info,
            "side_env": {"pins": list(MILVUS_LITE_25_PINS), "freeze": self.freeze},
            "durable": True,
        }

    def version(self) -> str:
        return self._version  # asked after persist() has closed the worker

    def ingest(self, vectors: np.ndarray) -> None:
        python = side_env("milvus-lite-2.5.1", MILVUS_LITE_25_PINS)
        self.freeze = subprocess.run(
            [str(python), "-I", "-m", "pip", "freeze", "--all"], capture_output=True, text=True, cwd=self.root
        ).stdout.split()
        self.worker = SideWorker(python, self.root.parent / f"{self.root.name}-worker.log")
        v = self.worker.call("versions")
        self._version = f"pymilvus {v['pymilvus']}, milvus-lite {v['milvus-lite']} ({self.engine})"
        self.worker.call("open", path=str(self.root / "milvus.db"), dim=self.dim)
        staged = self.root.parent / f"{self.root.name}-vectors.npy"  # the worker reads the vectors from here
        np.save(staged, vectors)
        try:
            self.worker.call("insert", npy=str(staged), batch=MILVUS_LITE_25_BATCH)
        finally:
            staged.unlink()

    def index_params(self) -> dict[str, Any]:
        return {"nlist": self.nlist}

    def build(self) -> None:
        self.index_info = self.worker.call("index", index_type=self.index_type, params=self.index_params())["info"]
        q = base64.b64encode(np.zeros(self.dim, dtype=np.float32).tobytes()).decode()
        times = []
        for _ in range(200):
            t0 = time.perf_counter()
            self.worker.call("ping", q=q)
            times.append(time.perf_counter() - t0)
        self.round_trip_ms = float(np.median(times) * 1e3)

    def search_params(self) -> dict[str, Any]:
        return {"nprobe": self.nprobe}

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        q = base64.b64encode(np.ascontiguousarray(query, dtype=np.float32).tobytes()).decode()
        return np.array(self.worker.call("search", q=q, k=k, params=self.search_params())["ids"], dtype=np.int64)

    def persist(self) -> Path:
        self.close()
        return self.root

    def close(self) -> None:
        if getattr(self, "worker", None) is not None:
            worker, self.worker = self.worker, None
            worker.close()


class MilvusLite25Ivf(IvfKnob, MilvusLite25):
    name = "milvus-lite-2.5.1-ivf"

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "nlists": list(ivf_nlists(self.n)),
            "nprobes": list(NPROBE_VALUES),
            "first_nlist_build": "timed in build_s; each later nlist in rebuild_s (release, drop_index, "
            "create_index, load_collection)",
            "rebuild_s": self.rebuilds,
        }

    def ingest(self, vectors: np.ndarray) -> None:
        self.n = len(vectors)
        self.ivf_setup(len(vectors))
        super().ingest(vectors)

    def reindex(self, nlist: int) -> None:
        self.index_info = self.worker.call("index", index_type=self.index_type, params={"nlist": nlist})["info"]


class MilvusLite25Flat(MilvusLite25):
    name = "milvus-lite-2.5.1-flat"
    index_type = "FLAT"
    knob = "exact"
    knob_values = (1,)
    knob_extra = ()

    def index_params(self) -> dict[str, Any]:
        return {}

    def search_params(self) -> dict[str, Any]:
        return {}


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
    for cls in (
        TesseraInProcess,
        TesseraGrpc,
        TesseraGrpcIvf,
        TesseraGrpcFlat,
        RawFaiss,
        Hnswlib,
        MilvusLite,
        MilvusLite25Ivf,
        MilvusLite25Flat,
        Chroma,
        LanceDB,
        QdrantLocal,
    )
}


def disk_mb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20
