"""Encoder types; importing this package registers all of them."""

from . import audio_cnn, image_cnn, minilm, openclip, vector, video_pool  # noqa: F401  (registration)
from .base import ENCODER_TYPES, BuildContext, Encoder, build_encoder
from .heads import ProjectionHead

__all__ = ["ENCODER_TYPES", "BuildContext", "Encoder", "ProjectionHead", "build_encoder"]
