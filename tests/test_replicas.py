"""Stateless replicas: `tessera serve` processes on their own data directories, one `milvus-lite server`,
all on 127.0.0.1, reached with the real gRPC client. A write through one replica is read through
another, SIGKILL of a replica mid-stream loses no acknowledged write, and a replica started later
lists every corpus."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.milvus_server import MilvusLiteServer
from benchmarks.reliability import ServerProcess
from tessera.client import Client
from tessera.errors import NotFound, TesseraError

DIM = 16


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture()
def milvus(tmp_path: Path):
    with MilvusLiteServer(tmp_path / "milvus") as server:
        yield server


def replica(tmp_path: Path, milvus: MilvusLiteServer, name: str) -> ServerProcess:
    return ServerProcess(tmp_path / name, "--milvus-uri", milvus.uri)


def test_a_write_through_one_replica_is_read_through_another(tmp_path: Path, milvus: MilvusLiteServer) -> None:
    one, two = replica(tmp_path, milvus, "r1"), replica(tmp_path, milvus, "r2")
    rng = np.random.default_rng(0)
    try:
        with Client(one.address) as a, Client(two.address) as b:
            info = a.create_corpus("notes", space=f"vectors:{DIM}", modality="vector", index="HNSW16")
            assert info["backend"] == "milvus"
            local = a.create_corpus("scratch", space=f"vectors:{DIM}", modality="vector", backend="local")
            assert local["backend"] == "local"
            vectors = unit_rows(rng, 50)
            items = [{"id": f"n{i}", "vector": v, "metadata": {"i": i}} for i, v in enumerate(vectors)]
            assert a.upsert("notes", items, modality="vector") == 50
            hits = b.search([("vector", vectors[7])], corpora=["notes"], top_k=3).hits
            assert hits[0].id == "n7" and hits[0].metadata == {"i": 7}
            assert b.describe_corpus("notes")["count"] == 50
            # Replica 2 sees Milvus corpora only: "scratch" is replica 1's own, on its data directory.
            assert [c["name"] for c in b.list_corpora()] == ["notes"]
            b.delete("notes", filter={"i": {"range": {"lt": 10}}})
            assert a.describe_corpus("notes")["count"] == 40
            b.drop_corpus("notes")
            time.sleep(1.2)  # a replica re-reads a Milvus corpus it holds open at most once a second
            with pytest.raises(NotFound):
                a.search([("vector", vectors[7])], corpora=["notes"], top_k=3)
    finally:
        one.stop()
        two.stop()


def test_sigkill_of_a_replica_mid_stream_loses_no_acknowledged_write(tmp_path: Path, milvus: MilvusLiteServer) -> None:
    one, two = replica(tmp_path, milvus, "r1"), replica(tmp_path, milvus, "r2")
    rng = np.random.default_rng(1)
    acknowledged: dict[str, tuple[np.ndarray, dict]] = {}
    uncertain: set[str] = set()
    stop = threading.Event()

    def writer() -> None:
        with Client(one.address, timeout=30) as client:
            batch = 0
            while not stop.is_set():
                vectors = unit_rows(rng, 64)
                ids = [f"b{batch}-{i}" for i in range(64)]
                items = [
                    {"id": i, "vector": v, "metadata": {"batch": batch}} for i, v in zip(ids, vectors, strict=True)
                ]
                try:
                    client.upsert("log", items, modality="vector")
                except TesseraError:
                    uncertain.update(ids)
                    return
                acknowledged.update({i: (v, {"batch": batch}) for i, v in zip(ids, vectors, strict=True)})
                batch += 1

    try:
        with Client(two.address) as b:
            b.create_corpus("log", space=f"vectors:{DIM}", modality="vector", index="Flat")
            thread = threading.Thread(target=writer, daemon=True)
            thread.start()
            time.sleep(random.Random(1).uniform(1.5, 3.0))
            one.kill()
            stop.set()
            thread.join(60)
            assert len(acknowledged) >= 64 * 3, "the writer should have had several batches acknowledged"
            ids = sorted(acknowledged)
            found = {}
            for start in range(0, len(ids), 500):
                for item in b.get("log", ids[start : start + 500], include_vectors=True):
                    found[item["id"]] = item
            lost = [i for i in ids if i not in found]
            assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {lost[:3]}"
            for i, (vector, metadata) in acknowledged.items():
                np.testing.assert_allclose(found[i]["vector"], vector, atol=1e-6)
                assert found[i]["metadata"] == metadata
            count = b.describe_corpus("log")["count"]
            assert len(acknowledged) <= count <= len(acknowledged) + len(uncertain)
        # A replica started afterwards lists every Milvus corpus, and serves it.
        three = replica(tmp_path, milvus, "r3")
        try:
            with Client(three.address) as c:
                assert [x["name"] for x in c.list_corpora()] == ["log"]
                some = next(iter(acknowledged))
                hits = c.search([("vector", acknowledged[some][0])], corpora=["log"], top_k=1).hits
                assert hits[0].id == some
        finally:
            three.stop()
    finally:
        two.stop()
        if one.process.poll() is None:
            one.stop()
