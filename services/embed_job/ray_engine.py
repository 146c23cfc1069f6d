"""`tessera embed --engine ray`: the same job on Ray Data.

    parts to do -> map_batches(read part k)         Ray tasks, one per part
                -> map_batches(EncodeBatch)         an actor pool; each actor loads the space once
                -> iter_batches, in order           the driver writes the parts and the manifest

The driver writes the parts itself, through the same writer the local engine uses,
so both engines produce the same files, the same errors file and the same manifest,
and a Ray job resumes like a local one. On a cluster the input (and the output
directory, which holds the staged work list) must be on storage every node can read.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from tessera.embedder import Space, load_space

from .encode import BadItem, BadItemError, ItemSource, PartEncoder
from .options import EmbedOptions
from .output import EmbeddingsWriter
from .sources import CONTENT, WorkList

PART, ROW, ERROR, SOURCE = "_part", "_row", "_error", "_source"


def read_parts(batch: pa.Table, work: WorkList) -> pa.Table:
    tables = []
    for part in batch.column("part").to_pylist():
        table = work.read_part(part)
        start, stop = work.part_range(part)
        table = table.append_column(PART, pa.array([part] * table.num_rows, pa.int32()))
        tables.append(table.append_column(ROW, pa.array(range(start, stop), pa.int64())))
    return pa.concat_tables(tables)


class EncodeBatch:
    """A Ray actor: the space loaded once, then batches of rows -> vector (null when bad) and error columns."""

    def __init__(self, space_ref: str, source: ItemSource, device: str, batch_size: int | None, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.space = load_space(space_ref, device=device)
        self.encoder = PartEncoder(self.space, source, batch_size=batch_size)

    def __call__(self, batch: pa.Table) -> pa.Table:
        ids, cells = batch.column("id").to_pylist(), batch.column(CONTENT).to_pylist()
        vectors, good, bad = self.encoder.encode(ids, cells, batch.column(ROW).to_pylist())
        full = np.zeros((batch.num_rows, self.space.dim), dtype=np.float32)
        full[good] = vectors
        flat = pa.array(full.reshape(-1), pa.float32())
        vector = pa.FixedSizeListArray.from_arrays(flat, self.space.dim, mask=pa.array(~good))
        errors: list[str | None] = [None] * batch.num_rows
        sources: list[str | None] = [None] * batch.num_rows
        bad_rows = np.flatnonzero(~good)
        for row, item in zip(bad_rows, bad, strict=True):
            errors[row], sources[row] = item.reason, item.source
        out = batch.drop_columns([CONTENT]).append_column("vector", vector)
        out = out.append_column(ERROR, pa.array(errors, pa.string()))
        return out.append_column(SOURCE, pa.array(sources, pa.string()))


class PartAssembler:
    """Collects the encoded rows of each part as they stream back and writes the part once it is whole."""

    def __init__(self, work: WorkList, writer: EmbeddingsWriter, fail_fast: bool) -> None:
        self.work, self.writer, self.fail_fast = work, writer, fail_fast
        self.pending: dict[int, list[pa.Table]] = {}

    def add(self, batch: pa.Table) -> None:
        if self.fail_fast and batch.column(ERROR).null_count < batch.num_rows:
            row = next(i for i, e in enumerate(batch.column(ERROR).to_pylist()) if e is not None)
            first = batch.slice(row, 1).to_pylist()[0]
            raise BadItemError(BadItem(first["id"], first[SOURCE], first[ERROR]))
        for part in sorted(set(batch.column(PART).to_pylist())):
            rows = batch.filter(pc.equal(batch.column(PART), part))
            self.pending.setdefault(part, []).append(rows)
            start, stop = self.work.part_range(part)
            if sum(t.num_rows for t in self.pending[part]) == stop - start:
                self._write(part, pa.concat_tables(self.pending.pop(part)))

    def _write(self, part: int, table: pa.Table) -> None:
        table = table.sort_by(ROW)  # order within a part does not depend on how Ray cut the batches
        good = table.column(ERROR).is_null()
        kept = table.filter(good)
        vectors = np.asarray(kept.column("vector").combine_chunks().flatten(), dtype=np.float32)
        bad_rows = table.filter(pc.invert(good)).select(["id", SOURCE, ERROR]).to_pylist()
        bad = [BadItem(r["id"], r[SOURCE], r[ERROR]) for r in bad_rows]
        passthrough = kept.drop_columns(["vector", PART, ROW, ERROR, SOURCE])
        self.writer.write_part(part, vectors.reshape(kept.num_rows, -1), passthrough, bad)

    def check_done(self, expected: Sequence[int]) -> None:
        missing = [p for p in expected if p not in self.writer.done]
        if missing or self.pending:
            raise RuntimeError(f"Ray returned incomplete parts {sorted({*missing, *self.pending})}; re-run to resume")


def _cluster_cpus() -> int:
    import ray

    return int(ray.cluster_resources().get("CPU", 1))


def run_ray(
    options: EmbedOptions, space: Space, work: WorkList, writer: EmbeddingsWriter, pending: list[int], bar: tqdm
) -> None:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise RuntimeError("--engine ray needs Ray Data: pip install 'tessera[ray]'") from exc
    if not pending:
        return
    started_here = not ray.is_initialized()
    if started_here:
        # Local: a Ray instance on this machine for the job; a cluster: --ray-address (or RAY_ADDRESS).
        ray.init(address=options.ray_address, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False  # the job's own bar counts items
        cluster_gpus = int(ray.cluster_resources().get("GPU", 0))
        device = options.device or ("cuda" if cluster_gpus else "cpu")
        gpus = 1 if device.startswith("cuda") else 0
        cpus = _cluster_cpus()
        # One actor per GPU; on CPUs, one CPU is left for the read tasks and the actors' torch threads share the rest.
        actors = options.workers or (max(1, cluster_gpus) if gpus else max(1, cpus - 1))
        source = ItemSource(work.modality, work.root, work.content_is_path)
        parts = ray.data.from_items([{"part": p} for p in pending], override_num_blocks=len(pending))
        rows = parts.map_batches(read_parts, fn_kwargs={"work": work}, batch_size=1, batch_format="pyarrow")
        encoded = rows.map_batches(
            EncodeBatch,
            fn_constructor_kwargs={
                "space_ref": options.space_ref(),
                "source": source,
                "device": device,
                "batch_size": options.batch_size,
                "threads": max(1, cpus // actors),
            },
            batch_size=options.batch_size or space.encoder(work.modality).default_batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=1,
            num_gpus=gpus,
        )
        assembler = PartAssembler(work, writer, fail_fast=options.on_error == "fail")
        for batch in encoded.iter_batches(batch_format="pyarrow", batch_size=None):
            assembler.add(batch)
            bar.update(batch.num_rows)
        assembler.check_done(pending)
    finally:
        if started_here:
            ray.shutdown()
