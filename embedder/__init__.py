"""Content -> vectors in a named space.

>>> from embedder import load_space
>>> space = load_space("minilm")
>>> space.embed("text", ["a photo of a cat"]).shape
(1, 384)
"""

from ._torchvision_compat import ensure_torchvision_importable

# Before anything imports torchvision (transformers and open_clip both do).
ensure_torchvision_importable()

from .decode import AudioClip, VideoClip
from .errors import DecodeError
from .modality import Modality
from .registry import SpaceInfo, UnknownSpaceError, data_dir, list_spaces, load_space
from .space import Space
from .space_dir import build_space, save_space

__all__ = [
    "AudioClip",
    "DecodeError",
    "Modality",
    "Space",
    "SpaceInfo",
    "UnknownSpaceError",
    "VideoClip",
    "build_space",
    "data_dir",
    "list_spaces",
    "load_space",
    "save_space",
]
