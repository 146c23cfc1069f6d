"""Dynamic micro-batching: concurrent embed requests for one (space, modality) share a model batch.

A batch takes the calls that queued while the previous batch ran, so a lone call
never waits and a busy model gets full batches; with `max_wait_ms` > 0 a batch also
waits that long after its first call for companions (useful on a GPU, where a
fuller batch costs little more). A batch never exceeds `max_batch` items. The
model runs in a worker thread, so the event loop keeps accepting calls while a
batch computes; one batch per encoder runs at a time, which is what a single
model instance can do anyway.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class _Pending:
    items: Sequence[Any]
    future: asyncio.Future[np.ndarray]
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass
class BatchStats:
    batches: int = 0
    items: int = 0
    sizes: list[int] = field(default_factory=list)


class MicroBatcher:
    """Merges calls to `run(items) -> (n, dim) array` made within a short window into one call."""

    def __init__(
        self,
        run: Callable[[list[Any]], np.ndarray],
        *,
        max_batch: int = 64,
        max_wait_ms: float = 0.0,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._run = run
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._on_batch = on_batch
        self.stats = BatchStats()

    async def submit(self, items: Sequence[Any]) -> np.ndarray:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._loop())
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(items, future))
        return await future

    async def _collect(self) -> list[_Pending]:
        assert self._queue is not None
        first = await self._queue.get()
        batch, size = [first], len(first.items)
        deadline = first.enqueued + self.max_wait
        while size < self.max_batch:
            remaining = deadline - time.perf_counter()
            try:
                # Calls already queued join at once; with no window (the default) an empty queue ends the batch.
                nxt = (
                    self._queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(self._queue.get(), remaining)
                )
            except (asyncio.TimeoutError, asyncio.QueueEmpty):
                break
            if size + len(nxt.items) > self.max_batch and batch:
                await self._requeue_front(nxt)
                break
            batch.append(nxt)
            size += len(nxt.items)
        return batch

    async def _requeue_front(self, pending: _Pending) -> None:
        # asyncio.Queue has no push-front; rebuild it with this one first so it is served next.
        assert self._queue is not None
        rest = []
        while not self._queue.empty():
            rest.append(self._queue.get_nowait())
        await self._queue.put(pending)
        for p in rest:
            await self._queue.put(p)

    async def _loop(self) -> None:
        while True:
            batch = await self._collect()
            live = [p for p in batch if not p.future.cancelled()]
            if not live:
                continue
            items = [x for p in live for x in p.items]
            try:
                vectors = await asyncio.to_thread(self._run, items)
            except Exception as exc:  # one bad batch fails its callers, not the batcher
                for p in live:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            self.stats.batches += 1
            self.stats.items += len(items)
            if self._on_batch:
                self._on_batch(len(items))
            start = 0
            for p in live:
                n = len(p.items)
                if not p.future.done():
                    p.future.set_result(vectors[start : start + n])
                start += n

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
