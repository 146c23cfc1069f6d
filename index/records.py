"""What a corpus writes into its write-ahead log: upsert batches and deletes."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

UPSERT = b"U"
DELETE = b"D"


@dataclass
class Upsert:
    payload: pa.Table  # id/text/data/uri/meta:* columns
    vectors: np.ndarray  # (n, dim) float32, unit rows


@dataclass
class Delete:
    ids: list[str]


def vector_column(vectors: np.ndarray) -> pa.FixedSizeListArray:
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])


def vectors_of(column: pa.ChunkedArray | pa.Array, dim: int) -> np.ndarray:
    """Zero-copy where Arrow allows (one chunk, no nulls), as an (n, dim) float32 array."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    values = column.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(-1, dim)


def encode_upsert(record: Upsert) -> bytes:
    table = record.payload.append_column("vector", vector_column(record.vectors))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return UPSERT + sink.getvalue().to_pybytes()


def encode_delete(record: Delete) -> bytes:
    return DELETE + json.dumps(record.ids, ensure_ascii=False).encode()


def decode(payload: bytes, dim: int) -> Upsert | Delete:
    kind, body = payload[:1], payload[1:]
    if kind == UPSERT:
        table = pa.ipc.open_stream(pa.py_buffer(body)).read_all()
        vectors = vectors_of(table.column("vector"), dim)
        return Upsert(table.drop_columns(["vector"]), np.array(vectors, dtype=np.float32))
    if kind == DELETE:
        return Delete(json.loads(body))
    raise ValueError(f"unknown log record kind {kind!r}")
