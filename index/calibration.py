"""Score calibration across corpora, so the modality gap does not decide a fused ranking.

In a contrastively trained space every (query modality, item modality) pair
has its own cosine distribution: text-to-text scores sit well above
text-to-image scores for equally relevant items (the modality gap, Liang et al.
2022). Raw scores from different corpora are therefore not comparable. A
calibrator turns a raw score into "how far above what this query scores
against an arbitrary item of this corpus", a z-score against a reference
distribution drawn from the corpus itself:

- "query" (the default): the reference is this query against a fixed random
  sample of the corpus's items. It needs no held-out queries, adapts to each
  query (including composite ones), and costs one small matrix-vector product.
- "pair": the reference is a sample of stored items of the query's modality,
  taken from the other corpora of the space, used as stand-in queries against
  the same item sample; one mean and spread per (query modality, item
  modality) pair. It falls back to "query" when the space holds no corpus of
  the query's modality.

benchmarks/routing_bench.py compares both, plus rank fusion (RRF).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .corpus import Corpus

REFERENCE_ITEMS = 1024
REFERENCE_QUERIES = 256
REFRESH_GROWTH = 0.1  # re-sample once the corpus has changed size by this share
MIN_SPREAD = 1e-4


@dataclass(frozen=True)
class Stats:
    mean: float
    std: float

    def apply(self, scores: np.ndarray) -> np.ndarray:
        return (scores - self.mean) / self.std


def _stats(scores: np.ndarray) -> Stats:
    return Stats(float(scores.mean()), max(float(scores.std()), MIN_SPREAD))


class Calibrator:
    """Caches a reference sample per corpus and pair statistics per (query modality, corpus)."""

    def __init__(self) -> None:
        self._samples: dict[int, tuple[int, np.ndarray]] = {}
        self._pairs: dict[tuple[str, int], tuple[int, Stats]] = {}
        self._lock = threading.Lock()

    def reference(self, corpus: Corpus) -> np.ndarray:
        key, size = id(corpus), len(corpus)
        with self._lock:
            cached = self._samples.get(key)
            if cached is not None and abs(cached[0] - size) <= REFRESH_GROWTH * max(cached[0], 1):
                return cached[1]
        sample = corpus.sample_vectors(REFERENCE_ITEMS, seed=17)
        with self._lock:
            self._samples[key] = (size, sample)
        return sample

    def per_query(self, score: Callable[[np.ndarray], np.ndarray], corpus: Corpus) -> Stats:
        """`score` maps reference items (m, d) to this query's similarity with each, as the search scores them."""
        reference = self.reference(corpus)
        if not len(reference):
            return Stats(0.0, 1.0)
        return _stats(score(reference))

    def per_pair(self, query_modality: str, stand_ins: list[Corpus], corpus: Corpus) -> Stats | None:
        """Statistics for (query modality, this corpus), from stored items of that modality as queries."""
        sources = [c for c in stand_ins if c is not corpus and len(c)]
        if not sources:
            return None
        key, size = (query_modality, id(corpus)), len(corpus)
        with self._lock:
            cached = self._pairs.get(key)
            if cached is not None and abs(cached[0] - size) <= REFRESH_GROWTH * max(cached[0], 1):
                return cached[1]
        per_source = max(1, REFERENCE_QUERIES // len(sources))
        queries = np.concatenate([c.sample_vectors(per_source, seed=29) for c in sources])
        stats = _stats(self.reference(corpus) @ queries.T)
        with self._lock:
            self._pairs[key] = (size, stats)
        return stats
