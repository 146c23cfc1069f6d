"""Snapshot files of a corpus: vectors as an Arrow IPC file (memory-mappable), payloads as Parquet.

A snapshot is written into a temporary directory and renamed into place, then
the manifest is switched to it atomically; only after that is the log emptied.
A crash at any point leaves either the old snapshot plus the full log, or the
new snapshot plus a log whose older records replay as no-ops (their seqnos are
at or below the snapshot's).

Every file written gets its size and xxh3-64 digest recorded (`write_snapshot` returns
them for the manifest, and keeps a copy of the manifest inside the snapshot, from which
`tessera corpus repair` can rebuild a lost one). `read_snapshot` reads each file whole
(or maps it), checks it against its record before parsing it, and raises FileDamage
naming the file relative to the corpus directory; a damaged index is reported, not
raised, since the vectors can rebuild it.

A write that fails midway (a full disk) removes its temporary files before the
error goes up; `remove_leftovers` clears what a killed process left behind.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .durable import fsync_dir, write_atomic
from .integrity import (
    INDEX,
    MANIFEST,
    PAYLOAD,
    VECTORS,
    FileDamage,
    file_record,
    is_index_file,
    manifest_bytes,
    mismatch,
    snapshot_rel,
)
from .records import vector_column, vectors_of

TMP_SUFFIX = ".tmp"


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write a manifest atomically, with the digest of its fields that a load checks."""
    write_atomic(path, manifest_bytes(data))


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def write_snapshot(
    directory: Path,
    vectors: np.ndarray,
    payload: pa.Table,
    slots: np.ndarray,
    write_index: Any | None = None,
    manifest: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Write vectors (every slot, in order), live payloads with their slots, and optionally the index.

    Returns {file name: {"bytes", "xxh3_64"}} for the manifest's `snapshot_files`. With
    `manifest`, a copy of it that records those files is kept in the snapshot as well.
    """
    tmp = directory.with_name(directory.name + TMP_SUFFIX)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        table = pa.table({"vector": vector_column(vectors)}) if len(vectors) else None
        schema = pa.schema([("vector", pa.list_(pa.float32(), vectors.shape[1]))])
        with pa.OSFile(str(tmp / VECTORS), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            if table is not None:
                writer.write_table(table, max_chunksize=max(1, len(vectors)))
        pq.write_table(payload.append_column("slot", pa.array(slots, pa.int64())), tmp / PAYLOAD)
        if write_index is not None:
            write_index(tmp / INDEX)
        files = {name: file_record(tmp / name) for name in sorted(os.listdir(tmp))}
        if manifest is not None:
            with open(tmp / MANIFEST, "wb") as f:
                f.write(manifest_bytes({**manifest, "snapshot_files": files}))
        for name in os.listdir(tmp):
            _fsync_file(tmp / name)
        fsync_dir(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a failed snapshot leaves nothing taking space
        raise
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(tmp, directory)
    fsync_dir(directory.parent)
    return files


def remove_leftovers(corpus_dir: Path, snapshots: Path, keep: str | None) -> list[Path]:
    """Delete what interrupted writes left: temporary files and snapshot directories the manifest does not name.

    A snapshot directory other than `keep` is one a crash (or a full disk) left between its
    rename and the manifest switch, or an old one not yet removed after it: nothing reads it.
    Returns what was removed.
    """
    removed: list[Path] = []
    for stray in corpus_dir.glob("*" + TMP_SUFFIX):
        if stray.is_file():
            stray.unlink(missing_ok=True)
            removed.append(stray)
    if snapshots.is_dir():
        for entry in snapshots.iterdir():
            if entry.name == keep:
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


@dataclass
class LoadedSnapshot:
    vectors: np.ndarray
    payload: pa.Table
    slots: np.ndarray
    index_path: Path | None
    index_damage: FileDamage | None = None  # the index (or a side file) is missing or damaged: rebuild it


def _read_whole(path: Path) -> np.ndarray:
    """The file's bytes in one writable buffer (a loaded corpus keeps its vectors there)."""
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        buffer = np.empty(size, dtype=np.uint8)
        view, done = memoryview(buffer), 0
        while done < size:
            n = f.readinto(view[done:])
            if not n:
                break
            done += n
    return buffer[:done]


def _writable_view(vectors: np.ndarray, buffer: np.ndarray) -> np.ndarray:
    """`vectors` (a read-only Arrow view into `buffer`) as a writable array on the same bytes, not a copy."""
    offset = vectors.__array_interface__["data"][0] - buffer.__array_interface__["data"][0]
    if vectors.flags.c_contiguous and 0 <= offset and offset + vectors.nbytes <= buffer.nbytes and offset % 4 == 0:
        return np.ndarray(vectors.shape, dtype=np.float32, buffer=buffer, offset=offset)
    return np.array(vectors, dtype=np.float32)


def _what(exc: BaseException) -> str:
    return type(exc).__name__  # never the library's message: pyarrow's names the server's path


def read_snapshot(
    directory: Path,
    dim: int,
    *,
    mmap: bool,
    files: dict[str, dict[str, Any]] | None = None,
    snapshot: str | None = None,
    verify: bool = True,
) -> LoadedSnapshot:
    """Read and check a snapshot; raises FileDamage for damaged vectors or payloads.

    `files` is the manifest's record of what the snapshot wrote; None for one written before
    checksums, whose files are only parsed and checked against each other. With `mmap`, the
    vectors stay on disk, paged in on demand and read-only (verifying reads them once).
    `verify=False` skips the digests (benchmarks/verify_cost.py measures what they cost).
    """
    snapshot = snapshot or directory.name
    if not directory.is_dir():
        raise FileDamage(snapshot_rel(snapshot), "is missing (the snapshot directory the manifest names)")
    files = files or None
    check = verify and files is not None
    for name in (VECTORS, PAYLOAD):
        if files is not None and name not in files:
            raise FileDamage(MANIFEST, f"does not record the snapshot's {name} (overwritten)")
        if not (directory / name).is_file():
            raise FileDamage(snapshot_rel(snapshot, name), "is missing")

    rel = snapshot_rel(snapshot, VECTORS)
    try:
        if mmap:
            buffer = pa.memory_map(str(directory / VECTORS)).read_buffer()
        else:
            buffer = _read_whole(directory / VECTORS)
    except OSError as exc:
        raise FileDamage(rel, f"cannot be read ({exc.strerror or _what(exc)})") from None
    problem = mismatch(files.get(VECTORS), buffer.size, buffer) if check else None
    if problem:
        raise FileDamage(rel, problem)
    try:
        table = pa.ipc.open_file(pa.py_buffer(buffer) if not mmap else buffer).read_all()
    except Exception as exc:
        raise FileDamage(rel, f"cannot be read as an Arrow IPC file ({_what(exc)})") from None
    expected_type = pa.list_(pa.float32(), dim)
    if table.schema.names != ["vector"] or table.schema.field("vector").type != expected_type:
        raise FileDamage(rel, f"does not hold {dim}-d float32 vectors (its schema is {table.schema.types})")
    if table.num_rows:
        vectors = vectors_of(table.column("vector"), dim)
        if not mmap:
            vectors = _writable_view(vectors, buffer)
    else:
        vectors = np.empty((0, dim), dtype=np.float32)

    rel = snapshot_rel(snapshot, PAYLOAD)
    try:
        data = (directory / PAYLOAD).read_bytes()
    except OSError as exc:
        raise FileDamage(rel, f"cannot be read ({exc.strerror or _what(exc)})") from None
    problem = mismatch(files.get(PAYLOAD), len(data), data) if check else None
    if problem:
        raise FileDamage(rel, problem)
    try:
        payload = pq.read_table(pa.BufferReader(data))
    except Exception as exc:
        raise FileDamage(rel, f"cannot be read as a Parquet file ({_what(exc)})") from None
    if "slot" not in payload.column_names or "id" not in payload.column_names:
        raise FileDamage(rel, "lacks its id or slot column")
    slots = payload.column("slot").to_numpy(zero_copy_only=False)
    ids = payload.column("id")
    if (
        slots.dtype.kind not in "iu"
        or (len(slots) and (slots.min() < 0 or slots.max() >= len(vectors)))
        or len(np.unique(slots)) != len(slots)
        or ids.null_count
        or len(ids.unique()) != len(ids)
    ):
        raise FileDamage(rel, f"does not match {snapshot_rel(snapshot, VECTORS)} (slots or ids out of place)")
    slots = slots.astype(np.int64)

    index_path = directory / INDEX
    index_damage = None
    for name in sorted(files or ()):
        if not is_index_file(name):
            continue
        rel = snapshot_rel(snapshot, name)
        try:
            problem = None
            if check:
                actual = file_record(directory / name)
                problem = mismatch(files[name], actual["bytes"], hexdigest=actual["xxh3_64"])
        except FileNotFoundError:
            problem = "is missing"
        except OSError as exc:
            problem = f"cannot be read ({exc.strerror or _what(exc)})"
        if problem and index_damage is None:
            index_damage = FileDamage(rel, problem)
    return LoadedSnapshot(
        vectors,
        payload.drop_columns(["slot"]),
        slots,
        index_path if index_path.exists() or index_damage else None,
        index_damage,
    )
