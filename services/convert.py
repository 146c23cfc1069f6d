"""Between protobuf messages and the engine's Python values."""

from __future__ import annotations

from typing import Any

import numpy as np
from google.protobuf import json_format, struct_pb2

from embedder import Modality
from index.routing import FusedHit
from proto.tessera.v1 import tessera_pb2 as pb

from .engine import Content

MODALITY_TO_PB = {
    Modality.TEXT: pb.MODALITY_TEXT,
    Modality.IMAGE: pb.MODALITY_IMAGE,
    Modality.AUDIO: pb.MODALITY_AUDIO,
    Modality.VIDEO: pb.MODALITY_VIDEO,
    Modality.VECTOR: pb.MODALITY_VECTOR,
}
PB_TO_MODALITY = {v: k for k, v in MODALITY_TO_PB.items()}
FUSION_FROM_PB = {
    pb.FUSION_UNSPECIFIED: "calibrated",
    pb.FUSION_CALIBRATED: "calibrated",
    pb.FUSION_PAIR: "pair",
    pb.FUSION_RRF: "rrf",
    pb.FUSION_RAW: "raw",
}


def modality_from_pb(value: int, where: str = "modality") -> Modality:
    if value not in PB_TO_MODALITY:
        raise ValueError(f"{where}: set a modality (MODALITY_TEXT, MODALITY_IMAGE, ...), got {value}")
    return PB_TO_MODALITY[value]


def vector_from_pb(message: pb.Vector, where: str) -> np.ndarray:
    if message.packed:
        if len(message.packed) % 4:
            raise ValueError(f"{where}: packed vector has {len(message.packed)} bytes, not a multiple of 4")
        return np.frombuffer(message.packed, dtype="<f4").astype(np.float32)
    if message.values:
        return np.asarray(message.values, dtype=np.float32)
    raise ValueError(f"{where}: the vector is empty")


def vector_to_pb(vector: np.ndarray) -> pb.Vector:
    return pb.Vector(packed=np.ascontiguousarray(vector, dtype="<f4").tobytes())


def content_from_pb(message: pb.Content, where: str) -> Content:
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


def struct_to_dict(message: struct_pb2.Struct) -> dict[str, Any]:
    data = json_format.MessageToDict(message)
    # JSON has one number type; keep integers integers so filters and metadata types stay stable.
    return {k: _integral(v) for k, v in data.items()}


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, list):
        return [_integral(v) for v in value]
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    return value


def dict_to_struct(data: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(data)
    return message


def hit_to_pb(hit: FusedHit, vector: np.ndarray | None = None) -> pb.Hit:
    out = pb.Hit(
        id=hit.id,
        corpus=hit.corpus,
        modality=MODALITY_TO_PB[Modality.parse(hit.modality)],
        score=hit.score,
        raw_score=hit.raw_score,
        calibrated_score=hit.calibrated_score,
        metadata=dict_to_struct(hit.metadata),
        text=hit.text or "",
        uri=hit.uri or "",
    )
    if vector is not None:
        out.vector.CopyFrom(vector_to_pb(vector))
    return out
