"""What `tessera embed` reads: a table (Parquet, JSONL, CSV) or a folder of files, as numbered parts.

Every input becomes a work list: a Parquet file with an id, the content and the
pass-through columns, read in parts of `part_rows` rows. Parquet inputs are read in
place. JSONL, CSV and folders are staged once, streaming, into `<output>/_work/`. This
gives every engine (and every Ray worker) random access to part k, and gives ids derived
from row numbers that are the same on every run.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tessera.embedder.modality import Modality, modality_of_path

TABLE_SUFFIXES = {".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
CONTENT = "_content"  # the work list's content column; never a user column name in the output
STAGE_ROWS = 8192


class InputError(ValueError):
    """The input cannot be embedded as asked; the message says what to change."""


@dataclass(frozen=True)
class WorkList:
    """The rows to embed, in a fixed order, with random access by part."""

    path: Path  # the Parquet file read (the input itself, or its staged copy)
    kind: str  # parquet, jsonl, csv or folder
    modality: Modality
    content_column: str
    id_column: str | None  # None: the id is the row number
    passthrough: tuple[str, ...]
    root: Path  # relative file paths in the content resolve against this
    num_rows: int
    part_rows: int

    @property
    def num_parts(self) -> int:
        return -(-self.num_rows // self.part_rows)

    @property
    def content_is_path(self) -> bool:
        """Folder rows always name a file; table cells are text, bytes, or (for media) a file path."""
        return self.kind == "folder"

    def part_range(self, part: int) -> tuple[int, int]:
        start = part * self.part_rows
        return start, min(start + self.part_rows, self.num_rows)

    def passthrough_schema(self) -> pa.Schema:
        schema = pq.read_schema(self.path)
        return pa.schema([schema.field(name) for name in self.passthrough])

    def read_part(self, part: int) -> pa.Table:
        """Rows of part `part`: `id` (string), `_content`, then the pass-through columns."""
        start, stop = self.part_range(part)
        parquet = pq.ParquetFile(self.path)
        columns = list(dict.fromkeys([c for c in (self.id_column, self.content_column) if c] + list(self.passthrough)))
        groups, first_row, offset = [], None, 0
        for g in range(parquet.metadata.num_row_groups):
            rows = parquet.metadata.row_group(g).num_rows
            if offset < stop and offset + rows > start:
                groups.append(g)
                first_row = offset if first_row is None else first_row
            offset += rows
        if not groups:
            raise IndexError(f"part {part} is past the end of {self.path} ({self.num_rows} rows)")
        table = parquet.read_row_groups(groups, columns=columns).slice(start - first_row, stop - start)
        if self.id_column:
            ids = table.column(self.id_column).cast(pa.string())
            if ids.null_count:
                raise InputError(f"{self.path}: the id column {self.id_column!r} is empty in rows {start}-{stop}")
        else:
            ids = pa.array([str(i) for i in range(start, stop)], pa.string())
        out = {"id": ids, CONTENT: table.column(self.content_column)}
        out.update({name: table.column(name) for name in self.passthrough})
        return pa.table(out)


def is_bytes_type(kind: pa.DataType) -> bool:
    return pa.types.is_binary(kind) or pa.types.is_large_binary(kind)


def input_fingerprint(path: Path) -> str:
    """Changes whenever the input's bytes could have: size and mtime of the file, or of every file in a folder."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        stat = file.stat()
        name = file.relative_to(path) if path.is_dir() else file.name
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def input_kind(path: Path) -> str:
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise InputError(f"no such input: {path}")
    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise InputError(f"cannot read {path}: give a .parquet, .jsonl, .ndjson or .csv file, or a folder of files")
    return kind


def _pick_columns(
    schema: pa.Schema, source: Path, column: str | None, id_column: str | None, passthrough: tuple[str, ...] | None
) -> tuple[str, str | None, tuple[str, ...]]:
    """(content column, id column, pass-through columns); an `id` column is the id unless --id-column says."""
    names = schema.names
    id_column = id_column or ("id" if "id" in names else None)
    content = column or ("text" if "text" in names else None)
    if content is None:
        raise InputError(f"{source} has no 'text' column; name the content column with --column (it has {names})")
    for name, flag in ((content, "--column"), (id_column, "--id-column")):
        if name and name not in names:
            raise InputError(f"{source} has no column {name!r} ({flag}); it has {names}")
    if passthrough is None:
        # Text and file paths come along (a corpus shows them with each hit); encoded media bytes stay behind.
        binary = is_bytes_type(schema.field(content).type)
        passthrough = tuple(n for n in names if n != id_column and not (n == content and binary))
    missing = [n for n in passthrough if n not in names]
    if missing:
        raise InputError(f"{source} has no column(s) {missing} (--passthrough); it has {names}")
    reserved = {"id", "vector"} & set(passthrough)
    if reserved:
        raise InputError(
            f"pass-through column(s) {sorted(reserved)} would clash with the output's own id and vector "
            f"columns; pick the id with --id-column, or list the columns to keep with --passthrough"
        )
    return content, id_column, passthrough


def json_objects(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSON Lines file."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{number}: not JSON ({exc.msg}); every line must be one JSON object") from None
            if not isinstance(row, dict):
                raise InputError(f"{path}:{number}: a JSON {type(row).__name__}, not an object")
            yield number, row


def _json_chunks(path: Path) -> Iterator[pa.Table]:
    rows: list[dict] = []
    schema: pa.Schema | None = None
    number = 0
    for number, row in json_objects(path):
        rows.append(row)
        if len(rows) == STAGE_ROWS:
            table = _table_of(rows, schema, path, number)
            schema = table.schema
            yield table
            rows = []
    if rows or schema is None:
        yield _table_of(rows, schema, path, number)


def _table_of(rows: list[dict], schema: pa.Schema | None, path: Path, where: object) -> pa.Table:
    # The first chunk fixes the column types, so every staged row group has one schema.
    try:
        return pa.Table.from_pylist(rows, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InputError(f"{path} (lines up to {where}): a value's type differs from earlier lines ({exc})") from None


def _csv_chunks(path: Path) -> Iterator[pa.Table]:
    import pyarrow.csv as pcsv

    with open(path, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), None)
    if not header:
        raise InputError(f"{path} is empty; a CSV input needs a header row")
    # CSV carries no types; every column stays a string, the way it was written.
    convert = pcsv.ConvertOptions(column_types={name: pa.string() for name in header}, strings_can_be_null=False)
    try:
        with pcsv.open_csv(path, convert_options=convert) as reader:
            for batch in reader:
                yield pa.Table.from_batches([batch])
    except pa.ArrowInvalid as exc:
        raise InputError(f"{path}: not readable as CSV ({exc})") from None


def folder_files(folder: Path, modality: str | None) -> tuple[Modality, list[str], list[str]]:
    """(modality, files to embed, files ignored) under `folder`, as sorted relative paths."""
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if modality is not None:
        return Modality.parse(modality), files, []
    by_modality: dict[Modality, list[str]] = {}
    ignored = []
    for rel in files:
        found = modality_of_path(rel)
        if found is None:
            ignored.append(rel)
        else:
            by_modality.setdefault(found, []).append(rel)
    if not by_modality:
        raise InputError(f"{folder} holds no image, audio, video or text files; name the modality with --modality")
    if len(by_modality) > 1:
        counts = ", ".join(f"{len(v)} {m}" for m, v in by_modality.items())
        raise InputError(f"{folder} mixes modalities ({counts}); embed one per run with --modality")
    ((found, chosen),) = by_modality.items()
    return found, chosen, ignored


def _write_staged(chunks: Iterator[pa.Table], target: Path) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        for chunk in chunks:
            if writer is None:
                writer = pq.ParquetWriter(tmp, chunk.schema)
            writer.write_table(chunk, row_group_size=STAGE_ROWS)
            rows += chunk.num_rows
        if writer is not None:
            writer.close()
            writer = None
        os.replace(tmp, target)
    except BaseException:
        if writer is not None:
            try:
                writer.close()
            except Exception:
                pass  # the error being raised says more (a full disk fails the close too)
        tmp.unlink(missing_ok=True)  # a half-staged input must not take space
        raise
    return rows


def open_work_list(
    source: Path,
    work_dir: Path,
    *,
    modality: str | None,
    column: str | None,
    id_column: str | None,
    passthrough: tuple[str, ...] | None,
    part_rows: int,
) -> tuple[WorkList, list[str]]:
    """The work list for `source`, staging it under `work_dir` when it is not Parquet.

    Also returns the folder files that were ignored for their suffix, so the caller
    can say so rather than drop them silently.
    """
    kind = input_kind(source)
    ignored: list[str] = []
    if kind == "folder":
        found, files, ignored = folder_files(source, modality)
        staged = work_dir / "input.parquet"

        def folder_chunks() -> Iterator[pa.Table]:
            for start in range(0, max(len(files), 1), STAGE_ROWS):
                chunk = files[start : start + STAGE_ROWS]
                yield pa.table({"id": pa.array(chunk, pa.string()), "path": pa.array(chunk, pa.string())})

        if not staged.exists():
            _write_staged(folder_chunks(), staged)
        work = WorkList(staged, kind, found, "path", "id", ("path",), source, len(files), part_rows)
        return work, ignored
    chosen = Modality.parse(modality or "text")
    if kind == "parquet":
        path = source
    else:
        path = work_dir / "input.parquet"
        if not path.exists():
            _write_staged(_json_chunks(source) if kind == "jsonl" else _csv_chunks(source), path)
    content, ids, keep = _pick_columns(pq.read_schema(path), source, column, id_column, passthrough)
    num_rows = pq.ParquetFile(path).metadata.num_rows
    return WorkList(path, kind, chosen, content, ids, keep, source.parent, num_rows, part_rows), ignored
