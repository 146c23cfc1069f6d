"""Between protobuf messages and the engine's Python values (server side)."""

from __future__ import annotations

from typing import Any

from tessera.embedder import Modality
from tessera.index.search import Hit
from tessera.v1 import tessera_pb2 as pb

from .engine import Content
from .wire import MODALITY_TO_PB, dict_to_struct, modality_from_pb, vector_from_pb, vector_to_pb


def content_from_pb(message: pb.Content, where: str, unspecified_ok: bool = False) -> Content:
    """`unspecified_ok` (an upserted item's content): MODALITY_UNSPECIFIED means the corpus's modality (None)."""
    if unspecified_ok and message.modality == pb.MODALITY_UNSPECIFIED and message.WhichOneof("body") != "vector":
        modality = None
    else:
        modality = modality_from_pb(message.modality, f"{where}.modality")
    kind = message.WhichOneof("body")
    if kind is None:
        raise ValueError(f"{where}: give text, data, uri or vector")
    if kind == "text":
        value: Any = message.text
    elif kind == "data":
        value = message.data
    elif kind == "vector":
        value = vector_from_pb(message.vector, f"{where}.vector")
    else:
        raise ValueError(f"{where}: uri content is not fetched by this server; send the bytes in `data`")
    if kind == "vector" and modality is not Modality.VECTOR:
        raise ValueError(f"{where}: a vector body needs modality MODALITY_VECTOR")
    return Content(modality, value)


def hit_to_pb(hit: Hit) -> pb.Hit:
    """The one place a hit becomes a wire message (its vector too, when the search asked for it)."""
    out = pb.Hit(
        id=hit.id,
        corpus=hit.corpus,
        modality=MODALITY_TO_PB[hit.modality],
        score=hit.score,
        raw_score=hit.raw_score,
        calibrated_score=hit.calibrated_score,
        metadata=dict_to_struct(hit.metadata),
        text=hit.text or "",
        uri=hit.uri or "",
    )
    if hit.vector is not None:
        out.vector.CopyFrom(vector_to_pb(hit.vector))
    return out
