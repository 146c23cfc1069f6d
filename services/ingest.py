"""Items to upsert from files: `tessera embed` output, Parquet, JSON Lines, or a folder of media files."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tessera.embedder.modality import FILE_SUFFIXES, Modality

from .chunking import DOCUMENT_SUFFIXES, chunk_text, read_document
from .client import parquet_items
from .embed_job import read_output_metadata
from .embed_job.sources import is_bytes_type, json_objects


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
    dim, content, is_text = corpus["dim"], meta.get("content_column"), meta.get("modality") == "text"
    # A folder's paths are relative to it; a table's path cells are kept as written.
    source = Path(meta.get("source", "."))
    folder = source if source.is_dir() else None

    def items() -> Iterator[dict[str, Any]]:
        for batch in dataset.to_batches(batch_size=batch_rows):
            vectors = batch.column("vector").flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
            columns = {name: batch.column(name).to_pylist() for name in batch.schema.names if name != "vector"}
            meta_names = [n for n in columns if n != "id" and not is_bytes_type(batch.schema.field(n).type)]
            for row in range(batch.num_rows):
                item: dict[str, Any] = {"id": columns["id"][row], "vector": vectors[row]}
                item["metadata"] = {n: columns[n][row] for n in meta_names if columns[n][row] is not None}
                cell = columns[content][row] if content in columns else None
                if is_text and cell is not None:
                    item["text"] = cell
                elif isinstance(cell, str):
                    item["uri"] = str(folder / cell) if folder is not None else cell
                yield item

    return dataset.count_rows(), items()


def jsonl_items(path: Path) -> Iterator[dict[str, Any]]:
    """One JSON object per line: id, and text / vector / path, with optional metadata."""
    for number, row in json_objects(path):
        if "id" not in row:
            raise ValueError(f"{path}:{number}: every line needs an 'id'")
        if "path" in row:
            row["path"] = (path.parent / row["path"]).resolve()
        yield row


@dataclass(frozen=True)
class Chunking:
    size: int = 1000
    overlap: int = 200


def document_items(path: Path, source: str, chunking: Chunking) -> Iterator[dict[str, Any]]:
    """The chunks of one text document; each keeps its source file and character offsets for citations."""
    text = read_document(path)
    for chunk in chunk_text(text, chunking.size, chunking.overlap):
        yield {
            "id": f"{source}#{chunk.index}",
            "text": chunk.text,
            "metadata": {"source": source, "chunk": chunk.index, "start": chunk.start, "end": chunk.end},
        }


def folder_items(folder: Path, modality: str, chunking: Chunking | None = None) -> Iterator[dict[str, Any]]:
    """Every file of the modality's usual suffixes; ids are paths relative to the folder (plus #chunk for text)."""
    modality = Modality.parse(modality)
    if modality is Modality.TEXT:
        suffixes: frozenset[str] = DOCUMENT_SUFFIXES
    elif modality in FILE_SUFFIXES:
        suffixes = FILE_SUFFIXES[modality]
    else:
        raise ValueError(f"a folder can be ingested into a text, image, audio or video corpus, not {modality}")
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes):
        rel = str(path.relative_to(folder))
        if modality is Modality.TEXT:
            yield from document_items(path, rel, chunking or Chunking())
        else:
            yield {"id": rel, "data": path.read_bytes(), "uri": str(path), "metadata": {"path": rel}}


def items_from(
    path: Path,
    modality: str,
    *,
    id_column: str = "id",
    text_column: str | None = None,
    chunking: Chunking | None = None,
) -> Iterator[Any]:
    if path.is_dir():
        return folder_items(path, modality, chunking)
    if path.suffix.lower() in DOCUMENT_SUFFIXES:
        if Modality.parse(modality) is not Modality.TEXT:
            raise ValueError(f"{path} is a text document; ingest it into a text corpus, not a {modality} one")
        return document_items(path, path.name, chunking or Chunking())
    if path.suffix == ".parquet":
        return parquet_items(path, id_column, None, text_column, None)
    if path.suffix in (".jsonl", ".ndjson"):
        return jsonl_items(path)
    raise ValueError(
        f"cannot ingest {path}: give a folder, a .parquet or .jsonl file, or a text document "
        f"({', '.join(sorted(DOCUMENT_SUFFIXES))})"
    )
