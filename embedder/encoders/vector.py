"""Raw vectors: checked for dimension and finiteness, then L2-normalised."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..decode import decode_vector
from ..modality import Modality
from .base import BuildContext, Encoder, register


@register("identity_vector")
class VectorEncoder(Encoder):
    modality = Modality.VECTOR
    default_batch_size = 4096

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def prepare(self, content: Any) -> np.ndarray:
        return decode_vector(content, self.dim)

    def encode(self, batch: list[np.ndarray]) -> torch.Tensor:
        vectors = torch.from_numpy(np.stack(batch))
        return torch.nn.functional.normalize(vectors, dim=-1)

    def spec(self) -> dict[str, Any]:
        return {"type": self.kind}

    @property
    def inference(self) -> str:
        return "none"  # no model: vectors are only normalised

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], context: BuildContext) -> VectorEncoder:
        return cls(context.dim)
