"""Items to upsert from files: Parquet (e.g. `tessera embed` output), JSON Lines, or a folder of media files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .client import parquet_items

MEDIA_SUFFIXES = {
    "image": {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"},
    "audio": {".wav", ".flac", ".mp3", ".ogg"},
    "video": {".mp4", ".webm", ".mov", ".mkv"},
    "text": {".txt", ".md"},
}


def jsonl_items(path: Path) -> Iterator[dict[str, Any]]:
    """One JSON object per line: id, and text / vector / path, with optional metadata."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if "id" not in row:
                raise ValueError(f"{path}:{number}: every line needs an 'id'")
            if "path" in row:
                row["path"] = (path.parent / row["path"]).resolve()
            yield row


def folder_items(folder: Path, modality: str) -> Iterator[dict[str, Any]]:
    """Every file of the modality's usual suffixes; the id is the path relative to the folder."""
    suffixes = MEDIA_SUFFIXES.get(modality)
    if suffixes is None:
        raise ValueError(f"a folder can be ingested into a text, image, audio or video corpus, not {modality}")
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes):
        rel = str(path.relative_to(folder))
        if modality == "text":
            yield {"id": rel, "text": path.read_text(encoding="utf-8"), "metadata": {"path": rel}}
        else:
            yield {"id": rel, "data": path.read_bytes(), "uri": str(path), "metadata": {"path": rel}}


def items_from(path: Path, modality: str, *, id_column: str = "id", text_column: str | None = None) -> Iterator[Any]:
    if path.is_dir():
        return folder_items(path, modality)
    if path.suffix == ".parquet":
        return parquet_items(path, id_column, None, text_column, None)
    if path.suffix in (".jsonl", ".ndjson"):
        return jsonl_items(path)
    raise ValueError(f"cannot ingest {path}: give a folder, a .parquet file or a .jsonl file")
