"""Items as callers give them, validated into Arrow batches before anything is logged."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from tessera.embedder.quoting import quote

META_PREFIX = "meta:"
PAYLOAD_COLUMNS = ("id", "text", "data", "uri")
MAX_ID_BYTES = 1024
# Ids are stored as data and never used as paths; control characters (NUL first) are refused because
# they break every log, CSV and terminal an id later passes through.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ItemError(ValueError):
    """An item cannot be stored; the message names it and says what to fix."""


@dataclass
class Item:
    id: str
    vector: np.ndarray | Sequence[float] | None = None
    text: str | None = None  # the content, when it is text
    data: bytes | None = None  # the content, when it is media bytes
    uri: str | None = None  # where the content lives, when it is not stored
    metadata: dict[str, Any] = field(default_factory=dict)


def _check_metadata_value(item_id: str, key: str, value: Any) -> None:
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ItemError(f"item {quote(item_id)}: metadata {quote(key)} is {value}; use finite numbers")
        return
    if isinstance(value, (list, tuple)):
        for element in value:
            if isinstance(element, (list, tuple, Mapping)):
                raise ItemError(
                    f"item {quote(item_id)}: metadata {quote(key)} nests a list or object; use scalars in lists"
                )
            _check_metadata_value(item_id, key, element)
        return
    kind = type(value).__name__
    raise ItemError(f"item {quote(item_id)}: metadata {quote(key)} is a {kind}; use JSON scalars or lists of scalars")


def check_id(item_id: str, row: int) -> None:
    """An id's rules beyond being a non-empty string: at most MAX_ID_BYTES, no control characters."""
    if len(item_id.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        raise ItemError(f"item at position {row}: id is longer than {MAX_ID_BYTES} bytes")
    if _CONTROL.search(item_id):
        raise ItemError(f"item at position {row}: id {quote(item_id)} contains a control character (NUL, newline, ...)")


def validate_items(items: Sequence[Item], dim: int) -> tuple[list[str], np.ndarray]:
    """Ids and an (n, dim) float32 matrix of unit vectors, or ItemError naming the first bad item."""
    ids: list[str] = []
    seen: set[str] = set()
    vectors = np.empty((len(items), dim), dtype=np.float32)
    for row, item in enumerate(items):
        if not isinstance(item.id, str) or not item.id:
            raise ItemError(f"item at position {row}: id must be a non-empty string")
        check_id(item.id, row)
        if item.id in seen:
            raise ItemError(f"item {quote(item.id)} appears twice in one batch")
        seen.add(item.id)
        if item.vector is None:
            raise ItemError(f"item {quote(item.id)} has no vector; embed it first or send content to the server")
        vector = np.asarray(item.vector, dtype=np.float32).reshape(-1)
        if vector.shape[0] != dim:
            raise ItemError(f"item {quote(item.id)}: vector has dimension {vector.shape[0]}; this corpus stores {dim}")
        if not np.isfinite(vector).all():
            raise ItemError(f"item {quote(item.id)}: vector contains NaN or infinity")
        norm = float(np.linalg.norm(vector))
        if norm == 0.0:
            raise ItemError(f"item {quote(item.id)}: vector is all zeros and has no direction")
        vectors[row] = vector / norm
        if item.text is not None and item.data is not None:
            raise ItemError(f"item {quote(item.id)}: give text or data, not both")
        if not isinstance(item.metadata, Mapping):
            raise ItemError(f"item {quote(item.id)}: metadata must be a JSON object")
        for key, value in item.metadata.items():
            if not isinstance(key, str) or not key:
                raise ItemError(f"item {quote(item.id)}: metadata keys must be non-empty strings")
            _check_metadata_value(item.id, key, value)
        ids.append(item.id)
    return ids, vectors


def payload_table(items: Sequence[Item]) -> pa.Table:
    """id/text/data/uri plus one `meta:<field>` column per metadata field (Arrow infers the types)."""
    columns: dict[str, pa.Array] = {
        "id": pa.array([i.id for i in items], pa.string()),
        "text": pa.array([i.text for i in items], pa.string()),
        "data": pa.array([i.data for i in items], pa.binary()),
        "uri": pa.array([i.uri for i in items], pa.string()),
    }
    keys: dict[str, None] = {}
    for item in items:
        keys.update(dict.fromkeys(item.metadata))
    for key in keys:
        values = [item.metadata.get(key) for item in items]
        try:
            columns[META_PREFIX + key] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ItemError(
                f"metadata {quote(key)} mixes types within this batch ({exc}); use one type per field"
            ) from None
    return pa.table(columns)


def metadata_of(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k[len(META_PREFIX) :]: v for k, v in row.items() if k.startswith(META_PREFIX) and v is not None}


def encode_metadata(metadata: Mapping[str, Any]) -> str:
    return json.dumps(metadata, separators=(",", ":"), ensure_ascii=False)
