"""A full disk: every refused write says RESOURCE_EXHAUSTED and names the disk, nothing is left half written,
nothing acknowledged is lost, reads go on, and writes (and a deferred snapshot) resume once space is freed.

The data directory lives on a 40 MB tmpfs the test mounts, which needs root (CI runs as root); without
it the tests fail, loudly, rather than skip. A filler file on the tmpfs takes most of it, so a few MB of
upserts fill the rest; deleting the filler is "space returns".
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import tessera
from benchmarks.reliability import ServerProcess
from tessera.background import ServerThread
from tessera.errors import ResourceExhausted, TesseraError
from tessera.index import corpus as corpus_module
from tessera.index import snapshotting
from tessera.index.diskspace import DiskFullError, DiskGuard, free_bytes, is_disk_full
from tessera.index.wal import WriteAheadLog
from tessera.service import status_of

DIM = 256  # 1 KiB a vector
TMPFS_MB = 40
SPACE = f"vectors:{DIM}"


# ---- the small disk ---------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail(
            "tests/test_disk_full.py needs root: it mounts a 40 MB tmpfs to fill (CI runs as root). "
            "Run it as root (sudo -E pytest tests/test_disk_full.py)."
        )
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=True)  # something still holds it open


def fill(disk: Path, leave_bytes: int) -> Path:
    """A filler file that leaves about `leave_bytes` free on `disk`."""
    filler = disk / "filler.bin"
    size = max(0, free_bytes(disk) - leave_bytes)
    with open(filler, "wb") as f:
        chunk = b"\0" * (1 << 20)
        while size > 0:
            size -= f.write(chunk[: min(size, len(chunk))])
    return filler


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def tmp_leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".tmp" in p.name)


def lost_items(client: tessera.Client, corpus: str, acked: dict[str, np.ndarray]) -> int:
    lost = 0
    ids = sorted(acked)
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        found = {i["id"]: i for i in client.get(corpus, part, include_vectors=True)}
        for item_id in part:
            got = found.get(item_id)
            lost += got is None or not np.allclose(got["vector"], acked[item_id], atol=1e-6)
    return lost


def search_misses(client: tessera.Client, corpus: str, acked: dict[str, np.ndarray], rng: np.random.Generator) -> int:
    picks = rng.choice(sorted(acked), size=min(10, len(acked)), replace=False).tolist()
    misses = 0
    for item_id in picks:
        hits = client.search([("vector", acked[item_id])], space=SPACE, corpora=[corpus], top_k=1)
        misses += not hits.hits or hits.hits[0].id != item_id
    return misses


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


# ---- 1. the disk fills through upserts --------------------------------------------------------
def test_filling_the_disk_through_upserts_refuses_cleanly_and_recovers_without_restart(small_disk: Path) -> None:
    started = time.monotonic()
    rng = np.random.default_rng(0)
    data = small_disk / "data"
    filler = fill(small_disk, leave_bytes=10 << 20)  # ~10 MB for the corpus: log, snapshots and all
    # A snapshot every 2 MB of log, as under load: snapshots fail for space too, and must clean up.
    server = ServerProcess(data, env={"TESSERA_SNAPSHOT_WAL_MB": "2"})
    acked: dict[str, np.ndarray] = {}
    refused_ids: list[str] = []
    codes: dict[str, int] = {}
    messages: list[str] = []
    try:
        with tessera.connect(server.address, timeout=60) as client:
            client.create_corpus("docs", space=SPACE, modality="vector", index="Flat")
            batch = 0
            while codes.get("RESOURCE_EXHAUSTED", 0) < 20 and batch < 2000:
                ids = [f"b{batch}-{i}" for i in range(64)]
                vectors = unit_vectors(rng, 64)
                try:
                    client.upsert("docs", [{"id": i, "vector": v} for i, v in zip(ids, vectors, strict=True)])
                except TesseraError as exc:
                    codes[exc.code] = codes.get(exc.code, 0) + 1
                    messages.append(exc.message)
                    refused_ids += ids
                else:
                    acked.update(zip(ids, vectors, strict=True))
                batch += 1
            refusals = codes.get("RESOURCE_EXHAUSTED", 0)
            print(f"\nfill: {len(acked)} items acknowledged in {len(acked) // 64} calls, refusals by code {codes}")
            print(f"first refusal: {messages[0]}")
            assert refusals == 20 and codes.get("INTERNAL", 0) == 0 and sum(codes.values()) == 20, codes
            assert all(str(data) in m and "free" in m for m in messages), messages[:3]
            assert all("no space left" in m or "--min-free-mb" in m for m in messages), messages[:3]
            # Reads keep working while the disk is full, and the refused writes left nothing behind.
            assert client.describe_corpus("docs")["count"] == len(acked)
            assert lost_items(client, "docs", acked) == 0
            assert search_misses(client, "docs", acked, rng) == 0
            assert client.get("docs", refused_ids[:500]) == []
            assert client.health() == "SERVING"
            assert tmp_leftovers(data) == [], "a failed write left its temporary files"
            # Space returns: writes resume at once, no restart.
            filler.unlink()
            ids = [f"after-{i}" for i in range(64)]
            vectors = unit_vectors(rng, 64)
            assert client.upsert("docs", [{"id": i, "vector": v} for i, v in zip(ids, vectors, strict=True)]) == 64
            acked.update(zip(ids, vectors, strict=True))
            # ... and the snapshots deferred while the disk was full run again.
            deferred = [e for e in server.events if e.get("event") == "snapshot_deferred"]
            assert deferred and all(str(data) in e["reason"] for e in deferred)
            assert wait_for(lambda: any(e.get("event") == "snapshot_resumed" for e in server.events), 20)
            internal = [e for e in server.events if e.get("level") == "error"]
            assert internal == [], internal[:2]
            assert any(e.get("event") == "write_refused_disk_full" for e in server.events)
        server.stop()
        assert server.process.returncode == 0
        # An earlier run killed mid-write left these; the next start must remove them.
        snapshots = data / "corpora" / "docs" / "snapshots"
        (snapshots / "snap-000000999999.tmp").mkdir()
        (snapshots / "snap-000000999999.tmp" / "vectors.arrow").write_bytes(b"\0" * 4096)
        (data / "corpora" / "docs" / "manifest.json.tmp").write_text("{")
        server = ServerProcess(data)
        with tessera.connect(server.address, timeout=60) as client:
            assert client.describe_corpus("docs")["count"] == len(acked)
            lost = lost_items(client, "docs", acked)
            assert lost == 0
            assert client.get("docs", refused_ids[:500]) == []
            assert search_misses(client, "docs", acked, rng) == 0
        leftovers = tmp_leftovers(data)
        assert leftovers == []
    finally:
        server.stop()
    seconds = time.monotonic() - started
    print(f"after restart: lost {lost}, tmp leftovers {len(leftovers)}; {seconds:.1f} s")


# ---- 2. a snapshot fails for space while the log still has room --------------------------------
def test_a_snapshot_without_room_is_deferred_logged_cleaned_up_and_runs_when_space_returns(
    small_disk: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    started = time.monotonic()
    caplog.set_level(logging.INFO, logger="tessera.index.corpus")
    monkeypatch.setattr(snapshotting, "SNAPSHOT_WAL_BYTES", 1 << 40)  # no snapshot while loading
    monkeypatch.setattr(snapshotting, "SNAPSHOT_RETRY_BACKOFF_S", (60.0, 60.0))  # only returning space retries
    rng = np.random.default_rng(1)
    data = small_disk / "data"
    server = ServerThread(data, batching=False).start()
    acked: dict[str, np.ndarray] = {}

    def upsert(client: tessera.Client, prefix: str, n: int) -> None:
        ids = [f"{prefix}-{i}" for i in range(n)]
        vectors = unit_vectors(rng, n)
        assert client.upsert("docs", [{"id": i, "vector": v} for i, v in zip(ids, vectors, strict=True)]) == n
        acked.update(zip(ids, vectors, strict=True))

    def events(name: str) -> list[dict]:
        return [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == name]

    try:
        with tessera.connect(server.address, timeout=60) as client:
            client.create_corpus("docs", space=SPACE, modality="vector", index="Flat")
            for b in range(12):  # ~6 MB of vectors, all in the log
                upsert(client, f"load{b}", 512)
            corpus_dir = data / "corpora" / "docs"
            manifest_before = (corpus_dir / "manifest.json").read_text()
            # Room for log appends (3 MB), not for a snapshot of ~6 MB.
            filler = fill(small_disk, leave_bytes=3 << 20)
            monkeypatch.setattr(snapshotting, "SNAPSHOT_WAL_BYTES", 1 << 20)
            upsert(client, "trigger", 64)  # acknowledged: the log had room; it asks for a snapshot
            assert wait_for(lambda: bool(events("snapshot_deferred")), 20)
            deferred = events("snapshot_deferred")[0]
            print(f"\nsnapshot_deferred: {deferred}")
            assert str(data) in deferred["reason"] and "free" in deferred["reason"]
            assert deferred["free_bytes"] > 1 << 20  # what it had written was removed again
            assert tmp_leftovers(data) == [] and not list((corpus_dir / "snapshots").iterdir())
            assert (corpus_dir / "manifest.json").read_text() == manifest_before
            # Writes and reads go on while the snapshot waits.
            upsert(client, "meanwhile", 64)
            assert lost_items(client, "docs", acked) == 0
            assert search_misses(client, "docs", acked, rng) == 0
            assert not events("snapshot_written")
            # Space returns; no write comes, yet the deferred snapshot runs.
            freed_at = time.monotonic()
            filler.unlink()
            assert wait_for(lambda: bool(events("snapshot_resumed")), 20)
            resumed_after = time.monotonic() - freed_at
            assert events("snapshot_written")
            assert server.running.engine.catalog.get("docs").wal_bytes() < 1 << 20
            assert [p.name for p in (corpus_dir / "snapshots").iterdir()] == [
                events("snapshot_written")[-1]["snapshot"]
            ]
            assert tmp_leftovers(data) == []
            upsert(client, "after", 64)
    finally:
        server.stop()
    server = ServerThread(data, batching=False).start()
    try:
        with tessera.connect(server.address, timeout=60) as client:
            assert client.describe_corpus("docs")["count"] == len(acked)
            lost = lost_items(client, "docs", acked)
            assert lost == 0
        assert tmp_leftovers(data) == []
    finally:
        server.stop()
    print(f"snapshot ran {resumed_after:.1f} s after space returned; lost {lost}; {time.monotonic() - started:.1f} s")


# ---- 3. the low-space threshold ---------------------------------------------------------------
def test_the_min_free_threshold_refuses_upserts_before_the_disk_is_full(small_disk: Path) -> None:
    data = small_disk / "data"
    server = ServerThread(data, batching=False, min_free_bytes=8 << 20).start()
    try:
        gauge = server.metrics.registry.get_sample_value
        with tessera.connect(server.address, timeout=60) as client:
            client.create_corpus("docs", space=SPACE, modality="vector")
            item = {"id": "a", "vector": unit_vectors(np.random.default_rng(2), 1)[0]}
            assert client.upsert("docs", [item]) == 1
            filler = fill(small_disk, leave_bytes=4 << 20)
            assert gauge("tessera_data_dir_free_bytes") < 8 << 20
            assert gauge("tessera_data_dir_min_free_bytes") == 8 << 20
            with pytest.raises(ResourceExhausted) as refused:
                client.upsert("docs", [{**item, "id": "b"}])
            assert str(data) in refused.value.message and "--min-free-mb" in refused.value.message
            assert "MiB free" in refused.value.message
            with pytest.raises(ResourceExhausted):
                client.create_corpus("more", space=SPACE, modality="vector")
            assert client.delete("docs", ids=["a"]) == 1  # deletes are how space is won back: allowed
            assert [i["id"] for i in client.get("docs", ["a", "b"])] == []
            filler.unlink()
            assert gauge("tessera_data_dir_free_bytes") > 8 << 20
            assert client.upsert("docs", [{**item, "id": "b"}]) == 1
            assert not (data / "corpora" / "more").exists()
    finally:
        server.stop()


# ---- the log's rollback, and the error mapping, without a real disk ---------------------------
def test_a_log_append_that_fails_midway_leaves_no_record_and_no_torn_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wal = WriteAheadLog(tmp_path / "wal.log")
    wal.append([b"first"])
    size = (tmp_path / "wal.log").stat().st_size
    real_pwrite = os.pwrite

    def half_then_full(fd: int, data: bytes, offset: int) -> int:
        if len(data) > 4:
            return real_pwrite(fd, bytes(data[: len(data) // 2]), offset)  # a short write ...
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # ... then the disk is full

    monkeypatch.setattr(os, "pwrite", half_then_full)
    with pytest.raises(OSError) as failed:
        wal.append([b"refused record"])
    assert is_disk_full(failed.value)
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    assert (tmp_path / "wal.log").stat().st_size == size  # rolled back, not torn
    assert wal.append([b"second"]) == 2  # the refused record's seqno is reused
    wal.close()
    reopened = WriteAheadLog(tmp_path / "wal.log")
    assert list(reopened.replay()) == [(1, b"first"), (2, b"second")]
    assert reopened.report.torn_bytes == 0
    reopened.close()


def test_a_failed_fsync_rolls_back_and_a_failed_rollback_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wal = WriteAheadLog(tmp_path / "wal.log")
    wal.append([b"first"])
    real_fsync, real_ftruncate = os.fsync, os.ftruncate
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EDQUOT, "Disk quota exceeded")))
    monkeypatch.setattr(os, "ftruncate", lambda fd, n: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OSError):
        wal.append([b"refused"])
    monkeypatch.setattr(os, "fsync", real_fsync)
    monkeypatch.setattr(os, "ftruncate", real_ftruncate)
    assert wal.append([b"second"]) == 2  # the leftover is cut first
    wal.close()
    assert list(WriteAheadLog(tmp_path / "wal.log").replay()) == [(1, b"first"), (2, b"second")]


def test_disk_full_errors_map_to_resource_exhausted_with_the_directory(tmp_path: Path) -> None:
    guard = DiskGuard(tmp_path)
    refusal = guard.refusal(OSError(errno.ENOSPC, "No space left on device"), "upsert of 1 items into corpus 'c'")
    assert isinstance(refusal, DiskFullError) and refusal.errno == errno.ENOSPC
    code, message = status_of(refusal)
    assert code == "RESOURCE_EXHAUSTED" and str(tmp_path) in message and "free" in message
    faiss_text = RuntimeError("write error in /x/index.faiss: 2097107 != 4000000 (No space left on device)")
    safetensors_text = Exception("Error while serializing: I/O error: No space left on device (os error 28)")
    assert is_disk_full(faiss_text) and is_disk_full(safetensors_text)
    assert status_of(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "f")))[0] == "RESOURCE_EXHAUSTED"
    assert status_of(OSError(errno.EIO, "I/O error"))[0] == "INTERNAL"
    assert status_of(ValueError("item 'No space left on device' has no vector"))[0] == "INVALID_ARGUMENT"
    assert guard.refusal(RuntimeError("something else"), "x") is None


# ---- the other write paths: an index file in a snapshot, `tessera embed` parts, a saved space ---
def test_a_snapshot_failing_in_its_index_file_leaves_the_corpus_as_it_was(small_disk: Path) -> None:
    from tessera.index.catalog import Catalog

    rng = np.random.default_rng(3)
    catalog = Catalog(small_disk / "data")
    corpus = catalog.create("docs", space=SPACE, modality="vector", dim=DIM, index="HNSW32")
    vectors = unit_vectors(rng, 3000)
    corpus.upsert([corpus_module.Item(id=f"i{n}", vector=v) for n, v in enumerate(vectors)])
    corpus.wait_idle()
    assert corpus.ann is not None  # the HNSW graph is built and goes into the snapshot's index file
    manifest = (corpus.path / "manifest.json").read_text()
    # Room for the vectors file (3 MB) and the payload, not for the graph beside them.
    filler = fill(small_disk, leave_bytes=vectors.nbytes + (1 << 20))
    with pytest.raises(DiskFullError) as refused:
        corpus.snapshot()
    assert str(small_disk / "data") in str(refused.value) and "free" in str(refused.value)
    assert "index.faiss" in str(refused.value.__cause__)  # faiss's own error, recognised as a full disk
    assert tmp_leftovers(small_disk / "data") == [] and not list((corpus.path / "snapshots").iterdir())
    assert (corpus.path / "manifest.json").read_text() == manifest
    assert corpus.search(vectors[7], k=1)[0][0].id == "i7"
    filler.unlink()
    corpus.snapshot()
    catalog.close()
    reopened = Catalog(small_disk / "data")
    docs = reopened.get("docs")
    assert len(docs) == 3000 and docs.recovery["replayed"] == 0 and docs.ann is not None
    reopened.close()


def test_an_embed_part_and_a_space_save_that_meet_a_full_disk_leave_no_temporary_files(small_disk: Path) -> None:
    import pyarrow as pa

    from tessera.embed_job.output import EmbeddingsWriter, output_schema
    from tessera.embedder import load_space, save_space

    out = small_disk / "embeddings"
    writer = EmbeddingsWriter(out, {"job": 1})
    writer.start(output_schema(DIM, pa.schema([]), {"space": SPACE}), 1)
    vectors = unit_vectors(np.random.default_rng(4), 4096)  # 4 MB
    filler = fill(small_disk, leave_bytes=1 << 20)
    guard = DiskGuard(out, label="output directory")
    with pytest.raises(DiskFullError) as refused, guard.writing("tessera embed"):
        writer.write_part(0, vectors, pa.table({"id": [f"v{i}" for i in range(4096)]}), [])
    assert str(out) in str(refused.value) and "free" in str(refused.value)
    assert tmp_leftovers(small_disk) == [] and writer.done == set()
    filler.unlink()
    writer.write_part(0, vectors, pa.table({"id": [f"v{i}" for i in range(4096)]}), [])
    assert writer.done == {0}

    filler = fill(small_disk, leave_bytes=0)
    with pytest.raises(Exception) as failed:
        save_space(load_space(SPACE), small_disk / "spaces" / "mine")
    assert is_disk_full(failed.value), repr(failed.value)
    assert status_of(failed.value)[0] == "RESOURCE_EXHAUSTED"
    assert not (small_disk / "spaces" / "mine").exists()
    assert [p.name for p in (small_disk / "spaces").iterdir()] == []  # the staging directory went too
    filler.unlink()
