"""Routing a query to the corpora of its space, searching them, and fusing their results.

A query is one or more (modality, vector, weight) parts already embedded in one
space. Routing picks the corpora: the named ones when the caller names them,
otherwise every corpus of the space whose modality is among the targets (all
modalities when no target is given). Corpora of another space are never
searched; the result lists them as skipped with the reason. Parts combine as
the space's similarity says: a weighted mean (cosine), an element-wise product
(Symile's multilinear inner product, still one inner-product search), or, for
GRAM, candidates from a mean-vector search re-ranked by exact Gramian volume.

A `Query` checks its values when it is made; the router and the corpora below it
take them as they are.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tessera.embedder.modality import Modality
from tessera.embedder.quoting import quote
from tessera.embedder.similarity import Similarity

from .calibration import Calibrator, Stats
from .catalog import Catalog, CorpusNotFoundError
from .config import check_knob
from .corpus import Corpus
from .filters import Filter, compile_filter
from .fusion import RRF_K, Fusion, fuse
from .search import Hit, SearchArgs

FUSIONS = tuple(f.value for f in Fusion)
GRAM_CANDIDATES = 10  # GRAM re-ranks this many times top_k candidates per corpus


class RoutingError(ValueError):
    pass


@dataclass
class QueryPart:
    modality: Modality | str
    vector: np.ndarray
    weight: float = 1.0


@dataclass
class Query:
    """A routed search, checked once here: invalid values raise RoutingError (or FilterError) when it is made."""

    parts: list[QueryPart]
    space: str  # the space id the parts were embedded in, "name@version"
    top_k: int = 10
    filter: Filter | Mapping[str, Any] | None = None  # compiled to a Filter here
    corpora: Sequence[str | Corpus] | None = None  # named (or already resolved) corpora override routing
    target_modalities: Sequence[Modality | str] | None = None
    fusion: Fusion | str = Fusion.CALIBRATED
    nprobe: int | None = None
    ef_search: int | None = None
    with_vectors: bool = False  # each hit carries its vector, read in the same pass as the search

    def __post_init__(self) -> None:
        if not self.parts:
            raise RoutingError("a query needs at least one part")
        try:
            self.fusion = Fusion.parse(self.fusion)
        except ValueError as exc:
            raise RoutingError(str(exc)) from None
        if self.top_k.__class__ is not int or self.top_k < 1:
            raise RoutingError(f"top_k must be a positive integer, got {quote(self.top_k)}")
        self.parts = [QueryPart(Modality.parse(p.modality), p.vector, p.weight) for p in self.parts]
        for part in self.parts:
            if not isinstance(part.weight, numbers.Real) or not math.isfinite(part.weight):
                raise RoutingError(f"query part weights must be finite numbers, got {quote(part.weight)}")
        if not isinstance(self.filter, Filter):
            self.filter = compile_filter(self.filter)
        self.nprobe = check_knob("nprobe", self.nprobe)
        self.ef_search = check_knob("ef_search", self.ef_search)
        self.target_modalities = [Modality.parse(m) for m in self.target_modalities or []] or None


@dataclass
class RoutedResult:
    hits: list[Hit]
    searched: list[str]
    skipped: list[dict[str, str]]  # {"corpus": ..., "reason": ...}


def gram_volume(vectors: np.ndarray) -> np.ndarray:
    """Volume of the parallelotope spanned by each set of k unit vectors: sqrt(det(V V^T)), batched (..., k, d)."""
    gram = vectors @ np.swapaxes(vectors, -1, -2)
    return np.sqrt(np.clip(np.linalg.det(gram.astype(np.float64)), 0.0, None))


def _stack_with(parts: np.ndarray, items: np.ndarray) -> np.ndarray:
    """(n, k+1, d): the query parts followed by each item."""
    return np.concatenate([np.broadcast_to(parts, (len(items), *parts.shape)), items[:, None, :]], axis=1)


@dataclass(frozen=True)
class Composed:
    vector: np.ndarray  # what the corpora are searched with: unit for cosine and GRAM, the product for MIP
    units: np.ndarray  # (parts, d) the parts at unit length, for GRAM's volumes


def _compose(parts: Sequence[QueryPart], similarity: Similarity | str) -> Composed:
    vectors = [np.asarray(p.vector, dtype=np.float32).reshape(-1) for p in parts]
    dims = {len(v) for v in vectors}
    if len(dims) != 1:
        raise RoutingError(f"query parts have different dimensions: {sorted(dims)}")
    for part, vector in zip(parts, vectors, strict=True):
        if not np.isfinite(vector).all() or not np.any(vector):
            raise RoutingError(f"{Modality.parse(part.modality).value} query part is zero, NaN or infinite")
    units = np.stack([v / np.linalg.norm(v) for v in vectors]).astype(np.float32)
    if Similarity.parse(similarity) is Similarity.MIP:
        return Composed(np.prod(units, axis=0, dtype=np.float32), units)
    weights = np.asarray([p.weight for p in parts], dtype=np.float32)
    if (weights < 0).any() or not weights.sum() > 0:
        raise RoutingError("query part weights must be non-negative and not all zero")
    mean = (weights[:, None] * units).sum(axis=0)
    norm = float(np.linalg.norm(mean))
    if not norm > 1e-12 or not np.isfinite(norm):
        # Opposite parts cancel, or weights like 1e-45 underflow: there is no direction left to search.
        raise RoutingError("the weighted query parts cancel out to a zero vector; change the parts or their weights")
    return Composed((mean / norm).astype(np.float32), units)


def compose(parts: Sequence[QueryPart], similarity: Similarity | str) -> np.ndarray:
    """The one vector a composite query searches with (see the module's docstring)."""
    return _compose(parts, similarity).vector


class Router:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.calibrator = Calibrator()

    def route(self, query: Query) -> tuple[list[Corpus], list[dict[str, str]]]:
        skipped: list[dict[str, str]] = []
        if query.corpora:
            chosen = []
            for named in query.corpora:
                # CorpusNotFoundError for unknown names; the engine passes corpora it has resolved already.
                corpus = self.catalog.get(named) if isinstance(named, str) else named
                if corpus.space_id != query.space:
                    skipped.append(
                        {"corpus": corpus.name, "reason": f"in space {corpus.space_id}, query is {query.space}"}
                    )
                else:
                    chosen.append(corpus)
            return chosen, skipped
        targets = set(query.target_modalities or [])
        chosen = []
        for corpus in self.catalog.corpora():
            if corpus.space_id != query.space:
                skipped.append({"corpus": corpus.name, "reason": f"in space {corpus.space_id}, query is {query.space}"})
            elif targets and corpus.modality not in targets:
                skipped.append({"corpus": corpus.name, "reason": f"holds {corpus.modality}, not a target modality"})
            else:
                chosen.append(corpus)
        for name, damage in sorted(self.catalog.damaged().items()):
            skipped.append({"corpus": name, "reason": f"damaged, not served: {damage.reason}"})
        return chosen, skipped

    def search(self, query: Query) -> RoutedResult:
        corpora, skipped = self.route(query)
        if not corpora:
            return RoutedResult([], [], skipped)
        similarity = corpora[0].similarity
        composed = _compose(query.parts, similarity)
        if len(composed.vector) != corpora[0].dim:
            raise RoutingError(
                f"query vectors are {len(composed.vector)}-d; the corpora of {query.space} are {corpora[0].dim}-d"
            )
        lead = max(query.parts, key=lambda p: p.weight).modality
        per_corpus: list[tuple[list[Hit], Stats]] = []
        for corpus in corpora:
            hits = self._search_one(corpus, query, composed, similarity)
            per_corpus.append((hits, self._stats(query, corpus, composed, similarity, lead, corpora)))
        return RoutedResult(fuse(per_corpus, query.fusion)[: query.top_k], [c.name for c in corpora], skipped)

    def _search_one(self, corpus: Corpus, query: Query, composed: Composed, similarity: Similarity) -> list[Hit]:
        gram = similarity is Similarity.GRAM
        args = SearchArgs(
            composed.vector[None, :],
            query.top_k * GRAM_CANDIDATES if gram else query.top_k,
            query.filter,
            query.nprobe,
            query.ef_search,
            with_vectors=gram or query.with_vectors,
        )
        hits = corpus.run_search(args)[0]
        if not gram or not hits:
            return hits
        # Candidates by the mean vector, re-ranked by the volume they span with all query parts.
        volumes = gram_volume(_stack_with(composed.units, np.stack([h.vector for h in hits])))
        order = np.argsort(volumes, kind="stable")[: query.top_k]
        ranked = [hits[i] for i in order]
        for hit, volume in zip(ranked, volumes[order].tolist(), strict=True):
            hit.score = hit.raw_score = 1.0 - volume
            if not query.with_vectors:
                hit.vector = None
        return ranked

    def _stats(
        self,
        query: Query,
        corpus: Corpus,
        composed: Composed,
        similarity: Similarity,
        lead: Modality,
        corpora: list[Corpus],
    ) -> Stats:
        if query.fusion is Fusion.PAIR:
            stand_ins = [c for c in corpora if c.modality == lead]
            stats = self.calibrator.per_pair(lead, stand_ins, corpus)
            if stats is not None:
                return stats
        if similarity is Similarity.GRAM:

            def score(items: np.ndarray) -> np.ndarray:
                return 1.0 - gram_volume(_stack_with(composed.units, items))

        else:
            q = composed.vector  # unit for cosine; the product of the unit parts for MIP

            def score(items: np.ndarray) -> np.ndarray:
                return items @ q

        return self.calibrator.per_query(score, corpus)


__all__ = [
    "FUSIONS",
    "RRF_K",
    "CorpusNotFoundError",
    "Fusion",
    "Query",
    "QueryPart",
    "RoutedResult",
    "Router",
    "RoutingError",
    "compose",
    "gram_volume",
]
