"""Items to upsert from files: `tessera embed` output, Parquet, JSON Lines, or a folder of media files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from embedder.modality import FILE_SUFFIXES, Modality

from .client import parquet_items
from .embed_job import read_output_metadata


class EmbeddingsMismatchError(ValueError):
    """Precomputed vectors from another space (or dimension) than the corpus's."""


def embeddings_items(
    path: Path, corpus: dict[str, Any], batch_rows: int = 4096
) -> tuple[int, Iterator[dict[str, Any]]]:
    """(row count, items) of a `tessera embed` output, after checking it was embedded in the corpus's space.

    Items carry their vectors, so the server stores them without re-embedding; the
    embedded text (or the file path, as uri) and the pass-through columns come along.
    """
    import pyarrow.dataset as pads

    meta = read_output_metadata(path)
    if not meta.get("space"):
        raise EmbeddingsMismatchError(f"{path} records no space in its schema metadata; is it `tessera embed` output?")
    if meta["space"] != corpus["space"] or int(meta.get("dim", -1)) != corpus["dim"]:
        raise EmbeddingsMismatchError(
            f"{path} holds {meta.get('dim')}-d vectors of space {meta['space']}, but corpus {corpus['name']!r} "
            f"is {corpus['dim']}-d in space {corpus['space']}; embed with --space {corpus['space'].split('@')[0]}, "
            "or create a corpus in the file's space"
        )
    if meta.get("modality") != corpus["modality"]:
        raise EmbeddingsMismatchError(
            f"{path} holds {meta.get('modality')} embeddings; corpus {corpus['name']!r} holds {corpus['modality']}"
        )
    dataset = pads.dataset(path, format="parquet")
    dim, content, root = corpus["dim"], meta.get("content_column"), Path(meta.get("source", "."))

    def items() -> Iterator[dict[str, Any]]:
        for batch in dataset.to_batches(batch_size=batch_rows):
            vectors = batch.column("vector").flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
            columns = {name: batch.column(name).to_pylist() for name in batch.schema.names if name != "vector"}
            meta_names = [n for n in columns if n != "id" and batch.schema.field(n).type not in (pa.binary(),)]
            for row in range(batch.num_rows):
                item: dict[str, Any] = {"id": columns["id"][row], "vector": vectors[row]}
                item["metadata"] = {n: columns[n][row] for n in meta_names if columns[n][row] is not None}
                if content in columns and meta.get("modality") == "text":
                    item["text"] = columns[content][row]
                elif content in columns and isinstance(columns[content][row], str):
                    item["uri"] = str(root / columns[content][row]) if root.is_dir() else columns[content][row]
                yield item

    return dataset.count_rows(), items()


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
    suffixes = FILE_SUFFIXES.get(Modality.parse(modality))
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
