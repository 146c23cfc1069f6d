"""Content -> vectors in a named space.

>>> from tessera.embedder import load_space
>>> space = load_space("minilm")
>>> space.embed("text", ["a photo of a cat"]).shape
(1, 384)

Importing the package is cheap: `Modality` and `DecodeError` are plain Python, and
everything that needs torch loads on first use (PEP 562), so the gRPC client and
other callers that only name modalities never import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import DecodeError
from .modality import Modality

if TYPE_CHECKING:
    from .decode import AudioClip, VideoClip
    from .registry import SpaceInfo, UnknownSpaceError, data_dir, list_spaces, load_space
    from .space import Space
    from .space_dir import build_space, save_space

_LAZY = {
    "AudioClip": ".decode",
    "VideoClip": ".decode",
    "SpaceInfo": ".registry",
    "UnknownSpaceError": ".registry",
    "data_dir": ".registry",
    "list_spaces": ".registry",
    "load_space": ".registry",
    "Space": ".space",
    "build_space": ".space_dir",
    "save_space": ".space_dir",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


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
