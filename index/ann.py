"""A thin wrapper over one FAISS index built from a factory string, keyed by int64 slot ids.

Slots are the corpus's row numbers. Index types that keep their own ids (IVF)
take them directly. For the rest this wrapper keeps the position -> slot table
itself instead of using `IndexIDMap2`: IDMap translates labels in an
unconditional OpenMP loop, and from a server's worker threads (not the thread
that called omp_set_num_threads) that spins up a thread team on every call,
~85 us per query, more than half an HNSW search on 20k vectors (measured in
benchmarks/index_bench.py's development). Types that cannot remove ids (HNSW)
report so and the corpus tombstones instead; tombstones and metadata filters
both reach FAISS as one `IDSelectorBitmap` pre-filter.
"""

from __future__ import annotations

import functools
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from tessera.embedder.quoting import quote

log = logging.getLogger(__name__)


class IndexBuildError(ValueError):
    """The factory string or the data cannot make a FAISS index."""


def _innermost(index: Any) -> Any:
    """The index that does the searching, under IDMap and pre-transform wrappers."""
    while True:
        downcast = faiss.downcast_index(index)
        if isinstance(downcast, (faiss.IndexIDMap, faiss.IndexIDMap2, faiss.IndexPreTransform)):
            index = downcast.index
        elif isinstance(downcast, faiss.IndexRefine):
            index = downcast.base_index
        else:
            return downcast


# Index types whose stored codes are the float vectors themselves: their scores are exact.
_FLOAT_STORAGE = (faiss.IndexFlat, faiss.IndexHNSWFlat, faiss.IndexIVFFlat)
# GPU IVF indexes take SearchParametersIVF too, but are no subclass of IndexIVF (faiss-cpu has no such class).
_GPU_IVF = tuple(getattr(faiss, name) for name in ("GpuIndexIVF",) if hasattr(faiss, name))
# Search parameter objects kept per (nprobe, efSearch); a handful are in use at a time.
PARAMS_CACHE_SIZE = 64


def _params(index: Any, inner: Any, nprobe: int | None, ef_search: int | None, selector: Any) -> Any | None:
    if nprobe is None and ef_search is None and selector is None:
        return None
    if isinstance(inner, faiss.IndexIVF) or isinstance(inner, _GPU_IVF):
        params = faiss.SearchParametersIVF()
        if nprobe is not None:
            params.nprobe = min(nprobe, getattr(inner, "nlist", nprobe))
    elif isinstance(inner, faiss.IndexHNSW):
        params = faiss.SearchParametersHNSW()
        if ef_search is not None:
            params.efSearch = ef_search
    else:
        params = faiss.SearchParameters()
    if selector is not None:
        params.sel = selector
    outer = faiss.downcast_index(index)
    if isinstance(outer, faiss.IndexPreTransform):
        wrapped = faiss.SearchParametersPreTransform()
        wrapped.index_params = params
        wrapped.sel = params.sel
        wrapped.referenced = params  # keep the inner object alive as long as the wrapper
        return wrapped
    return params


@dataclass
class SearchResult:
    scores: np.ndarray  # (n_queries, k) float32, FAISS's own (possibly approximate) scores
    slots: np.ndarray  # (n_queries, k) int64, -1 where fewer than k were found


class AnnIndex:
    def __init__(
        self,
        factory: str,
        dim: int,
        index: Any | None = None,
        labels: np.ndarray | None = None,
        *,
        ef_construction: int | None = None,
    ) -> None:
        self.factory = factory
        self.dim = dim
        if index is None:
            index = self._build(factory, dim, ef_construction)
        self.index = index
        self.native_ids = faiss.try_extract_index_ivf(index) is not None
        # Position in the index -> slot, for index types without ids of their own. One trailing -1 lets
        # FAISS's "no result" label (-1) translate to -1 in the same single indexing step.
        labels = np.zeros(0, dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
        self._labels_ext = np.append(labels, -1)
        # Position == slot (a corpus built in one go, nothing removed): results need no translation.
        self._identity = bool(np.array_equal(labels, np.arange(len(labels))))
        self.on_gpu = False
        self.gpu_note = ""
        # Resolved once: SWIG downcasts cost more than a whole HNSW query on a small corpus.
        self._inner = _innermost(index)
        self.exact_scores = isinstance(self._inner, _FLOAT_STORAGE)
        self._params_cache: dict[tuple[int | None, int | None], Any] = {}
        self.needs_training = _factory_needs_training(factory, dim)

    @property
    def _labels(self) -> np.ndarray:
        return self._labels_ext[:-1]

    @staticmethod
    def _build(factory: str, dim: int, ef_construction: int | None = None) -> Any:
        try:
            index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            # FAISS's message names its C++ source files and assertions: the server log keeps it, the caller
            # gets what to do.
            log.warning(
                {"event": "index_factory_refused", "factory": factory[:200], "dim": dim, "faiss": str(exc)[:500]}
            )
            raise IndexBuildError(
                f"FAISS cannot build index {quote(factory)} for {dim}-d vectors; see the README's index grammar"
            ) from None
        if ef_construction is not None:
            inner = _innermost(index)
            # IVF with an HNSW coarse quantizer ("IVF4096_HNSW32,...") builds its graph over the centroids.
            graph = inner if isinstance(inner, faiss.IndexHNSW) else None
            if graph is None and isinstance(inner, faiss.IndexIVF):
                quantizer = faiss.downcast_index(inner.quantizer)
                graph = quantizer if isinstance(quantizer, faiss.IndexHNSW) else None
            if graph is not None:
                graph.hnsw.efConstruction = ef_construction
        return index

    # ---- state ---------------------------------------------------------------------------
    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def _centroids(self) -> int:
        """The most centroids any k-means in training fits (IVF lists, PQ codebooks)."""
        most = 1
        ivf = faiss.try_extract_index_ivf(self.index)
        if ivf is not None:
            most = max(most, ivf.nlist)
        pq = getattr(self._inner, "pq", None)
        if pq is not None:
            most = max(most, 1 << pq.nbits)
        return most

    def training_size(self) -> int:
        """How many vectors training wants: FAISS's 39 per centroid, at least 1,000."""
        return max(1000, 39 * self._centroids())

    def min_training_size(self) -> int:
        """Fewer than this and k-means cannot run at all."""
        return self._centroids()

    def supports_remove(self) -> bool:
        return not (self.on_gpu or isinstance(self._inner, faiss.IndexHNSW))

    # ---- writes --------------------------------------------------------------------------
    def train(self, sample: np.ndarray) -> None:
        self.index.train(np.ascontiguousarray(sample, dtype=np.float32))

    def add(self, vectors: np.ndarray, slots: np.ndarray) -> None:
        if not len(slots):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        slots = np.ascontiguousarray(slots, dtype=np.int64)
        if self.native_ids:
            self.index.add_with_ids(vectors, slots)
        else:
            start = len(self._labels)
            self.index.add(vectors)
            self._identity = self._identity and bool(np.array_equal(slots, np.arange(start, start + len(slots))))
            self._labels_ext = np.concatenate([self._labels, slots, [-1]])

    def remove(self, slots: np.ndarray) -> int:
        if not len(slots):
            return 0
        slots = np.ascontiguousarray(slots, dtype=np.int64)
        if self.native_ids:
            return int(self.index.remove_ids(faiss.IDSelectorBatch(slots)))
        # Flat-code indexes remove by position and keep the rest in order; mirror that in the labels.
        doomed = np.isin(self._labels, slots)
        removed = int(self.index.remove_ids(faiss.IDSelectorBatch(np.flatnonzero(doomed).astype(np.int64))))
        self._labels_ext = np.append(self._labels[~doomed], -1)
        self._identity = bool(np.array_equal(self._labels, np.arange(len(self._labels))))
        return removed

    # ---- reads ---------------------------------------------------------------------------
    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        allowed: np.ndarray | None = None,
        nprobe: int | None = None,
        ef_search: int | None = None,
    ) -> SearchResult:
        """`allowed` is a boolean mask over slots; slots beyond it are not admitted."""
        selector = bitmap = None
        if allowed is not None:
            if not self.native_ids:
                allowed = _admit(allowed, self._labels)
            bitmap = np.packbits(allowed, bitorder="little")
            selector = faiss.IDSelectorBitmap(bitmap.size, faiss.swig_ptr(bitmap))
            params = _params(self.index, self._inner, nprobe, ef_search, selector)
        else:
            key = (nprobe, ef_search)
            params = self._params_cache.get(key)
            if params is None and key not in self._params_cache:
                if len(self._params_cache) >= PARAMS_CACHE_SIZE:
                    self._params_cache.clear()  # callers sweeping knobs must not grow it without bound
                params = self._params_cache[key] = _params(self.index, self._inner, nprobe, ef_search, None)
        if queries.dtype != np.float32 or not queries.flags.c_contiguous:
            queries = np.ascontiguousarray(queries, dtype=np.float32)
        n = queries.shape[0]
        scores = np.empty((n, k), dtype=np.float32)
        slots = np.empty((n, k), dtype=np.int64)
        # The SWIG entry point directly: faiss's Python `search` wrapper re-checks and re-allocates
        # on every call, a measurable share of a one-query HNSW search.
        self.index.search_c(n, faiss.swig_ptr(queries), k, faiss.swig_ptr(scores), faiss.swig_ptr(slots), params)
        del bitmap  # FAISS read it during the call
        if not (self.native_ids or self._identity):
            slots = self._labels_ext[slots]
        return SearchResult(scores, slots)

    # ---- devices and files ---------------------------------------------------------------
    def to_gpu(self) -> bool:
        """Move to all GPUs if faiss has any and the index type runs there; say why not otherwise."""
        if faiss.get_num_gpus() == 0:
            self.gpu_note = "faiss sees no GPU"
            return False
        try:
            self.index = faiss.index_cpu_to_all_gpus(self.index)
        except (RuntimeError, AttributeError) as exc:
            self.gpu_note = f"{self.factory} stays on CPU: {str(exc).strip().splitlines()[-1]}"
            log.info(self.gpu_note)
            return False
        self.on_gpu = True
        self._inner = _innermost(self.index)
        self._params_cache.clear()
        self.gpu_note = f"on {faiss.get_num_gpus()} GPU(s)"
        return True

    def cpu_index(self) -> Any:
        return faiss.index_gpu_to_cpu(self.index) if self.on_gpu else self.index

    def save(self, path: Path) -> None:
        faiss.write_index(self.cpu_index(), str(path))
        if not self.native_ids:
            # np.save onto a path reports a short write as an OSError without errno; a plain write says ENOSPC.
            buffer = io.BytesIO()
            np.save(buffer, self._labels)
            with open(_labels_path(path), "wb") as f:
                f.write(buffer.getbuffer())

    @classmethod
    def load(cls, factory: str, dim: int, path: Path, *, mmap: bool = False) -> AnnIndex:
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        index = faiss.read_index(str(path), flags)
        labels_path = _labels_path(path)
        labels = np.load(labels_path) if labels_path.exists() else None
        return cls(factory, dim, index, labels)


@functools.lru_cache(maxsize=64)
def _factory_needs_training(factory: str, dim: int) -> bool:
    return not faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT).is_trained


def _labels_path(path: Path) -> Path:
    return path.with_name(path.stem + ".labels.npy")


def _admit(allowed_slots: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """A mask over slots -> a mask over index positions."""
    inside = labels < len(allowed_slots)
    out = np.zeros(len(labels), dtype=bool)
    out[inside] = allowed_slots[labels[inside]]
    return out
