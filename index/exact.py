"""Exact (brute-force) inner-product top-k over a float32 matrix, at the speed of the matrix multiply.

FAISS's `IndexFlatIP` multiplies queries by the database in slabs of
`distance_compute_blas_database_bs` (1,024) rows and pushes every score of every
slab through a per-query heap. On a small machine the many small GEMMs run far
below BLAS peak and the heap work is as large as the multiply itself
(benchmarks/index_bench.py measures both). Here the database is multiplied in
slabs as large as a memory budget allows, one GEMM each, and the top-k of each
slab comes from `torch.topk`, which is vectorised and threaded; slabs are then
merged. With 64 queries over 1M x 384 this is one GEMM plus ~5% for the top-k.

Where numpy's BLAS runs each call on its caller's thread (a server: see blas.py), a large
scan is cut into parts that run on a pool of one thread per core; a small one runs on the
caller's thread, where handing it out would cost more than it saves.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from tessera.embedder.inference import usable_cores

from . import blas

# Scores of one slab are held as float32 (queries x rows); 256 MiB keeps 64 queries x 1M rows in one slab.
SCORE_BUDGET_BYTES = 256 << 20
MIN_SLAB_ROWS = 4096
# Below this many multiply-adds (queries x rows x dim) a scan stays on the caller's thread: handing its
# parts to the pool would cost more than it saves.
PARALLEL_MIN_WORK = 1 << 23

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _scan_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=usable_cores(), thread_name_prefix="tessera-exact")
        return _pool


def _scan_workers(n_queries: int, n_rows: int, dim: int) -> int:
    """How many threads a scan is split across: 1 unless BLAS leaves the cores to us and the scan is large."""
    if not blas.per_call() or n_queries * n_rows * dim < PARALLEL_MIN_WORK:
        return 1
    return usable_cores()


def _slab_rows(n_queries: int, n_rows: int) -> int:
    return max(MIN_SLAB_ROWS, min(n_rows, SCORE_BUDGET_BYTES // (4 * max(1, n_queries))))


def exact_topk(
    vectors: np.ndarray,
    queries: np.ndarray,
    k: int,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k rows of `vectors` by inner product with each query.

    `allowed`, a boolean mask over rows, restricts the search (filters and
    deleted rows). Returns (scores, rows), each (n_queries, k), best first;
    where fewer than k rows are allowed the tail is score -inf, row -1, as FAISS does.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    n_queries = queries.shape[0]
    rows_map: np.ndarray | None = None
    if allowed is not None and allowed.size and allowed.mean() < 0.5:
        # A selective filter: multiply only the rows it admits, fewer flops than masking.
        rows_map = np.flatnonzero(allowed)
        vectors = vectors[rows_map]
        allowed = None
    n_rows = vectors.shape[0]
    scores = np.full((n_queries, k), -np.inf, dtype=np.float32)
    rows = np.full((n_queries, k), -1, dtype=np.int64)
    if n_rows == 0 or n_queries == 0 or k <= 0:
        return scores, rows

    def scan(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        block = torch.from_numpy(queries @ vectors[start:stop].T)
        if allowed is not None:
            block.masked_fill_(torch.from_numpy(~allowed[start:stop]).unsqueeze(0), -torch.inf)
        values, index = torch.topk(block, min(k, stop - start), dim=1)
        return values, index + start

    slab = _slab_rows(n_queries, n_rows)
    workers = _scan_workers(n_queries, n_rows, vectors.shape[1])
    if workers > 1:
        # `workers` parts in flight hold no more scores than one slab does.
        part = -(-min(slab, n_rows) // workers)
        starts = range(0, n_rows, part)
        found_parts = list(_scan_pool().map(lambda s: scan(s, min(s + part, n_rows)), starts))
    else:
        found_parts = [scan(s, min(s + slab, n_rows)) for s in range(0, n_rows, slab)]
    merged_scores = torch.cat([values for values, _ in found_parts], dim=1)
    merged_rows = torch.cat([index for _, index in found_parts], dim=1)
    take = min(k, merged_scores.shape[1])
    values, pick = torch.topk(merged_scores, take, dim=1)
    found = torch.gather(merged_rows, 1, pick).numpy()
    scores[:, :take] = values.numpy()
    rows[:, :take] = found
    rows[~np.isfinite(scores)] = -1  # masked-out rows that only filled the tail
    if rows_map is not None:
        rows = np.where(rows >= 0, rows_map[np.maximum(rows, 0)], -1)
    return scores, rows
