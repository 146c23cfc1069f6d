"""Protobuf messages to and from plain Python values, shared by the client and the server.

Nothing here loads a model or opens an index, so `tessera.client` can import it
without torch or FAISS: an application that only calls the service stays small.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from google.protobuf import json_format, struct_pb2

from tessera.embedder.modality import Modality
from tessera.index.fusion import Fusion
from tessera.v1 import tessera_pb2 as pb

MODALITY_TO_PB = {
    Modality.TEXT: pb.MODALITY_TEXT,
    Modality.IMAGE: pb.MODALITY_IMAGE,
    Modality.AUDIO: pb.MODALITY_AUDIO,
    Modality.VIDEO: pb.MODALITY_VIDEO,
    Modality.VECTOR: pb.MODALITY_VECTOR,
}
PB_TO_MODALITY = {v: k for k, v in MODALITY_TO_PB.items()}


FUSION_TO_PB = {
    Fusion.CALIBRATED: pb.FUSION_CALIBRATED,
    Fusion.PAIR: pb.FUSION_PAIR,
    Fusion.RRF: pb.FUSION_RRF,
    Fusion.RAW: pb.FUSION_RAW,
}
PB_TO_FUSION = {pb.FUSION_UNSPECIFIED: Fusion.CALIBRATED, **{v: k for k, v in FUSION_TO_PB.items()}}


def fusion_from_pb(value: int) -> Fusion:
    """The fusion a SearchRequest asks for; an enum number this server does not know is refused, as for modality."""
    if value not in PB_TO_FUSION:
        names = ", ".join(pb.Fusion.Name(v) for v in FUSION_TO_PB.values())
        raise ValueError(f"fusion: {value} is not a Fusion value ({names})")
    return PB_TO_FUSION[value]


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


def vector_to_pb(vector: Any) -> pb.Vector:
    """Packed little-endian float32, the form this API documents for vectors it sends."""
    return pb.Vector(packed=np.ascontiguousarray(vector, dtype="<f4").tobytes())


def struct_to_dict(message: struct_pb2.Struct) -> dict[str, Any]:
    data = json_format.MessageToDict(message)
    # JSON has one number type; keep integers integers so filters and metadata types stay stable.
    # Keys come back sorted: a Struct is a map, and stored metadata has no order of its own.
    return {k: _integral(data[k]) for k in sorted(data)}


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
