"""What enters Tessera from the user's files: items to upsert, and a search query given as a file.

`ingest` streams into a corpus: `tessera embed` output (precomputed vectors), a JSON
Lines, CSV or Parquet table, a text document (chunked), or a folder of media files or
documents. Every record is checked here, where it enters, before anything is sent: a bad
one (unparseable line, no id, nothing to embed, an unreadable or undecodable file) stops
the run naming the file and line (`on_error="fail"`), or is skipped and listed in the
errors file (`on_error="skip"`).

Tables: `id` (or `id_column`) is the item's id; `text` (or `text_column`), `vector` and
`path` are its content; `uri` is stored as given; every other field becomes metadata,
and a `metadata` object merges in over them.

Stored paths follow one rule: an item read from a file stores that file's absolute,
resolved path as its `uri` (folder ingest, a table's `path` field, and `--from`), whatever
the working directory of the command was. Ids and the `path` / `source` metadata of a
folder ingest stay relative to the folder.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from tessera.embedder.modality import FILE_SUFFIXES, Modality

from .chunking import DOCUMENT_SUFFIXES, chunk_text, read_document
from .embed_job import read_output_metadata
from .embed_job.sources import TABLE_SUFFIXES, is_bytes_type

ON_ERROR = ("fail", "skip")
CONTENT_FIELDS = ("text", "vector", "data", "path")
MEDIA_SUFFIXES = {s: m for m in (Modality.IMAGE, Modality.AUDIO, Modality.VIDEO) for s in FILE_SUFFIXES[m]}
_INPUTS = f"a folder, a .jsonl, .csv or .parquet file, or a text document ({', '.join(sorted(DOCUMENT_SUFFIXES))})"


class IngestError(ValueError):
    """The input cannot be ingested as given; the message names the file (and line) and the fix."""


class EmbeddingsMismatchError(IngestError):
    """Precomputed vectors from another space (or dimension) than the corpus's."""


@dataclass(frozen=True)
class Chunking:
    size: int = 1000
    overlap: int = 200


@dataclass(frozen=True)
class BadRecord:
    """A record or file that cannot be upserted: where it is and what is wrong."""

    source: str  # the file, as the user named it (or the folder joined with the file's relative path)
    line: int | None  # the line (JSON Lines, CSV) or row (Parquet), 1-based; None for a whole file
    error: str
    unit: str = "line"

    @property
    def where(self) -> str:
        if self.line is None:
            return self.source
        return f"{self.source}:{self.line}" if self.unit == "line" else f"{self.source}, row {self.line}"

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "line": self.line, "error": self.error}


@dataclass(frozen=True)
class IngestOptions:
    id_column: str = "id"
    text_column: str | None = None
    chunking: Chunking = field(default_factory=Chunking)
    on_error: str = "fail"
    errors_file: Path | None = None  # default with skip: ./ingest-errors-<corpus>.jsonl, written if any fail
    batch_size: int = 256

    def validate(self) -> None:
        if self.on_error not in ON_ERROR:
            raise IngestError(f"--on-error must be one of {', '.join(ON_ERROR)}, not {self.on_error!r}")
        if self.batch_size < 1:
            raise IngestError(f"--batch-size must be at least 1, not {self.batch_size}")


@dataclass
class IngestSummary:
    corpus: str
    upserted: int
    on_error: str
    failed: int = 0  # bad records and files, skipped and listed in errors_file
    errors_file: Path | None = None
    ignored_files: list[str] = field(default_factory=list)

    def format(self) -> str:
        lines = [f"upserted {self.upserted:,} items into {self.corpus}"]
        if self.on_error == "skip":
            where = f", listed in {self.errors_file}" if self.failed else ""
            lines.append(f"  skipped {self.failed:,} bad records or files{where}")
        if self.ignored_files:
            example = ", ".join(self.ignored_files[:3])
            lines.append(f"  ignored {len(self.ignored_files):,} files with other suffixes (e.g. {example})")
        return "\n".join(lines)


# ---- the run -----------------------------------------------------------------------------------
class _ErrorLog:
    """Bad records: counted, written to the errors file (opened at the first one), and, with fail, raised."""

    def __init__(self, path: Path | None, on_error: str) -> None:
        self.path, self.on_error = path, on_error
        self.count = 0
        self.error: IngestError | None = None  # the one that stopped a fail run
        self._file: IO[str] | None = None

    def record(self, bad: BadRecord) -> None:
        self.count += 1
        if self.path is not None:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "w", encoding="utf-8")  # closed by close()
            self._file.write(json.dumps(bad.to_dict()) + "\n")
            self._file.flush()
        if self.on_error == "fail":
            self.error = IngestError(
                f"{bad.where}: {bad.error}. Fix it and run again (items are upserted by id, so the ones "
                "already stored are replaced, not doubled), or pass --on-error skip to skip bad records "
                "and list them in an errors file"
            )
            raise self.error

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _screened(records: Iterator[dict[str, Any] | BadRecord], log: _ErrorLog) -> Iterator[dict[str, Any]]:
    try:
        for record in records:
            if isinstance(record, BadRecord):
                log.record(record)
            else:
                yield record
    except IngestError as exc:  # a file that cannot be read at all (a bad Parquet file, say)
        log.error = log.error or exc
        raise


def ingest(
    client: Any,
    corpus: str,
    path: Path,
    *,
    embeddings: bool = False,
    options: IngestOptions | None = None,
    progress: bool = False,
) -> IngestSummary:
    """Upsert the items of `path` into `corpus` through `client`; `embeddings`: it is `tessera embed` output."""
    options = options or IngestOptions()
    options.validate()
    if not path.exists():
        wanted = "`tessera embed` output (a directory or part file)" if embeddings else _INPUTS
        raise IngestError(f"{path}: no such file or directory; give {wanted}")
    info = client.describe_corpus(corpus)
    total, ignored = None, []
    if embeddings:
        total, records = embeddings_items(path, info)
    else:
        records, total, ignored = records_from(path, info["modality"], options)
    errors_file = options.errors_file
    if errors_file is None and options.on_error == "skip":
        errors_file = Path(f"ingest-errors-{corpus}.jsonl")
    log = _ErrorLog(errors_file.resolve() if errors_file else None, options.on_error)
    try:
        upserted = client.upsert(
            corpus,
            _screened(records, log),
            modality=info["modality"],
            batch_size=options.batch_size,
            progress=progress,
            total=total,
        )
    except Exception:
        # A bad record stops the request stream; the client reports that as its own error. Say ours.
        if log.error is not None:
            raise log.error from None
        raise
    finally:
        log.close()
    return IngestSummary(corpus, upserted, options.on_error, log.count, log.path, ignored)


def records_from(
    path: Path, modality: str, options: IngestOptions
) -> tuple[Iterator[dict[str, Any] | BadRecord], int | None, list[str]]:
    """(records, how many items if known, folder files ignored for their suffix) of a file or folder."""
    if path.is_dir():
        files, ignored = folder_files(path, modality)
        records = folder_records(path, files, modality, options.chunking)
        return records, (None if Modality.parse(modality) is Modality.TEXT else len(files)), ignored
    suffix = path.suffix.lower()
    if suffix in DOCUMENT_SUFFIXES:
        if Modality.parse(modality) is not Modality.TEXT:
            raise IngestError(f"{path} is a text document; ingest it into a text corpus, not a {modality} one")
        return document_records(path, path.name, str(path), options.chunking), None, []
    kind = TABLE_SUFFIXES.get(suffix)
    if kind is None:
        raise IngestError(f"cannot ingest {path}: give {_INPUTS}")
    rows = {"jsonl": jsonl_rows, "csv": csv_rows, "parquet": parquet_rows}[kind](path)
    return table_records(path, rows, modality, options), None, []


# ---- folders and documents ---------------------------------------------------------------------
def folder_files(folder: Path, modality: str) -> tuple[list[Path], list[str]]:
    """(files of the modality's usual suffixes, other files as relative paths), sorted; hidden files skipped."""
    chosen = Modality.parse(modality)
    if chosen is Modality.TEXT:
        suffixes: frozenset[str] = DOCUMENT_SUFFIXES
    elif chosen in FILE_SUFFIXES:
        suffixes = FILE_SUFFIXES[chosen]
    else:
        raise IngestError(f"a folder can be ingested into a text, image, audio or video corpus, not {modality}")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    ignored = [str(p.relative_to(folder)) for p in files if p.suffix.lower() not in suffixes]
    return [p for p in files if p.suffix.lower() in suffixes], ignored


def folder_records(
    folder: Path, files: list[Path], modality: str, chunking: Chunking
) -> Iterator[dict[str, Any] | BadRecord]:
    """Ids are paths relative to the folder (plus #chunk for documents); uris are absolute paths."""
    chosen = Modality.parse(modality)
    for path in files:
        rel = path.relative_to(folder).as_posix()
        if chosen is Modality.TEXT:
            yield from document_records(path, rel, str(path), chunking)
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            yield BadRecord(str(path), None, f"cannot read the file ({exc.strerror or exc})")
            continue
        reason = media_problem(chosen, data)
        if reason is not None:
            yield BadRecord(str(path), None, reason)
            continue
        yield {"id": rel, "data": data, "uri": str(path.resolve()), "metadata": {"path": rel}}


def document_records(path: Path, source: str, shown: str, chunking: Chunking) -> Iterator[dict[str, Any] | BadRecord]:
    """The chunks of one text document; each keeps its source file and character offsets for citations."""
    try:
        text = read_document(path)
    except OSError as exc:
        yield BadRecord(shown, None, f"cannot read the file ({exc.strerror or exc})")
        return
    except ValueError as exc:  # not UTF-8
        yield BadRecord(shown, None, str(exc).removeprefix(f"{path} "))
        return
    uri = str(path.resolve())
    for chunk in chunk_text(text, chunking.size, chunking.overlap):
        yield {
            "id": f"{source}#{chunk.index}",
            "text": chunk.text,
            "uri": uri,
            "metadata": {"source": source, "chunk": chunk.index, "start": chunk.start, "end": chunk.end},
        }


def media_problem(modality: Modality, data: bytes) -> str | None:
    """Why `data` is not a usable file of `modality` (from its header, without decoding it), or None."""
    if not data:
        return "the file is empty"
    try:
        if modality is Modality.IMAGE:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as image:
                image.verify()
        elif modality in (Modality.AUDIO, Modality.VIDEO):
            if modality is Modality.AUDIO:
                import soundfile

                try:
                    soundfile.info(io.BytesIO(data))
                    return None
                except Exception:  # not a libsndfile format: FFmpeg may still read it
                    pass
            import av

            with av.open(io.BytesIO(data)) as container:
                streams = container.streams.audio if modality is Modality.AUDIO else container.streams.video
                if not streams:
                    return f"no {modality} stream in the file"
    except Exception as exc:  # every decoder has its own exception types
        detail = re.sub(r"\s*<[^>]* at 0x[0-9a-f]+>", "", str(exc))[:120]  # no "<_io.BytesIO object at 0x...>"
        return f"not a readable {modality} file ({type(exc).__name__}: {detail})"
    return None


# ---- tables ------------------------------------------------------------------------------------
Row = tuple[int, dict[str, Any]]


def jsonl_rows(path: Path) -> Iterator[Row | BadRecord]:
    """(line number, object) for each non-blank line; lines that are not one JSON object are bad records."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield BadRecord(str(path), number, f"not UTF-8 ({exc.reason} at byte {exc.start} of the line)")
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield BadRecord(
                    str(path),
                    number,
                    f"not valid JSON ({exc.msg} at column {exc.colno}); each line must be one JSON object",
                )
                continue
            if not isinstance(row, dict):
                yield BadRecord(
                    str(path), number, f"a JSON {_json_type(row)}, not an object; each line must be one object"
                )
                continue
            yield number, row


def csv_rows(path: Path) -> Iterator[Row | BadRecord]:
    """(line number, row) under the header; cells are strings, and empty cells are left out."""
    line = 1
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames:
                yield BadRecord(str(path), None, "empty; a CSV file needs a header row naming its columns")
                return
            for row in reader:
                line = reader.line_num
                if None in row:
                    yield BadRecord(
                        str(path), line, f"{len(row) - 1 + len(row[None])} cells, but the header has {len(row) - 1}"
                    )
                    continue
                yield line, {k: v for k, v in row.items() if v not in (None, "")}
    except UnicodeDecodeError as exc:
        yield BadRecord(str(path), line + 1, f"not UTF-8 ({exc.reason}); the rest of the file was not read")
    except csv.Error as exc:
        yield BadRecord(str(path), line + 1, f"not readable as CSV ({exc}); the rest of the file was not read")


def parquet_rows(path: Path, batch_rows: int = 4096) -> Iterator[Row | BadRecord]:
    """(row number, row) of a Parquet file; binary columns other than `data` are left out of metadata."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise IngestError(f"{path}: not a readable Parquet file ({exc})") from None
    schema = parquet.schema_arrow
    columns = [n for n in schema.names if n == "data" or not is_bytes_type(schema.field(n).type)]
    number = 0
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
        for row in batch.to_pylist():
            number += 1
            yield number, row


def table_records(
    path: Path, rows: Iterator[Row | BadRecord], modality: str, options: IngestOptions
) -> Iterator[dict[str, Any] | BadRecord]:
    unit = "row" if path.suffix.lower() == ".parquet" else "line"
    media = Modality.parse(modality) in (Modality.IMAGE, Modality.AUDIO, Modality.VIDEO)
    for entry in rows:
        if isinstance(entry, BadRecord):
            yield entry
            continue
        number, row = entry
        item = row_item(row, path.parent, options.id_column, options.text_column)
        if isinstance(item, str):
            yield BadRecord(str(path), number, item, unit)
        elif media and "data" in item and (reason := media_problem(Modality.parse(modality), item["data"])):
            yield BadRecord(str(path), number, f"{item.get('uri', 'data')}: {reason}", unit)
        else:
            yield item


def row_item(
    row: dict[str, Any], base: Path, id_field: str = "id", text_field: str | None = None
) -> dict[str, Any] | str:
    """The upsert item of one table row, or what is wrong with the row.

    `id_field` is the id; `text_field` (default `text`), `vector`, `data` and `path` (a file,
    relative to `base`) are the content; `uri` is kept; every other field is metadata, and a
    `metadata` object merges in over them.
    """
    row = dict(row)
    ident = row.pop(id_field, None)
    if ident is None or ident == "":
        hint = "" if id_field != "id" else " (or name the id field with --id-column)"
        return f"no {id_field!r} field; every record needs an id{hint}"
    if isinstance(ident, (dict, list, bool)):
        return f"the id must be a string or a number, not a {_json_type(ident)}"
    item: dict[str, Any] = {"id": str(ident)}
    if text_field is not None and text_field not in row:
        return f"no {text_field!r} field (--text-column)"
    text = row.pop(text_field or "text", None)
    if text is not None:
        if not isinstance(text, str) or not text.strip():
            return f"{text_field or 'text'!r} must be non-empty text, not {str(text)[:40]!r}"
        item["text"] = text
    vector = row.pop("vector", None)
    if vector is not None:
        try:
            item["vector"] = np.asarray(json.loads(vector) if isinstance(vector, str) else vector, dtype=np.float32)
        except (ValueError, TypeError):
            return f"'vector' must be a list of numbers, not {str(vector)[:40]!r}"
        if item["vector"].ndim != 1 or not np.isfinite(item["vector"]).all():
            return "'vector' must be a flat list of finite numbers"
    data = row.pop("data", None)
    if data is not None:
        if not isinstance(data, (bytes, bytearray)):
            return "'data' holds encoded media bytes; in JSON Lines and CSV name the file with 'path' instead"
        item["data"] = bytes(data)
    file = row.pop("path", None)
    if file is not None:
        if not isinstance(file, str):
            return f"'path' must be a file path, not a {_json_type(file)}"
        resolved = (base / file).resolve()
        try:
            item["data"] = resolved.read_bytes()
        except OSError as exc:
            return f"cannot read 'path' {file!r} ({exc.strerror or exc}; relative paths are read from {base})"
        item["uri"] = str(resolved)
    uri = row.pop("uri", None)
    if uri is not None:
        item["uri"] = str(uri)
    if not any(key in item for key in ("text", "vector", "data")):
        fields = ", ".join(repr(k) for k in (text_field or "text", "vector", "path"))
        return f"nothing to embed: give one of {fields} (it has {sorted(row)[:8]})"
    extra = row.pop("metadata", None)
    if isinstance(extra, str):  # a CSV cell
        try:
            extra = json.loads(extra)
        except json.JSONDecodeError:
            return f"'metadata' must be a JSON object, not {extra[:40]!r}"
    if extra is not None and not isinstance(extra, dict):
        return f"'metadata' must be an object, not a {_json_type(extra)}"
    metadata = {k: v for k, v in row.items() if v is not None}
    metadata.update(extra or {})
    if metadata:
        item["metadata"] = metadata
    return item


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return names.get(type(value), type(value).__name__) if value is not None else "null"


# ---- `tessera embed` output --------------------------------------------------------------------
def embeddings_items(
    path: Path, corpus: dict[str, Any], batch_rows: int = 4096
) -> tuple[int, Iterator[dict[str, Any]]]:
    """(row count, items) of a `tessera embed` output, after checking it was embedded in the corpus's space.

    Items carry their vectors, so the server stores them without re-embedding; the
    embedded text (or the file's absolute path, as uri) and the pass-through columns come along.
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
    # The embed job read a folder's paths relative to it, and a table's relative to the table's folder.
    source = Path(meta.get("source", "."))
    root = source.parent if source.suffix.lower() in TABLE_SUFFIXES else source

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
                    item["uri"] = str((root / cell).resolve())
                yield item

    return dataset.count_rows(), items()


# ---- search queries ----------------------------------------------------------------------------
def query_part(query: str, modality: str | None = None) -> tuple[str, str | bytes]:
    """(modality, value) of a search query given on the command line.

    With `modality` None, a query that names an existing image, audio or video file (by its
    suffix) is that file's content; a query with such a suffix that names no file is refused,
    rather than searched as text. `modality="text"` always searches the words.
    """
    if modality == "text":
        return "text", query
    if modality is not None:
        file = Path(query)
        if not file.is_file():
            raise IngestError(
                f"no such file: {query[:200]} (--modality {modality} takes the path of a {modality} file)"
            )
        return modality, file.read_bytes()
    found = MEDIA_SUFFIXES.get(Path(query).suffix.lower())
    if found is None:
        return "text", query
    if not Path(query).is_file():
        raise IngestError(
            f"{query[:200]!r} looks like the path of {'an' if found is Modality.AUDIO else 'a'} {found} file "
            f"({Path(query).suffix}), but there is no such "
            "file; give an existing file, or pass --modality text to search these words as text"
        )
    return str(found), Path(query).read_bytes()
