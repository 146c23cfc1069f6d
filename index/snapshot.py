"""Snapshot files of a corpus: vectors as an Arrow IPC file (memory-mappable), payloads as Parquet.

A snapshot is written into a temporary directory and renamed into place, then
the manifest is switched to it atomically; only after that is the log emptied.
A crash at any point leaves either the old snapshot plus the full log, or the
new snapshot plus a log whose older records replay as no-ops (their seqnos are
at or below the snapshot's).

A write that fails midway (a full disk) removes its temporary files before the
error goes up; `remove_leftovers` clears what a killed process left behind.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .durable import fsync_dir, write_atomic
from .records import vector_column, vectors_of

VECTORS = "vectors.arrow"
PAYLOAD = "payload.parquet"
INDEX = "index.faiss"
TMP_SUFFIX = ".tmp"


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, indent=2).encode())


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def write_snapshot(
    directory: Path,
    vectors: np.ndarray,
    payload: pa.Table,
    slots: np.ndarray,
    write_index: Any | None = None,
) -> None:
    """Write vectors (every slot, in order), live payloads with their slots, and optionally the index."""
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
        for name in os.listdir(tmp):
            _fsync_file(tmp / name)
        fsync_dir(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a failed snapshot leaves nothing taking space
        raise
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(tmp, directory)
    fsync_dir(directory.parent)


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


def read_snapshot(directory: Path, dim: int, *, mmap: bool) -> LoadedSnapshot:
    """With `mmap`, the vectors stay on disk, paged in on demand and read-only."""
    source = pa.memory_map(str(directory / VECTORS)) if mmap else pa.OSFile(str(directory / VECTORS))
    table = pa.ipc.open_file(source).read_all()
    if table.num_rows:
        vectors = vectors_of(table.column("vector"), dim)
        if not mmap:
            vectors = np.array(vectors, dtype=np.float32)
    else:
        vectors = np.empty((0, dim), dtype=np.float32)
    payload = pq.read_table(directory / PAYLOAD)
    slots = payload.column("slot").to_numpy().astype(np.int64)
    index_path = directory / INDEX
    return LoadedSnapshot(vectors, payload.drop_columns(["slot"]), slots, index_path if index_path.exists() else None)
