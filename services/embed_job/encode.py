"""Rows of a work list -> vectors: decode and prepare each item, then run the model in batches.

Both engines call `PartEncoder.encode`. Preparing (reading the file, decoding,
resampling, resizing) runs in worker processes when there are any, in input order,
with a bounded number of chunks in flight so memory stays flat; the model runs in the
calling process on the space's device.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tessera.embedder import Space
from tessera.embedder.encoders import Encoder
from tessera.embedder.errors import DecodeError
from tessera.embedder.modality import Modality
from tessera.embedder.registry import load_preparer

PREPARE_CHUNK = 32  # items per task sent to a worker: big enough to amortise the pickling


@dataclass(frozen=True)
class BadItem:
    id: str
    source: str  # the file, or the input row, the item came from
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "source": self.source, "reason": self.reason}


class BadItemError(RuntimeError):
    """`--on-error fail` met a bad item."""

    def __init__(self, item: BadItem) -> None:
        super().__init__(
            f"bad item {item.id!r} ({item.source}): {item.reason}. Fix or remove it, or re-run with "
            "--on-error skip to embed the rest and list bad items in the errors file"
        )
        self.item = item


@dataclass(frozen=True)
class ItemSource:
    """How a content cell becomes the bytes or text the space's decoder takes."""

    modality: Modality
    root: Path
    content_is_path: bool

    def names_a_file(self, cell: Any) -> bool:
        return self.content_is_path or (self.modality is not Modality.TEXT and isinstance(cell, str))

    def describe(self, cell: Any, row: int) -> str:
        return str(self.root / cell) if self.names_a_file(cell) else f"row {row}"

    def load(self, cell: Any) -> Any:
        if cell is None:
            raise DecodeError(str(self.modality), "empty cell (null)")
        if self.names_a_file(cell):
            path = Path(cell)
            path = path if path.is_absolute() else self.root / path
            try:
                return path.read_bytes()
            except OSError as exc:
                raise DecodeError(str(self.modality), f"cannot read {path} ({exc.strerror or exc})") from None
        return cell


# Set in each worker process by `init_worker`: the encoder's prepare step, built once per process.
_worker_encoder: Encoder | None = None


def init_worker(space_ref: str, modality: str) -> None:
    import torch

    global _worker_encoder
    torch.set_num_threads(1)  # the model owns the cores; a worker only decodes
    _worker_encoder = load_preparer(space_ref, modality)


def prepare_chunk(encoder: Encoder | None, source: ItemSource, cells: Sequence[Any]) -> list[tuple[Any, str | None]]:
    """(prepared, None) or (None, reason) per cell, in order."""
    encoder = encoder or _worker_encoder
    assert encoder is not None, "init_worker was not run in this process"
    out: list[tuple[Any, str | None]] = []
    for cell in cells:
        try:
            out.append((encoder.prepare(source.load(cell)), None))
        except DecodeError as exc:
            out.append((None, exc.reason))
    return out


def _worker_prepare_chunk(source: ItemSource, cells: Sequence[Any]) -> list[tuple[Any, str | None]]:
    return prepare_chunk(None, source, cells)


def ordered_map(
    pool: Executor | None, fn: Callable[[list[Any]], Any], chunks: Iterator[list[Any]], window: int
) -> Iterator[Any]:
    """`fn` over chunks, results in order, at most `window` chunks in flight."""
    if pool is None:
        yield from map(fn, chunks)
        return
    pending: deque = deque()
    for chunk in chunks:
        pending.append(pool.submit(fn, chunk))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


class PartEncoder:
    """Embeds the rows of one part; bad items are returned, or raised when `fail_fast`."""

    def __init__(
        self,
        space: Space,
        source: ItemSource,
        *,
        batch_size: int | None = None,
        pool: Executor | None = None,
        workers: int = 0,
        fail_fast: bool = False,
    ) -> None:
        self.space, self.source, self.pool, self.fail_fast = space, source, pool, fail_fast
        self.encoder = space.encoder(source.modality)
        self.batch_size = batch_size or self.encoder.default_batch_size
        self.window = max(2, 4 * workers)

    def _prepared(self, cells: Sequence[Any]) -> Iterator[tuple[Any, str | None]]:
        chunks = (list(cells[i : i + PREPARE_CHUNK]) for i in range(0, len(cells), PREPARE_CHUNK))
        if self.pool is None:
            fn: Callable[[list[Any]], Any] = lambda chunk: prepare_chunk(self.encoder, self.source, chunk)  # noqa: E731
        else:
            from functools import partial

            fn = partial(_worker_prepare_chunk, self.source)
        for results in ordered_map(self.pool, fn, chunks, self.window):
            yield from results

    def encode(
        self, ids: Sequence[str], cells: Sequence[Any], rows_in_input: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray, list[BadItem]]:
        """(vectors of the good rows, boolean mask of good rows, bad items), in input order.

        `rows_in_input` are the items' row numbers in the whole input, for error messages.
        """
        good = np.zeros(len(cells), dtype=bool)
        bad: list[BadItem] = []
        rows: list[int] = []
        prepared: list[Any] = []
        vectors = np.empty((len(cells), self.space.dim), dtype=np.float32)
        for row, (item, reason) in enumerate(self._prepared(cells)):
            if reason is not None:
                failure = BadItem(ids[row], self.source.describe(cells[row], rows_in_input[row]), reason)
                if self.fail_fast:
                    raise BadItemError(failure)
                bad.append(failure)
                continue
            good[row] = True
            rows.append(row)
            prepared.append(item)
            # Length-sorted encoders (text) wait for the whole part, to batch similar lengths together.
            if not self.encoder.sort_by_length and len(rows) == self.batch_size:
                vectors[rows] = self.space.embed_prepared(self.source.modality, prepared)
                rows, prepared = [], []
        if rows:
            self._embed_tail(rows, prepared, vectors)
        return vectors[good], good, bad

    def _embed_tail(self, rows: list[int], prepared: list[Any], vectors: np.ndarray) -> None:
        if not self.encoder.sort_by_length:
            vectors[rows] = self.space.embed_prepared(self.source.modality, prepared)
            return
        # The same length-budgeted model batches as `Space.embed`, at most batch_size items each.
        vectors[rows] = self.space.embed_merged(self.source.modality, prepared, max_batch=self.batch_size)
