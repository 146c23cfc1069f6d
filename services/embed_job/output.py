"""The output of `tessera embed`: a Parquet dataset written part by part, with a manifest.

    OUT/part-00000.parquet ...   id, vector (fixed_size_list<float32>[dim]), pass-through columns
    OUT/_manifest.json           the job, and every finished part (rows, failed)
    OUT/_errors.jsonl            one line per skipped item: id, source, reason
    OUT/_work/                   staged input and per-part error lists

Parquet readers skip names starting with `_`, so `pyarrow.parquet.read_table(OUT)`
reads exactly the vectors. A part becomes visible only after its file is complete:
each is written to a temporary name, flushed to disk and renamed, and only then
recorded in the manifest (itself replaced atomically). Re-running the job skips the
parts in the manifest and redoes the rest, which gives the same files an
uninterrupted run writes. A write that fails (a full disk) removes its temporary
file before the error goes up, and `run_embed` reports a full disk as a
`DiskFullError` naming OUT and its free space; re-running once space is freed resumes.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .encode import BadItem

FORMAT = "tessera-embeddings/1"
MANIFEST = "_manifest.json"
ERRORS = "_errors.jsonl"
WORK = "_work"


class OutputMismatchError(ValueError):
    """The output directory holds a different job's results."""


def _fsync_replace(tmp: Path, target: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, target)


def _write_replace(target: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)`, then flush it to disk and rename it to `target`; on any failure remove tmp."""
    tmp = target.with_name(target.name + ".tmp")
    try:
        write(tmp)
        _fsync_replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_json(path: Path, value: Any) -> None:
    _write_replace(path, lambda tmp: tmp.write_text(json.dumps(value, indent=1, sort_keys=True)))


def output_schema(dim: int, passthrough: pa.Schema, metadata: dict[str, str]) -> pa.Schema:
    fields = [pa.field("id", pa.string(), nullable=False), pa.field("vector", pa.list_(pa.float32(), dim))]
    return pa.schema([*fields, *passthrough], metadata={f"tessera.{k}": v for k, v in metadata.items()})


def read_output_metadata(path: str | Path) -> dict[str, str]:
    """The `tessera.*` schema metadata of an embed output (a directory or one part file)."""
    path = Path(path)
    file = path if path.is_file() else next(iter(sorted(path.glob("part-*.parquet"))), None)
    if file is None:
        raise FileNotFoundError(f"{path} holds no part-*.parquet files; is it `tessera embed` output?")
    raw = pq.read_schema(file).metadata or {}
    return {k.decode()[len("tessera.") :]: v.decode() for k, v in raw.items() if k.startswith(b"tessera.")}


@dataclass
class PartRecord:
    rows: int
    failed: int


class EmbeddingsWriter:
    """Owns OUT: checks that a re-run is the same job, writes parts, keeps the manifest."""

    def __init__(self, out: Path, job: dict[str, Any], *, overwrite: bool = False) -> None:
        """Checks OUT before anything is staged there; `start` follows once the schema is known."""
        self.out, self.job = out, job
        self.work = out / WORK
        self.parts: dict[int, PartRecord] = {}
        self.schema = pa.schema([])
        self.num_parts = 0
        is_output = (out / MANIFEST).exists() or self.work.exists()
        if out.exists() and any(out.iterdir()) and not is_output:
            raise OutputMismatchError(
                f"{out} exists and is not a `tessera embed` output; give an empty or new directory"
            )
        if overwrite and out.exists():
            shutil.rmtree(out)
        manifest = self._read_manifest()
        if manifest is not None and manifest.get("job") != job:
            changed = sorted(k for k in {*job, *manifest.get("job", {})} if job.get(k) != manifest["job"].get(k))
            raise OutputMismatchError(
                f"{out} holds the output of a different job (differs in: {', '.join(changed)}); "
                "give another output directory, or --overwrite to replace it"
            )
        if manifest is not None:
            self.parts = {int(k): PartRecord(**v) for k, v in manifest["parts"].items()}
        self.work.mkdir(parents=True, exist_ok=True)
        for stray in [*out.glob("*.tmp"), *self.work.glob("*.tmp")]:
            stray.unlink()  # a part a killed run (or a full disk) had not finished

    def start(self, schema: pa.Schema, num_parts: int) -> None:
        self.schema, self.num_parts = schema, num_parts

    def _read_manifest(self) -> dict[str, Any] | None:
        path = self.out / MANIFEST
        if not path.exists():
            return None
        manifest = json.loads(path.read_text())
        if manifest.get("format") != FORMAT:
            raise OutputMismatchError(f"{path} is not a {FORMAT} manifest")
        return manifest

    @property
    def done(self) -> set[int]:
        return set(self.parts)

    @property
    def complete(self) -> bool:
        return len(self.parts) == self.num_parts

    def part_path(self, part: int) -> Path:
        return self.out / f"part-{part:05d}.parquet"

    def write_part(self, part: int, vectors: np.ndarray, passthrough: pa.Table, bad: Sequence[BadItem]) -> None:
        """`passthrough` holds the good rows' id and pass-through columns, in order."""
        dim = self.schema.field("vector").type.list_size
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), pa.float32())
        columns = {"id": passthrough.column("id"), "vector": pa.FixedSizeListArray.from_arrays(flat, dim)}
        columns.update({name: passthrough.column(name) for name in self.schema.names[2:]})
        table = pa.table(columns).cast(self.schema)
        _write_replace(self.part_path(part), lambda tmp: pq.write_table(table, tmp))
        if bad:
            text = "".join(json.dumps(b.to_dict()) + "\n" for b in bad)
            _write_replace(self.work / f"errors-{part:05d}.jsonl", lambda tmp: tmp.write_text(text))
        self.parts[part] = PartRecord(rows=table.num_rows, failed=len(bad))
        self._save_manifest()

    def _save_manifest(self) -> None:
        manifest = {
            "format": FORMAT,
            "job": self.job,
            "num_parts": self.num_parts,
            "complete": self.complete,
            "rows": sum(p.rows for p in self.parts.values()),
            "failed": sum(p.failed for p in self.parts.values()),
            "parts": {str(k): vars(v) for k, v in sorted(self.parts.items())},
        }
        _write_json(self.out / MANIFEST, manifest)

    def finish(self) -> Path:
        """Gathers the bad items of every part into OUT/_errors.jsonl (empty when none)."""
        if self.num_parts == 0 and not self.part_path(0).exists():
            # An empty dataset still has a schema.
            _write_replace(self.part_path(0), lambda tmp: pq.write_table(self.schema.empty_table(), tmp))
        errors = self.out / ERRORS

        def gather(tmp: Path) -> None:
            with open(tmp, "w") as f:
                for part in sorted(self.parts):
                    path = self.work / f"errors-{part:05d}.jsonl"
                    if self.parts[part].failed and path.exists():
                        f.write(path.read_text())

        _write_replace(errors, gather)
        self._save_manifest()
        return errors
