"""The micro-batcher's policy: a lone call runs at once; calls that queue while a batch runs share the next."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from tessera.batching import MicroBatcher


def _gated_model(gate: threading.Event, calls: list[list[int]]):
    def run(items: list[int]) -> np.ndarray:
        calls.append(list(items))
        if len(calls) == 1:
            gate.wait(10)  # the first batch holds the model until the test has queued the others
        return np.asarray(items, dtype=np.float32)[:, None]

    return run


def test_lone_call_runs_alone_and_calls_queued_meanwhile_share_the_next_batch() -> None:
    gate, calls = threading.Event(), []

    async def main() -> list[np.ndarray]:
        batcher = MicroBatcher(_gated_model(gate, calls), max_batch=4)  # the default: no window
        first = asyncio.ensure_future(batcher.submit([0]))
        while not calls:  # the first call reached the model without waiting for company
            await asyncio.sleep(0.001)
        rest = [asyncio.ensure_future(batcher.submit([i])) for i in range(1, 7)]
        await asyncio.sleep(0.05)  # all six are queued behind the running batch
        gate.set()
        results = await asyncio.gather(first, *rest)
        await batcher.close()
        return results

    results = asyncio.run(main())
    assert calls == [[0], [1, 2, 3, 4], [5, 6]]  # queued calls merged, at most max_batch per batch
    assert [float(r[0, 0]) for r in results] == [0, 1, 2, 3, 4, 5, 6]  # each caller gets its own rows


def test_a_window_makes_the_first_call_wait_for_company() -> None:
    calls: list[list[int]] = []

    def run(items: list[int]) -> np.ndarray:
        calls.append(list(items))
        return np.zeros((len(items), 1), dtype=np.float32)

    async def main() -> None:
        batcher = MicroBatcher(run, max_batch=8, max_wait_ms=200)
        first = asyncio.ensure_future(batcher.submit([0]))
        await asyncio.sleep(0.02)  # well inside the window
        await asyncio.gather(first, batcher.submit([1]), batcher.submit([2]))
        await batcher.close()

    asyncio.run(main())
    assert calls == [[0, 1, 2]]
