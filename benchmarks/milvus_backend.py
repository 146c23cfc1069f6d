"""Tessera over Milvus against raw pymilvus on the same Milvus server, in the same run, plus the local backend.

One `milvus-lite server` on 127.0.0.1 (Milvus's gRPC protocol; milvus-lite 3.x, a pure-Python
engine over FAISS). The same vectors (clustered synthetic 384-d unit vectors, or MiniLM
sentence embeddings with --data minilm) go three ways:

- **raw**: what a user writes by hand with pymilvus: a collection of the same schema Tessera
  makes (VARCHAR id, FLOAT_VECTOR, JSON metadata, nullable text and uri), the same HNSW index,
  `insert` in batches of 1,000, `search` with limit 10, ef 64 and the payload fields;
- **tessera-grpc**: `tessera serve --milvus-uri` and the Python client: `create_corpus(backend=
  "milvus")`, `upsert` (streamed, 1,000 a message) and `search` of one vector, top 10, ef 64;
- **tessera-inprocess**: the same corpus through Tessera's index layer in this process
  (`Catalog(milvus=...)`), which is what the server runs for each search, without the gRPC hop;
- **local**: `tessera serve` without Milvus, the same index spec on FAISS, the same searches.

Searches run one query per call, from 1 and 8 client threads, each system in turn, for
ROUNDS rounds (the median QPS counts), so a drift in the machine's speed hits all alike.
The bar: Tessera's search overhead over raw pymilvus, raw QPS / Tessera QPS, <= 1.10.

    python -m benchmarks.milvus_backend [--n 100000] [--queries 1000] [--data synthetic|minilm]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.index_bench import clustered_vectors, minilm_vectors
from benchmarks.milvus_server import MilvusLiteServer
from benchmarks.provenance import git_commit, now_utc
from benchmarks.reliability import ServerProcess
from benchmarks.service_bench import run_clients
from tessera.client import Client
from tessera.index.catalog import Catalog
from tessera.index.exact import exact_topk
from tessera.index.milvus_store import GRPC_OPTIONS, MilvusStore, collection_name

RESULTS = Path(__file__).resolve().parent / "results" / "milvus_backend.json"
K = 10
M = 16
EF_CONSTRUCTION = 100
EF_SEARCH = 64
BATCH = 1_000
ROUNDS = 3
CLIENTS = (1, 8)


def recall(found: list[list[str]], truth: np.ndarray) -> float:
    return float(
        np.mean([len({int(i) for i in row} & set(t.tolist())) / K for row, t in zip(found, truth, strict=True)])
    )


def wait_indexed(client: Any, collection: str, n: int, timeout_s: float = 3600.0) -> float:
    """Flush, then wait until Milvus has indexed every row; returns the seconds waited."""
    started = time.perf_counter()
    client.flush(collection)
    while True:
        info = client.describe_index(collection, "vector")
        if int(info.get("indexed_rows") or 0) >= n and not int(info.get("pending_index_rows") or 0):
            return time.perf_counter() - started
        if time.perf_counter() - started > timeout_s:
            raise RuntimeError(f"Milvus did not index {collection} within {timeout_s} s: {info}")
        time.sleep(0.5)


def raw_ingest(client: Any, xb: np.ndarray) -> dict[str, float]:
    from pymilvus import DataType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=1024)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=xb.shape[1])
    schema.add_field("metadata", DataType.JSON)
    schema.add_field("text", DataType.VARCHAR, max_length=65_535, nullable=True)
    schema.add_field("uri", DataType.VARCHAR, max_length=65_535, nullable=True)
    index = client.prepare_index_params()
    index.add_index("vector", index_type="HNSW", metric_type="IP", params={"M": M, "efConstruction": EF_CONSTRUCTION})
    client.create_collection("raw", schema=schema, index_params=index, consistency_level="Strong")
    started = time.perf_counter()
    for start in range(0, len(xb), BATCH):
        rows = [
            {"id": str(i), "vector": xb[i].tolist(), "metadata": {}} for i in range(start, min(start + BATCH, len(xb)))
        ]
        client.insert("raw", rows)
    ingest_s = time.perf_counter() - started
    return {
        "ingest_s": ingest_s,
        "ingest_per_s": len(xb) / ingest_s,
        "index_wait_s": wait_indexed(client, "raw", len(xb)),
    }


def tessera_ingest(address: str, xb: np.ndarray, backend: str) -> dict[str, float]:
    with Client(address, timeout=600) as client:
        client.create_corpus(
            "bench",
            space=f"vectors:{xb.shape[1]}",
            modality="vector",
            index=f"HNSW{M}",
            ef_construction=EF_CONSTRUCTION,
            backend=backend,
        )
        started = time.perf_counter()
        client.upsert(
            "bench", ({"id": str(i), "vector": xb[i]} for i in range(len(xb))), modality="vector", batch_size=BATCH
        )
        ingest_s = time.perf_counter() - started
        if backend == "local":
            while client.describe_corpus("bench")["searching"] != f"HNSW{M}":
                time.sleep(0.5)
            waited = time.perf_counter() - started - ingest_s
    return {
        "ingest_s": ingest_s,
        "ingest_per_s": len(xb) / ingest_s,
        **({"index_wait_s": waited} if backend == "local" else {}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="vectors indexed (default: %(default)s)")
    parser.add_argument("--queries", type=int, default=1_000, help="held-out queries (default: %(default)s)")
    parser.add_argument("--data", choices=("synthetic", "minilm"), default="synthetic")
    parser.add_argument(
        "--rounds", type=int, default=ROUNDS, help="search rounds; the median counts (default: %(default)s)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    from pymilvus import MilvusClient

    xb, xq = minilm_vectors(args.n, args.queries) if args.data == "minilm" else clustered_vectors(args.n, args.queries)
    truth = exact_topk(xb, xq, K)[1]
    out: dict[str, Any] = {
        "benchmark": "milvus_backend",
        "commit": git_commit(),
        "measured_at": now_utc(),
        "data": args.data,
        "n": args.n,
        "dim": int(xb.shape[1]),
        "queries": len(xq),
        "index": f"HNSW M={M} efConstruction={EF_CONSTRUCTION}, ef {EF_SEARCH} at search, metric IP",
        "milvus": "milvus-lite server (milvus-lite 3.x: a pure-Python engine over FAISS) on 127.0.0.1",
        "qps_is": f"one vector query per call, top {K}, median of {args.rounds} rounds, each system in turn",
    }
    with tempfile.TemporaryDirectory(prefix="milvus-backend-") as tmp_name:
        tmp = Path(tmp_name)
        with MilvusLiteServer(tmp / "milvus") as milvus:
            # The connection settings Tessera uses (milvus-lite server refuses pymilvus's default idle pings).
            raw = MilvusClient(uri=milvus.uri, dedicated=True, grpc_options=GRPC_OPTIONS)
            from importlib.metadata import version

            out["versions"] = {"pymilvus": version("pymilvus"), "milvus-lite": version("milvus-lite")}
            print("ingest: raw pymilvus", flush=True)
            ingest = {"raw": raw_ingest(raw, xb)}
            replica = ServerProcess(tmp / "replica", "--milvus-uri", milvus.uri)
            local = ServerProcess(tmp / "local")
            try:
                print("ingest: tessera over milvus", flush=True)
                ingest["tessera"] = tessera_ingest(replica.address, xb, "milvus")
                ingest["tessera"]["index_wait_s"] = wait_indexed(raw, collection_name("bench"), len(xb))
                print("ingest: tessera local", flush=True)
                ingest["local"] = tessera_ingest(local.address, xb, "local")
                with (
                    Client(replica.address, timeout=60) as over_milvus,
                    Client(local.address, timeout=60) as on_local,
                    Catalog(tmp / "inprocess", milvus=MilvusStore(milvus.uri)) as catalog,
                ):
                    corpus = catalog.get("bench")
                    fields = ["metadata", "text", "uri"]
                    params = {"metric_type": "IP", "params": {"ef": EF_SEARCH}}

                    def grpc_search(client: Client) -> Any:
                        return lambda q: [
                            h.id
                            for h in client.search(
                                [("vector", q)], corpora=["bench"], top_k=K, ef_search=EF_SEARCH
                            ).hits
                        ]

                    systems = {
                        "raw": lambda q: [
                            h["id"]
                            for h in raw.search(
                                "raw", data=[q.tolist()], limit=K, output_fields=fields, search_params=params
                            )[0]
                        ],
                        "tessera-grpc": grpc_search(over_milvus),
                        "tessera-inprocess": lambda q: [h.id for h in corpus.search(q, k=K, ef_search=EF_SEARCH)[0]],
                        "local-grpc": grpc_search(on_local),
                    }
                    rows = {
                        name: {"recall_at_10": recall([call(q) for q in xq], truth)} for name, call in systems.items()
                    }
                    runs: dict[str, dict[int, list[dict[str, float]]]] = {n: {c: [] for c in CLIENTS} for n in systems}
                    for round_ in range(args.rounds):
                        for clients in CLIENTS:
                            for name, call in systems.items():
                                runs[name][clients].append(run_clients(call, list(xq), clients))
                                print(
                                    f"round {round_ + 1}, {clients} clients, {name}: {runs[name][clients][-1]}",
                                    flush=True,
                                )
                    for name in systems:
                        for clients in CLIENTS:
                            median = statistics.median(r["qps"] for r in runs[name][clients])
                            picked = min(runs[name][clients], key=lambda r, m=median: abs(r["qps"] - m))
                            rows[name][f"qps_{clients}c"] = median
                            rows[name][f"p50_ms_{clients}c"] = picked["p50_ms"]
                            rows[name][f"p99_ms_{clients}c"] = picked["p99_ms"]
                            rows[name][f"qps_rounds_{clients}c"] = [r["qps"] for r in runs[name][clients]]
            finally:
                replica.stop()
                local.stop()
    out["systems"] = rows
    out["ingest"] = ingest
    for clients in CLIENTS:
        raw_qps = rows["raw"][f"qps_{clients}c"]
        out[f"overhead_ratio_grpc_{clients}c"] = raw_qps / rows["tessera-grpc"][f"qps_{clients}c"]
        out[f"overhead_ratio_inprocess_{clients}c"] = raw_qps / rows["tessera-inprocess"][f"qps_{clients}c"]
        out[f"local_over_milvus_qps_{clients}c"] = (
            rows["local-grpc"][f"qps_{clients}c"] / rows["tessera-grpc"][f"qps_{clients}c"]
        )
    out["ratio"] = out["overhead_ratio_grpc_1c"]
    out["ratio_is"] = (
        "raw pymilvus QPS / Tessera-over-Milvus gRPC QPS, 1 client: Tessera's search overhead (bar <= 1.10)"
    )
    out["ingest_ratio"] = ingest["tessera"]["ingest_per_s"] / ingest["raw"]["ingest_per_s"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if "ratio" in k}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
