"""Damaged files on disk (issue 28): detected, reported without server paths, isolated, repaired where possible.

The served suite builds two corpora of raw vectors on a real `tessera serve` (a healthy one, and a
victim with an HNSW index, a snapshot and log records written after it), then damages one file
of the victim per case (truncation, 64 random bytes in the middle, one flipped bit, removal),
restarts the server on a fresh copy and checks: the server starts and stays SERVING, the healthy
corpus answers exactly, the victim is fully recovered or refused with DATA_LOSS or
FAILED_PRECONDITION naming the file, and `tessera corpus verify` finds the file offline.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks.reliability import ServerProcess
from tessera.client import Client
from tessera.errors import DataLoss, FailedPrecondition, TesseraError
from tessera.index.catalog import Catalog
from tessera.index.config import IndexConfig
from tessera.index.corpus import Corpus
from tessera.index.integrity import (
    ALGORITHM,
    CorpusDamagedError,
    FileDamage,
    digest,
    file_record,
    manifest_bytes,
    mismatch,
    read_manifest,
    verify_corpus,
)
from tessera.index.items import Item, payload_table
from tessera.index.records import Upsert, encode_upsert
from tessera.index.repair import plan, repair_corpus
from tessera.index.wal import FILE_HEADER_V1, HEADER, MAGIC, MAGIC_V1
from tessera.v1 import tessera_pb2 as pb
from tessera.v1 import tessera_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parents[1]
DIM = 16
SPACE = f"vectors:{DIM}"
HEALTHY, VICTIM = "healthy", "victim"
N_HEALTHY, N_VICTIM, N_LATER = 200, 1200, 60  # the victim's index (HNSW32) is built from 1,000 vectors on
REFUSED = {"DATA_LOSS", "FAILED_PRECONDITION"}


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# ---- checksum helpers ----------------------------------------------------------------------------
def test_digest_and_file_record_agree_and_see_one_flipped_bit(tmp_path: Path) -> None:
    data = np.random.default_rng(0).bytes(3 << 20)
    path = tmp_path / "f"
    path.write_bytes(data)
    record = file_record(path)
    assert record == {"bytes": len(data), ALGORITHM: digest(data)}
    assert digest(memoryview(data)) == digest(np.frombuffer(data, dtype=np.uint8)) == record[ALGORITHM]
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1
    assert mismatch(record, len(data), bytes(flipped)) == "fails its checksum (its bytes changed on disk)"
    assert "truncated" in mismatch(record, len(data) - 1, data[:-1])
    assert mismatch(record, len(data), data) is None
    assert mismatch(None, 5, b"whatever") is None  # nothing recorded: a snapshot from before checksums


def test_the_manifest_digest_catches_a_changed_digit_and_old_manifests_still_read(tmp_path: Path) -> None:
    manifest = {"format": 1, "name": "c", "space": "s", "modality": "vector", "dim": 384, "created_at": 1.5}
    (tmp_path / "manifest.json").write_bytes(manifest_bytes(manifest))
    assert read_manifest(tmp_path)["dim"] == 384
    text = (tmp_path / "manifest.json").read_text().replace("384", "385")  # still valid JSON, wrong
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(FileDamage, match="fails its checksum"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))  # written before manifests had a digest
    assert read_manifest(tmp_path)["dim"] == 384
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "dim": "x"}))
    with pytest.raises(FileDamage, match="no valid 'dim'"):
        read_manifest(tmp_path)


# ---- in-process: isolation, legacy corpora, repair -------------------------------------------------
def _fill(root: Path, *, snapshot: bool = True) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(3)
    vectors = unit(rng, 300)
    with Catalog(root) as catalog:
        corpus = catalog.create("c", space=SPACE, modality="vector", dim=DIM, index="Flat")
        corpus.upsert([Item(id=f"i{n}", vector=v) for n, v in enumerate(vectors)])
        if snapshot:
            corpus.snapshot()
        else:
            corpus.snapshots.unsnapshotted = 0  # closed as a crash leaves it: no snapshot, everything in the log
    return root / "corpora" / "c", {f"i{n}": v for n, v in enumerate(vectors)}


def test_a_corpus_written_before_checksums_opens_and_records_them_at_its_next_snapshot(tmp_path: Path) -> None:
    corpus_dir, expected = _fill(tmp_path)
    manifest = json.loads((corpus_dir / "manifest.json").read_text())
    for key in ("snapshot_files", "checksum"):
        manifest.pop(key)
    (corpus_dir / "manifest.json").write_text(json.dumps(manifest))  # as an older Tessera wrote it
    snapshot = corpus_dir / "snapshots" / manifest["snapshot"]
    (snapshot / "manifest.json").unlink()
    # The log in the first format (a 16-byte header, no committed end), holding one write after the snapshot.
    late = unit(np.random.default_rng(8), 1)
    payload = encode_upsert(Upsert(payload_table([Item(id="late", vector=late[0])]), late))
    seqno = manifest["snapshot_seqno"] + 1
    record = HEADER.pack(len(payload), zlib.crc32(payload, zlib.crc32(struct.pack("<Q", seqno))), seqno) + payload
    (corpus_dir / "wal.log").write_bytes(FILE_HEADER_V1.pack(MAGIC_V1, seqno - 1) + record)
    report = verify_corpus(corpus_dir)
    assert report.ok and any("no checksums" in note for note in report.notes)
    with Catalog(tmp_path) as catalog:
        corpus = catalog.get("c")
        assert len(corpus) == 301 and np.allclose(corpus.get(["i7"])[0].vector, expected["i7"])
    # The close snapshotted it, recording digests; the corpus verifies fully now.
    assert "snapshot_files" in json.loads((corpus_dir / "manifest.json").read_text())
    assert (corpus_dir / "wal.log").read_bytes()[:8] == MAGIC  # and the log is in the new format
    assert verify_corpus(corpus_dir).ok and not verify_corpus(corpus_dir).notes


def test_a_damaged_corpus_is_isolated_listed_and_skipped_by_routing(tmp_path: Path) -> None:
    corpus_dir, _ = _fill(tmp_path)
    vectors = corpus_dir / "snapshots" / json.loads((corpus_dir / "manifest.json").read_text())["snapshot"]
    vectors = vectors / "vectors.arrow"
    size = vectors.stat().st_size
    before = {p: p.read_bytes() for p in corpus_dir.rglob("*") if p.is_file()}
    with open(vectors, "r+b") as f:
        f.seek(size // 2)
        f.write(b"\x00" * 8)
    before[vectors] = vectors.read_bytes()  # nothing of the damaged corpus may change on disk from here
    with Catalog(tmp_path) as catalog:
        healthy = catalog.create("ok", space=SPACE, modality="vector", dim=DIM)
        healthy.upsert([Item(id="a", vector=unit(np.random.default_rng(1), 1)[0])])
        assert catalog.names() == ["c", "ok"]
        for _ in range(2):  # the same answer every time, without loading again
            with pytest.raises(CorpusDamagedError, match=r"vectors\.arrow fails its checksum") as caught:
                catalog.get("c")
        assert str(tmp_path) not in str(caught.value)
        assert [c.name for c in catalog.corpora()] == ["ok"]
        assert set(catalog.damaged()) == {"c"}
        info = catalog.describe("c")
        assert info["damaged"] and "vectors.arrow" in info["damage"] and info["dim"] == DIM
        from tessera.index.routing import Query, QueryPart, Router

        routed = Router(catalog).search(Query([QueryPart("vector", unit(np.random.default_rng(1), 1)[0], 1.0)], SPACE))
        assert [h.id for h in routed.hits] == ["a"]
        assert any(s["corpus"] == "c" and "damaged" in s["reason"] for s in routed.skipped)
        assert {p: p.read_bytes() for p in corpus_dir.rglob("*") if p.is_file()} == before
        catalog.drop("c")  # dropping is one way out, and takes the damage with it
        assert catalog.names() == ["ok"] and not catalog.damaged()


def test_the_service_answers_data_loss_without_paths(tmp_path: Path) -> None:
    from tessera.service import status_of

    corpus_dir, _ = _fill(tmp_path)
    (corpus_dir / "manifest.json").write_text('{"truncated": ')
    with Catalog(tmp_path) as catalog, pytest.raises(CorpusDamagedError) as caught:
        catalog.get("c")
    assert caught.value.describe()["modality"] == "vector"  # from the snapshot's copy of the manifest
    code, message = status_of(caught.value)
    assert code == "DATA_LOSS" and "manifest.json is not valid JSON" in message and str(tmp_path) not in message
    assert "tessera corpus repair c" in message


def test_a_manifest_lost_from_a_corpus_never_snapshotted_is_reported_not_hidden(tmp_path: Path) -> None:
    corpus_dir, _ = _fill(tmp_path, snapshot=False)
    (corpus_dir / "manifest.json").unlink()
    with Catalog(tmp_path) as catalog:
        assert catalog.names() == ["c"]
        assert catalog.describe("c")["damaged"]
    result = repair_corpus(tmp_path, "c")
    assert not result.ok and "no snapshot holds a verified copy" in result.impossible[0]


def test_repair_switches_to_an_older_snapshot_the_log_still_covers(tmp_path: Path) -> None:
    corpus_dir, expected = _fill(tmp_path)
    manifest = json.loads((corpus_dir / "manifest.json").read_text())
    old = corpus_dir / "snapshots" / manifest["snapshot"]
    kept = tmp_path / "kept-snapshot"
    shutil.copytree(old, kept)
    # A newer snapshot whose log reset never happened (the server died between the two), so the log
    # still holds every write since the old one.
    with Catalog(tmp_path) as catalog:
        corpus = catalog.get("c")
        corpus.upsert([Item(id="late", vector=unit(np.random.default_rng(9), 1)[0])])
        corpus.wal.reset = lambda: None  # the crash came before the log was emptied
        corpus.snapshot()
        corpus.snapshots.unsnapshotted = 0
    shutil.copytree(kept, old)  # the old snapshot, not yet removed
    new = json.loads((corpus_dir / "manifest.json").read_text())["snapshot"]
    (corpus_dir / "snapshots" / new / "payload.parquet").write_bytes(b"PAR1 garbage")
    result = repair_corpus(tmp_path, "c")
    assert result.ok, result
    assert "switch the manifest to snapshot" in result.done[0] and "nothing is lost" in result.done[0]
    with Catalog(tmp_path) as catalog:
        corpus = catalog.get("c")
        assert len(corpus) == 301 and np.allclose(corpus.get(["i5"])[0].vector, expected["i5"])


def test_repair_of_a_damaged_log_waits_for_accept_loss(tmp_path: Path) -> None:
    corpus_dir, _ = _fill(tmp_path)
    with Catalog(tmp_path) as catalog:
        corpus = catalog.get("c")
        for n in range(3):
            corpus.upsert([Item(id=f"late{n}", vector=unit(np.random.default_rng(n), 1)[0])])
        corpus.wal.commit()
        corpus.snapshots.unsnapshotted = 0  # no snapshot at close: the records stay in the log, as after a crash
    wal = corpus_dir / "wal.log"
    data = bytearray(wal.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the second of three records
    wal.write_bytes(bytes(data))
    assert [s.lossy for s in plan(corpus_dir).steps] == [True]
    held = repair_corpus(tmp_path, "c")
    assert not held.ok and held.withheld and "keep its 1 whole records" in held.withheld[0]
    done = repair_corpus(tmp_path, "c", accept_loss=True)
    assert done.ok, done
    with Catalog(tmp_path) as catalog:
        assert len(catalog.get("c")) == 301


def test_a_damaged_index_is_rebuilt_from_the_vectors_on_open(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    vectors = unit(rng, 1100)
    path = tmp_path / "c"
    with Corpus.create(path, name="c", space=SPACE, modality="vector", dim=DIM, index=IndexConfig("HNSW32")) as corpus:
        corpus.upsert([Item(id=f"i{n}", vector=v) for n, v in enumerate(vectors)])
        corpus.wait_idle()
        assert corpus.ann is not None
        corpus.snapshot()
    snapshot = path / "snapshots" / json.loads((path / "manifest.json").read_text())["snapshot"]
    os.truncate(snapshot / "index.faiss", 1000)
    with Corpus.open(path) as corpus:
        assert "index.faiss" in corpus.recovery["index_rebuilt"]
        corpus.wait_idle()
        assert corpus.ann is not None and len(corpus) == 1100
        assert corpus.search(vectors[42], 1)[0][0].id == "i42"
    assert verify_corpus(path).ok  # the rebuilt index went into a new snapshot


# ---- the served suite ------------------------------------------------------------------------------
KINDS = {
    "manifest": "manifest.json",
    "log": "wal.log",
    "vectors": "{snap}/vectors.arrow",
    "payload": "{snap}/payload.parquet",
    "index": "{snap}/index.faiss",
    "snapshot_dir": "{snap}",
}
CASES = [(kind, how) for kind in KINDS for how in ("truncate", "garble", "flip", "remove") if kind != "snapshot_dir"]
CASES.append(("snapshot_dir", "remove"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _verify_cli(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tessera.cli", "corpus", "verify", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("damage")
    data = root / "pristine"
    rng = np.random.default_rng(28)
    healthy, victim = unit(rng, N_HEALTHY), unit(rng, N_VICTIM + N_LATER)
    server = ServerProcess(data)
    try:
        with Client(server.address) as client:
            client.create_corpus(HEALTHY, space=SPACE, modality="vector", index="Flat")
            client.create_corpus(VICTIM, space=SPACE, modality="vector", index="HNSW32")
            client.upsert(HEALTHY, [{"id": f"h{n}", "vector": v} for n, v in enumerate(healthy)], modality="vector")
            client.upsert(
                VICTIM, [{"id": f"v{n}", "vector": v} for n, v in enumerate(victim[:N_VICTIM])], modality="vector"
            )
            deadline = time.monotonic() + 60
            while client.describe_corpus(VICTIM)["searching"] != "HNSW32":
                assert time.monotonic() < deadline, "the victim's index was never built"
                time.sleep(0.2)
    finally:
        server.stop()  # SIGTERM: both corpora snapshotted, the victim with its index
    server = ServerProcess(data)
    try:
        with Client(server.address) as client:  # log records after the snapshot, in three writes
            for start in range(N_VICTIM, N_VICTIM + N_LATER, N_LATER // 3):
                items = [{"id": f"v{n}", "vector": victim[n]} for n in range(start, start + N_LATER // 3)]
                client.upsert(VICTIM, items, modality="vector")
        time.sleep(1.0)  # the log's header records them as durable
    finally:
        server.kill()  # no shutdown snapshot: the records stay in the log
    victim_dir = data / "corpora" / VICTIM
    (snap,) = [p.name for p in (victim_dir / "snapshots").iterdir()]
    assert (victim_dir / "snapshots" / snap / "index.faiss").exists()
    assert (victim_dir / "wal.log").stat().st_size > 1000
    return {
        "root": root,
        "data": data,
        "snap": f"snapshots/{snap}",
        "healthy": {f"h{n}": v for n, v in enumerate(healthy)},
        "victim": {f"v{n}": v for n, v in enumerate(victim)},
    }


def test_verify_passes_on_the_pristine_data_directory(pristine: dict[str, Any]) -> None:
    result = _verify_cli(pristine["data"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"corpus {VICTIM}: ok" in result.stdout and f"corpus {HEALTHY}: ok" in result.stdout


def _damage(path: Path, how: str, rng: np.random.Generator) -> None:
    if how == "remove":
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        return
    size = path.stat().st_size
    if how == "truncate":
        os.truncate(path, size // 2)
        return
    with open(path, "r+b") as f:
        if how == "garble":
            f.seek(max(0, size // 2 - 32))
            f.write(rng.bytes(64))
        else:  # one flipped bit in the middle
            f.seek(size // 2)
            byte = f.read(1)[0]
            f.seek(size // 2)
            f.write(bytes([byte ^ 0x10]))


def _call(stub: pb_grpc.TesseraStub, method: str, request: Any) -> tuple[str, str]:
    try:
        call = getattr(stub, method)
        if method == "Upsert":
            call(iter([request]), timeout=30)
        else:
            call(request, timeout=30)
    except grpc.RpcError as exc:
        return exc.code().name, exc.details() or ""
    return "OK", ""


def _check_healthy(client: Client, expected: dict[str, np.ndarray]) -> None:
    assert client.describe_corpus(HEALTHY)["count"] == N_HEALTHY
    got = {i["id"]: i["vector"] for i in client.get(HEALTHY, list(expected), include_vectors=True)}
    assert got.keys() == expected.keys()
    assert all(np.allclose(got[i], v, atol=1e-6) for i, v in expected.items())
    hit = client.search([("vector", expected["h17"])], space=SPACE, corpora=[HEALTHY], top_k=1).hits[0]
    assert hit.id == "h17" and hit.raw_score == pytest.approx(1.0, abs=1e-4)


def _damaged_count(metrics_port: int) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    (line,) = [ln for ln in body.splitlines() if ln.startswith("tessera_corpora_damaged ")]
    return float(line.split()[1])


@pytest.mark.parametrize(("kind", "how"), CASES, ids=[f"{k}-{h}" for k, h in CASES])
def test_one_damaged_file_is_refused_or_recovered_never_served_wrong(
    pristine: dict[str, Any], kind: str, how: str
) -> None:
    case = pristine["root"] / f"case-{kind}-{how}"
    shutil.rmtree(case, ignore_errors=True)
    shutil.copytree(pristine["data"], case)
    rel = KINDS[kind].format(snap=pristine["snap"])
    _damage(case / "corpora" / VICTIM / rel, how, np.random.default_rng(zlib.crc32(f"{kind}-{how}".encode())))

    found = _verify_cli(case)  # offline, before any server touches the files
    assert found.returncode == 1, found.stdout + found.stderr
    flagged = [ln for ln in found.stdout.splitlines() if ln.strip().startswith(("DAMAGED", "MISSING"))]
    assert any(rel in ln for ln in flagged), found.stdout
    assert f"corpus {HEALTHY}: ok" in found.stdout

    metrics_port = _free_port()
    server = ServerProcess(case, "--metrics-port", str(metrics_port))
    try:
        channel = grpc.insecure_channel(server.address)
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=30)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = pb_grpc.TesseraStub(channel)
        with Client(server.address) as client:
            _check_healthy(client, pristine["healthy"])
            listed = {c.name: c for c in stub.ListCorpora(pb.ListCorporaRequest(), timeout=30).corpora}
            assert set(listed) == {HEALTHY, VICTIM} and not listed[HEALTHY].damaged
            described = stub.DescribeCorpus(pb.DescribeCorpusRequest(name=VICTIM), timeout=30).corpus
            expected = pristine["victim"]
            # The index alone is rebuilt from the verified vectors; no other file has a second copy.
            assert described.damaged == (kind != "index"), described.damage
            if not described.damaged:  # fully recovered: every item there with its exact vector
                assert described.count == len(expected)
                got = {i["id"]: i["vector"] for i in client.get(VICTIM, list(expected), include_vectors=True)}
                assert got.keys() == expected.keys()
                assert all(np.allclose(got[i], v, atol=1e-6) for i, v in expected.items())
                hit = client.search([("vector", expected["v7"])], space=SPACE, corpora=[VICTIM], top_k=1).hits[0]
                assert hit.id == "v7"
                assert _damaged_count(metrics_port) == 0
            else:
                assert listed[VICTIM].damaged and rel in listed[VICTIM].damage
                vector = pb.Vector(values=expected["v7"].tolist())
                calls = {
                    "Get": pb.GetRequest(corpus=VICTIM, ids=["v7"], include_vectors=True),
                    "Delete": pb.DeleteRequest(corpus=VICTIM, ids=["v7"]),
                    "Upsert": pb.UpsertRequest(corpus=VICTIM, items=[pb.Item(id="new", vector=vector)]),
                    "Search": pb.SearchRequest(
                        space=SPACE,
                        corpora=[VICTIM],
                        top_k=1,
                        parts=[pb.QueryPart(content=pb.Content(modality=pb.MODALITY_VECTOR, vector=vector))],
                    ),
                }
                for method, request in calls.items():
                    code, message = _call(stub, method, request)
                    assert code in REFUSED, (method, code, message)
                    assert rel in message and repr(VICTIM) in message, (method, message)
                    assert str(case) not in message and "/tmp" not in message, (method, message)
                assert "/tmp" not in described.damage and str(case) not in described.damage
                assert _damaged_count(metrics_port) == 1
                try:
                    client.get(VICTIM, ["v7"])
                except TesseraError as exc:  # the Python client's typed error
                    assert isinstance(exc, (DataLoss, FailedPrecondition))
                else:
                    raise AssertionError("the client got an answer from a damaged corpus")
                # A routed search still answers from the healthy corpus, and says why the victim was skipped.
                routed = client.search([("vector", pristine["healthy"]["h3"])], space=SPACE, top_k=1)
                assert routed.hits[0].id == "h3" and any(c == VICTIM for c, _ in routed.skipped)
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=30)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        channel.close()
    finally:
        server.stop()
    assert not any(e.get("levelname") == "CRITICAL" for e in server.events)
    assert not any("Traceback" in str(e.get("message", "")) for e in server.events), server.events[-5:]
    shutil.rmtree(case, ignore_errors=True)
