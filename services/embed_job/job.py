"""`tessera embed`: one function, `run_embed`, that the CLI and Python callers share."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from tqdm.auto import tqdm

from tessera.embedder import Space, load_space
from tessera.embedder.device import default_device
from tessera.embedder.modality import Modality
from tessera.index.diskspace import DiskGuard

from .encode import ItemSource, PartEncoder, init_worker
from .options import EmbedOptions
from .output import ERRORS, EmbeddingsWriter, output_schema
from .sources import CONTENT, InputError, WorkList, input_kind, open_work_list


@dataclass
class EmbedSummary:
    output: Path
    errors_file: Path
    space: str
    modality: str
    dim: int
    engine: str
    total: int  # rows in the input
    embedded: int  # rows embedded by this run
    resumed: int  # rows an earlier run had already written (skipped now)
    failed: int  # bad items, listed in the errors file
    seconds: float  # the whole run, model loading included
    embed_seconds: float  # reading, decoding, embedding and writing the parts
    ignored_files: list[str] = field(default_factory=list)

    @property
    def items_per_s(self) -> float:
        return self.embedded / self.embed_seconds if self.embed_seconds > 0 else 0.0

    def format(self) -> str:
        lines = [
            f"wrote {self.output} ({self.space}, {self.modality}, {self.dim}-d, engine {self.engine})",
            f"  done    {self.embedded:,} embedded in {self.embed_seconds:.1f} s ({self.items_per_s:,.1f} items/s; "
            f"{self.seconds:.1f} s in all, with loading)",
            f"  skipped {self.resumed:,} already written by an earlier run",
            f"  failed  {self.failed:,}" + (f" bad items, listed in {self.errors_file}" if self.failed else ""),
        ]
        if self.ignored_files:
            example = ", ".join(self.ignored_files[:3])
            lines.append(
                f"  ignored {len(self.ignored_files):,} files with other suffixes (e.g. {example}); "
                "--modality takes every file"
            )
        return "\n".join(lines)


def auto_workers(modality: Modality) -> int:
    """Media get all cores but one for decoding; text and vectors decode in microseconds, in-process.

    With two cores or fewer a decode process only takes turns with the model on the
    same cores, and its start-up (importing torch) costs more than it saves, so
    decoding stays in-process there too; `--workers N` overrides.
    """
    cores = os.cpu_count() or 1
    if modality in (Modality.TEXT, Modality.VECTOR) or cores <= 2:
        return 0
    return min(8, cores - 1)


def run_embed(options: EmbedOptions, *, progress: bool = True) -> EmbedSummary:
    """Embed `options.input` into a Parquet dataset at `options.output`, resuming what an earlier run left.

    A full disk raises DiskFullError (naming OUT and its free space) with no half-written file left;
    run the same command again once space is freed and it resumes from the finished parts.
    """
    options.validate()
    output = Path(options.output).resolve()
    with DiskGuard(output if output.exists() else output.parent, label="output directory").writing("tessera embed"):
        return _run_embed(options, progress=progress)


def _run_embed(options: EmbedOptions, *, progress: bool) -> EmbedSummary:
    started = time.perf_counter()
    input_kind(options.input)  # a clear error for a missing or unsupported input, before loading a model
    device = options.device or str(default_device())
    space = load_space(options.space_ref(), device="cpu" if options.engine == "ray" else device)
    writer = EmbeddingsWriter(options.output, options.job_key(space), overwrite=options.overwrite)
    work, ignored = open_work_list(
        options.input.resolve(),
        writer.work,
        modality=options.modality,
        column=options.column,
        id_column=options.id_column,
        passthrough=options.passthrough,
        part_rows=options.part_rows,
    )
    if work.modality not in space.modalities:
        have = ", ".join(m.value for m in space.modalities)
        raise InputError(f"space {space.id} has no {work.modality} encoder (it embeds {have}); pick another --space")
    metadata = {
        "space": space.id,
        "space_name": space.name,
        "space_version": space.version,
        "dim": str(space.dim),
        "modality": work.modality.value,
        "similarity": space.similarity,
        "source": str(options.input.resolve()),
    }
    if work.content_column in work.passthrough:
        metadata["content_column"] = work.content_column
    writer.start(output_schema(space.dim, work.passthrough_schema(), metadata), work.num_parts)
    pending = [p for p in range(work.num_parts) if p not in writer.done]
    resumed = sum(r.rows + r.failed for r in writer.parts.values())
    bar = tqdm(total=work.num_rows, initial=resumed, unit="item", desc=f"embed {work.modality}", disable=not progress)
    embed_started = time.perf_counter()
    try:
        if options.engine == "ray":
            from .ray_engine import run_ray

            run_ray(options, space, work, writer, pending, bar)
        else:
            run_local(options, space, work, writer, pending, bar)
    finally:
        bar.close()
    embed_seconds = time.perf_counter() - embed_started
    errors_file = writer.finish()
    failed = sum(r.failed for r in writer.parts.values())
    return EmbedSummary(
        output=options.output,
        errors_file=errors_file,
        space=space.id,
        modality=work.modality.value,
        dim=space.dim,
        engine=options.engine,
        total=work.num_rows,
        embedded=work.num_rows - resumed - sum(writer.parts[p].failed for p in pending),
        resumed=resumed,
        failed=failed,
        seconds=time.perf_counter() - started,
        embed_seconds=embed_seconds,
        ignored_files=ignored,
    )


def part_cells(table: pa.Table) -> tuple[list[str], list[Any]]:
    return table.column("id").to_pylist(), table.column(CONTENT).to_pylist()


def run_local(
    options: EmbedOptions, space: Space, work: WorkList, writer: EmbeddingsWriter, pending: list[int], bar: tqdm
) -> None:
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    workers = options.workers if options.workers is not None else auto_workers(work.modality)
    # spawn, not fork: forking a process that has started torch's thread pools can deadlock.
    pool = (
        ProcessPoolExecutor(
            workers,
            mp_context=get_context("spawn"),
            initializer=init_worker,
            initargs=(options.space_ref(), work.modality.value),
        )
        if workers
        else None
    )
    source = ItemSource(work.modality, work.root, work.content_is_path)
    encoder = PartEncoder(
        space,
        source,
        batch_size=options.batch_size,
        pool=pool,
        workers=workers,
        fail_fast=options.on_error == "fail",
    )
    try:
        for part in pending:
            table = work.read_part(part)
            ids, cells = part_cells(table)
            start, _ = work.part_range(part)
            vectors, good, bad = encoder.encode(ids, cells, range(start, start + len(ids)))
            writer.write_part(part, vectors, table.filter(pa.array(good)).drop_columns([CONTENT]), bad)
            bar.update(table.num_rows)
            if bad:
                bar.set_postfix(failed=sum(r.failed for r in writer.parts.values()))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


__all__ = ["ERRORS", "EmbedOptions", "EmbedSummary", "run_embed"]
