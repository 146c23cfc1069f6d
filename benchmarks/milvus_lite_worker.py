"""Milvus Lite 2.5 (the Milvus C++ engine, knowhere) driven over stdin/stdout, for benchmarks/peer_systems.py.

milvus-lite 2.5.1 needs pymilvus 2.5 and setuptools<81 (for pkg_resources), which cannot share
an environment with the benchmark's pymilvus 3 / milvus-lite 3, so this script runs with the
python of a side environment of its own (peer_systems.side_env) and imports nothing from the repo.

One JSON object per line each way. A request carries "id" and "op"; its answer carries the same
"id" and "ok" (and "error", the exception as `Type: message`, when not). Searches run on a pool
of threads, so concurrent clients reach Milvus concurrently; every other op runs in turn.

    open    {"path": db file, "dim": d}                      collection "bench": int64 id, float vector
    insert  {"npy": .npy of the vectors, "batch": rows}      ids 0..n-1, `batch` rows per insert call
    index   {"index_type": "IVF_FLAT" | "FLAT", "params": {}}  flush, (release, drop_index,) create_index, load
    search  {"q": base64 float32, "k": k, "params": {...}}   -> "ids"
    ping    {"q": base64 float32}                            the round trip alone, nothing searched
    versions, close
"""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from typing import Any

# The protocol gets the real stdout; anything else that writes to fd 1 (the milvus server process
# that pymilvus starts inherits it) goes to stderr instead of corrupting the answers.
_PROTOCOL = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)

import numpy as np  # noqa: E402
from pymilvus import DataType, MilvusClient  # noqa: E402

_write_lock = threading.Lock()
_state: dict[str, Any] = {}


def _answer(request_id: Any, **fields: Any) -> None:
    line = json.dumps({"id": request_id, **fields})
    with _write_lock:
        _PROTOCOL.write(line + "\n")
        _PROTOCOL.flush()


def _vector(encoded: str) -> list[float]:
    return np.frombuffer(base64.b64decode(encoded), dtype=np.float32).tolist()


def op_open(path: str, dim: int) -> dict[str, Any]:
    client = MilvusClient(path)
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    client.create_collection("bench", schema=schema)
    _state.update(client=client, indexed=False)
    return {}


def op_insert(npy: str, batch: int) -> dict[str, Any]:
    client = _state["client"]
    vectors = np.load(npy)
    for start in range(0, len(vectors), batch):
        stop = min(start + batch, len(vectors))
        client.insert("bench", [{"id": i, "vector": vectors[i]} for i in range(start, stop)])
    return {"rows": len(vectors)}


def op_index(index_type: str, params: dict[str, Any]) -> dict[str, Any]:
    client = _state["client"]
    started = time.perf_counter()
    if _state["indexed"]:
        client.release_collection("bench")
        client.drop_index("bench", "vector")
    else:
        client.flush("bench")
    index_params = client.prepare_index_params()
    index_params.add_index(field_name="vector", index_type=index_type, metric_type="IP", params=params)
    client.create_index("bench", index_params)
    client.load_collection("bench")
    _state["indexed"] = True
    info = client.describe_index("bench", "vector")
    if info.get("index_type") != index_type:
        raise RuntimeError(f"Milvus Lite built {info.get('index_type')!r}, not {index_type!r}: {info}")
    return {"seconds": time.perf_counter() - started, "info": {k: str(v) for k, v in info.items()}}


def op_search(q: str, k: int, params: dict[str, Any]) -> dict[str, Any]:
    found = _state["client"].search("bench", data=[_vector(q)], limit=k, search_params={"params": params})
    return {"ids": [hit["id"] for hit in found[0]]}


def op_ping(q: str) -> dict[str, Any]:
    _vector(q)
    return {}


def op_versions() -> dict[str, Any]:
    return {"pymilvus": version("pymilvus"), "milvus-lite": version("milvus-lite"), "python": sys.version.split()[0]}


def op_close() -> dict[str, Any]:
    client = _state.pop("client", None)
    if client is not None:
        client.close()
    return {}


OPS = {name[3:]: fn for name, fn in globals().items() if name.startswith("op_")}


def _run(request: dict[str, Any]) -> None:
    request_id = request.pop("id", None)
    op = request.pop("op", None)
    try:
        if op not in OPS:
            raise ValueError(f"unknown op {op!r}")
        _answer(request_id, ok=True, **OPS[op](**request))
    except Exception as exc:  # every failure goes back to the caller, with its type
        _answer(request_id, ok=False, error=f"{type(exc).__module__}.{type(exc).__name__}: {exc}")


def main() -> int:
    pool = ThreadPoolExecutor(max_workers=16)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        op = request.get("op")
        if op in ("search", "ping"):
            pool.submit(_run, request)
            continue
        pool.shutdown(wait=True)  # an op that changes state waits for the searches before it
        pool = ThreadPoolExecutor(max_workers=16)
        _run(request)
        if op == "close":
            break
    pool.shutdown(wait=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
