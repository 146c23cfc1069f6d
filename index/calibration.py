"""Score calibration across corpora, so the modality gap does not decide a fused ranking.

In a contrastively trained space every (query modality, item modality) pair
has its own cosine scale: an image query scores other images far above equally
relevant sounds or texts (the modality gap, Liang et al. 2022, is close to a
constant shift per pair). Raw scores from different corpora are therefore not
comparable. Calibration subtracts, per corpus, what a *top match* of that
corpus scores for this kind of query, leaving "how much better than this
corpus's usual best is this hit":

- "calibrated" (the default): the query is scored against a fixed random
  sample of the corpus's items (1,024); the mean of its best 10 there is the
  offset. It needs no held-out queries, adapts to each query (composite ones
  too) and costs one small matrix-vector product per corpus.
- "pair": one offset per (query modality, item modality) pair: stored items of
  the query's modality from the space's other corpora stand in as queries, and
  the offset is the mean of their best-10 scores in the corpus's sample. Falls
  back to "calibrated" when the space has no other corpus of that modality.

Why the top of the distribution and why a shift: benchmarks/routing_bench.py's
development tried a z-score over all sampled scores (nDCG@10 0.74 against 0.88
for raw scores: a corpus padded with off-topic items has a low mean and a small
spread, so everything on-topic in it gets a huge z-score), z-scores over the
top (0.91) and shifts by the top mean (0.92); the shift won and needs no
spread estimate. A tail of a fixed count, not a share, keeps corpora of
different sizes on one footing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .corpus import Corpus

REFERENCE_ITEMS = 1024
REFERENCE_QUERIES = 256
REFRESH_GROWTH = 0.1  # re-sample once the corpus has changed size by this share
TAIL = 10
CACHED_CORPORA = 1024  # past this many entries the oldest go: dropped corpora's statistics are never asked for again


@dataclass(frozen=True)
class Stats:
    offset: float  # mean score of a top match in this corpus, for this query or query modality

    def apply(self, scores: np.ndarray) -> np.ndarray:
        return scores - self.offset


def _stats(scores: np.ndarray) -> Stats:
    """Mean of the best TAIL scores of each row (one row per query), averaged over rows."""
    scores = np.atleast_2d(scores)
    n = scores.shape[1]
    take = min(n, TAIL)
    return Stats(float(np.partition(scores, n - take, axis=1)[:, n - take :].mean()))


def _keep(cache: dict, key: object, value: object) -> None:
    cache[key] = value
    while len(cache) > CACHED_CORPORA:
        del cache[next(iter(cache))]


class Calibrator:
    """Caches a reference sample per corpus and pair offsets per (query modality, corpus).

    Keyed by the corpus's `uid` (from its manifest, never reused): a corpus dropped and created again
    under its name, or a new corpus object at a recycled `id()`, never gets another's statistics.
    """

    def __init__(self) -> None:
        self._samples: dict[str, tuple[int, np.ndarray]] = {}
        self._pairs: dict[tuple[str, str], tuple[int, Stats]] = {}
        self._lock = threading.Lock()

    def reference(self, corpus: Corpus) -> np.ndarray:
        key, size = corpus.uid, len(corpus)
        with self._lock:
            cached = self._samples.get(key)
            if cached is not None and abs(cached[0] - size) <= REFRESH_GROWTH * max(cached[0], 1):
                return cached[1]
        sample = corpus.sample_vectors(REFERENCE_ITEMS, seed=17)
        with self._lock:
            _keep(self._samples, key, (size, sample))
        return sample

    def per_query(self, score: Callable[[np.ndarray], np.ndarray], corpus: Corpus) -> Stats:
        """`score` maps reference items (m, d) to this query's similarity with each, as the search scores them."""
        reference = self.reference(corpus)
        if not len(reference):
            return Stats(0.0)
        return _stats(score(reference))

    def per_pair(self, query_modality: str, stand_ins: list[Corpus], corpus: Corpus) -> Stats | None:
        """Statistics for (query modality, this corpus), from stored items of that modality as queries."""
        sources = [c for c in stand_ins if c is not corpus and len(c)]
        if not sources:
            return None
        key, size = (query_modality, corpus.uid), len(corpus)
        with self._lock:
            cached = self._pairs.get(key)
            if cached is not None and abs(cached[0] - size) <= REFRESH_GROWTH * max(cached[0], 1):
                return cached[1]
        per_source = max(1, REFERENCE_QUERIES // len(sources))
        queries = np.concatenate([c.sample_vectors(per_source, seed=29) for c in sources])
        stats = _stats(queries @ self.reference(corpus).T)  # one tail per stand-in query, pooled
        with self._lock:
            _keep(self._pairs, key, (size, stats))
        return stats
