"""Video as the mean of its sampled frames' image embeddings, optionally mixed with its audio track."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..decode import decode_video
from ..modality import Modality
from .base import BuildContext, Encoder, l2_normalize, register


@dataclass(frozen=True)
class PreparedVideo:
    frames: list[Any]
    audio: Any | None


@register("frame_pool_video")
class FramePoolVideoEncoder(Encoder):
    """Reuses the space's image encoder (and audio encoder, when `audio_weight` > 0); owns no weights."""

    modality = Modality.VIDEO
    default_batch_size = 8

    def __init__(
        self, image: Encoder, frames: int = 8, audio: Encoder | None = None, audio_weight: float = 0.0
    ) -> None:
        if not hasattr(image, "preprocess"):
            raise ValueError(f"the video encoder needs an image encoder with a preprocess step, not {image.kind!r}")
        if audio_weight > 0 and audio is None:
            raise ValueError("audio_weight > 0 needs an audio encoder in the same space")
        self.image, self.audio = image, audio
        self.frames, self.audio_weight = frames, audio_weight
        self.dim = image.dim

    def prepare(self, content: Any) -> PreparedVideo:
        audio_rate = getattr(self.audio, "sample_rate", None) if self.audio_weight > 0 else None
        clip = decode_video(content, self.frames, audio_rate)
        frames = [self.image.preprocess(frame) for frame in clip.frames]  # type: ignore[attr-defined]
        audio = self.audio.preprocess(clip.audio) if clip.audio is not None and self.audio is not None else None  # type: ignore[attr-defined]
        return PreparedVideo(frames, audio)

    def encode(self, batch: list[PreparedVideo]) -> torch.Tensor:
        counts = [len(item.frames) for item in batch]
        frame_vectors = self.image.encode([frame for item in batch for frame in item.frames])
        pooled = torch.stack([chunk.mean(dim=0) for chunk in torch.split(frame_vectors, counts)])
        with_audio = [i for i, item in enumerate(batch) if item.audio is not None]
        if with_audio:
            audio_vectors = self.audio.encode([batch[i].audio for i in with_audio])  # type: ignore[union-attr]
            mix = l2_normalize(pooled[with_audio]) * (1 - self.audio_weight) + audio_vectors * self.audio_weight
            pooled[with_audio] = mix
        return l2_normalize(pooled)

    def spec(self) -> dict[str, Any]:
        return {"type": self.kind, "frames": self.frames, "audio_weight": self.audio_weight}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], context: BuildContext) -> FramePoolVideoEncoder:
        if Modality.IMAGE not in context.built:
            raise ValueError("a frame_pool_video encoder needs an image encoder in the same space")
        return cls(
            image=context.built[Modality.IMAGE],
            frames=int(spec.get("frames", 8)),
            audio=context.built.get(Modality.AUDIO),
            audio_weight=float(spec.get("audio_weight", 0.0)),
        )

    @property
    def inference(self) -> str:
        return self.image.inference  # its model is the image encoder's (use_onnx is the space's call on that one)

    def to(self, device: torch.device) -> FramePoolVideoEncoder:
        return self  # the image and audio encoders it borrows are moved by the space
