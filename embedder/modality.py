"""The modalities Tessera can embed, and which file suffixes carry each."""

from __future__ import annotations

from pathlib import Path

from .choices import Choice
from .quoting import quote


class Modality(Choice):
    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    VECTOR = "vector"

    @classmethod
    def refusal(cls, value: object) -> str:
        return f"unknown modality {quote(value)}; expected one of: {', '.join(m.value for m in cls)}"


# Suffixes a folder of files is sorted by; `--modality` overrides them.
FILE_SUFFIXES: dict[Modality, frozenset[str]] = {
    Modality.IMAGE: frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}),
    Modality.AUDIO: frozenset({".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac", ".opus"}),
    Modality.VIDEO: frozenset({".mp4", ".webm", ".mov", ".mkv", ".avi"}),
    Modality.TEXT: frozenset({".txt", ".md"}),
}


def modality_of_path(path: str | Path) -> Modality | None:
    """The modality a file's suffix says it holds; None when the suffix is not a known one."""
    suffix = Path(path).suffix.lower()
    return next((m for m, suffixes in FILE_SUFFIXES.items() if suffix in suffixes), None)
