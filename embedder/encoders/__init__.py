"""Encoder types; importing this package registers all of them.

It first makes torchvision importable next to CPU torch (`_torchvision_compat`):
every model path goes through here before transformers or open_clip can import
torchvision. Code that imports those libraries itself imports this package first.
"""

from .._torchvision_compat import ensure_torchvision_importable

ensure_torchvision_importable()

# The imports below come after the shim on purpose (E402).
from . import audio_cnn, image_cnn, minilm, openclip, vector, video_pool  # noqa: E402, F401  (registration)
from .base import ENCODER_TYPES, BuildContext, Encoder, build_encoder  # noqa: E402
from .heads import ProjectionHead  # noqa: E402

__all__ = ["ENCODER_TYPES", "BuildContext", "Encoder", "ProjectionHead", "build_encoder"]
