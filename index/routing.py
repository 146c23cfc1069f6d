"""Routing a query to the corpora of its space, searching them, and fusing their results.

A query is one or more (modality, vector, weight) parts already embedded in one
space. Routing picks the corpora: the named ones when the caller names them,
otherwise every corpus of the space whose modality is among the targets (all
modalities when no target is given). Corpora of another space are never
searched; the result lists them as skipped with the reason. Parts combine as
the space's similarity says: a weighted mean (cosine), an element-wise product
(Symile's multilinear inner product, still one inner-product search), or, for
GRAM, candidates from a mean-vector search re-ranked by exact Gramian volume.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tessera.embedder.modality import Modality
from tessera.embedder.quoting import quote

from .calibration import Calibrator, Stats
from .catalog import Catalog, CorpusNotFoundError
from .corpus import Corpus, Hit

FUSIONS = ("calibrated", "pair", "rrf", "raw")
RRF_K = 60  # the constant of Cormack et al. (2009)
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
    parts: list[QueryPart]
    space: str  # the space id the parts were embedded in, "name@version"
    top_k: int = 10
    filter: Mapping[str, Any] | None = None
    corpora: list[str] | None = None  # named corpora override routing
    target_modalities: list[Modality | str] | None = None
    fusion: str = "calibrated"
    nprobe: int | None = None
    ef_search: int | None = None


@dataclass
class FusedHit:
    id: str
    corpus: str
    modality: str
    score: float  # what the fused ranking sorts by
    raw_score: float  # the similarity in the space (cosine, MIP, or 1 - GRAM volume)
    calibrated_score: float  # raw_score calibrated for this (query, corpus) pair
    metadata: dict[str, Any] = field(default_factory=dict)
    text: str | None = None
    uri: str | None = None


@dataclass
class RoutedResult:
    hits: list[FusedHit]
    searched: list[str]
    skipped: list[dict[str, str]]  # {"corpus": ..., "reason": ...}


def gram_volume(vectors: np.ndarray) -> np.ndarray:
    """Volume of the parallelotope spanned by each set of k unit vectors: sqrt(det(V V^T)), batched (..., k, d)."""
    gram = vectors @ np.swapaxes(vectors, -1, -2)
    return np.sqrt(np.clip(np.linalg.det(gram.astype(np.float64)), 0.0, None))


def _unit_parts(parts: Sequence[QueryPart]) -> np.ndarray:
    vectors = np.stack([np.asarray(p.vector, dtype=np.float32).reshape(-1) for p in parts])
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _stack_with(parts: np.ndarray, items: np.ndarray) -> np.ndarray:
    """(n, k+1, d): the query parts followed by each item."""
    return np.concatenate([np.broadcast_to(parts, (len(items), *parts.shape)), items[:, None, :]], axis=1)


def compose(parts: Sequence[QueryPart], similarity: str) -> np.ndarray:
    vectors = [np.asarray(p.vector, dtype=np.float32).reshape(-1) for p in parts]
    dims = {len(v) for v in vectors}
    if len(dims) != 1:
        raise RoutingError(f"query parts have different dimensions: {sorted(dims)}")
    for part, vector in zip(parts, vectors, strict=True):
        if not np.isfinite(vector).all() or not np.any(vector):
            raise RoutingError(f"{Modality.parse(part.modality).value} query part is zero, NaN or infinite")
    units = [v / np.linalg.norm(v) for v in vectors]
    if similarity == "mip":
        out = units[0].copy()
        for v in units[1:]:
            out *= v
        return out
    weights = np.asarray([p.weight for p in parts], dtype=np.float32)
    if (weights < 0).any() or not weights.sum() > 0:
        raise RoutingError("query part weights must be non-negative and not all zero")
    mean = np.sum([w * v for w, v in zip(weights, units, strict=True)], axis=0)
    norm = float(np.linalg.norm(mean))
    if not norm > 1e-12 or not np.isfinite(norm):
        # Opposite parts cancel, or weights like 1e-45 underflow: there is no direction left to search.
        raise RoutingError("the weighted query parts cancel out to a zero vector; change the parts or their weights")
    return (mean / norm).astype(np.float32)


class Router:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.calibrator = Calibrator()

    def route(self, query: Query) -> tuple[list[Corpus], list[dict[str, str]]]:
        skipped: list[dict[str, str]] = []
        if query.corpora:
            chosen = []
            for name in query.corpora:
                corpus = self.catalog.get(name)  # CorpusNotFoundError for unknown names
                if corpus.space_id != query.space:
                    skipped.append({"corpus": name, "reason": f"in space {corpus.space_id}, query is {query.space}"})
                else:
                    chosen.append(corpus)
            return chosen, skipped
        targets = {Modality.parse(m).value for m in query.target_modalities or []}
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
        if not query.parts:
            raise RoutingError("a query needs at least one part")
        if query.fusion not in FUSIONS:
            raise RoutingError(f"fusion must be one of {', '.join(FUSIONS)}, not {quote(query.fusion)}")
        if not isinstance(query.top_k, int) or query.top_k < 1:
            raise RoutingError(f"top_k must be a positive integer, got {quote(query.top_k)}")
        corpora, skipped = self.route(query)
        if not corpora:
            return RoutedResult([], [], skipped)
        similarity = corpora[0].similarity
        vector = compose(query.parts, similarity)
        lead = max(query.parts, key=lambda p: p.weight)
        lead_modality = Modality.parse(lead.modality).value
        per_corpus: list[tuple[Corpus, list[Hit], Stats]] = []
        for corpus in corpora:
            hits = self._search_one(corpus, query, vector, similarity)
            stats = self._stats(query, corpus, vector, similarity, lead_modality, corpora)
            per_corpus.append((corpus, hits, stats))
        fused = self._fuse(per_corpus, query.fusion)
        return RoutedResult(fused[: query.top_k], [c.name for c in corpora], skipped)

    def _search_one(self, corpus: Corpus, query: Query, vector: np.ndarray, similarity: str) -> list[Hit]:
        if similarity == "gram":
            return self._gram_search(corpus, query, vector)
        return corpus.search(
            vector,
            query.top_k,
            filter=query.filter,
            nprobe=query.nprobe,
            ef_search=query.ef_search,
            normalize=similarity != "mip",
        )[0]

    def _gram_search(self, corpus: Corpus, query: Query, vector: np.ndarray) -> list[Hit]:
        """Candidates by the mean vector, re-ranked by the volume they span with all query parts."""
        candidates = corpus.search(
            vector, query.top_k * GRAM_CANDIDATES, filter=query.filter, nprobe=query.nprobe, ef_search=query.ef_search
        )[0]
        if not candidates:
            return []
        items = np.stack([item.vector for item in corpus.get([h.id for h in candidates], with_data=False)])
        volumes = gram_volume(_stack_with(_unit_parts(query.parts), items))
        order = np.argsort(volumes, kind="stable")[: query.top_k]
        return [replace(candidates[i], score=float(1.0 - volumes[i])) for i in order]

    def _stats(
        self, query: Query, corpus: Corpus, vector: np.ndarray, similarity: str, lead: str, corpora: list[Corpus]
    ) -> Stats:
        if query.fusion == "pair":
            stand_ins = [c for c in corpora if c.modality == lead]
            stats = self.calibrator.per_pair(lead, stand_ins, corpus)
            if stats is not None:
                return stats
        if similarity == "gram":
            parts = _unit_parts(query.parts)

            def score(items: np.ndarray) -> np.ndarray:
                return 1.0 - gram_volume(_stack_with(parts, items))

        else:
            q = vector if similarity == "mip" else vector / np.linalg.norm(vector)

            def score(items: np.ndarray) -> np.ndarray:
                return items @ q

        return self.calibrator.per_query(score, corpus)

    @staticmethod
    def _fuse(per_corpus: list[tuple[Corpus, list[Hit], Stats]], fusion: str) -> list[FusedHit]:
        fused: list[FusedHit] = []
        for corpus, hits, stats in per_corpus:
            for rank, hit in enumerate(hits):
                calibrated = float(stats.apply(np.float64(hit.score)))
                if fusion == "rrf":
                    score = 1.0 / (RRF_K + rank + 1)
                elif fusion == "raw":
                    score = hit.score
                else:
                    score = calibrated
                fused.append(
                    FusedHit(
                        id=hit.id,
                        corpus=corpus.name,
                        modality=corpus.modality,
                        score=score,
                        raw_score=hit.score,
                        calibrated_score=calibrated,
                        metadata=hit.metadata,
                        text=hit.text,
                        uri=hit.uri,
                    )
                )
        fused.sort(key=lambda h: (-h.score, h.corpus, h.id))
        return fused


__all__ = [
    "FUSIONS",
    "CorpusNotFoundError",
    "FusedHit",
    "Query",
    "QueryPart",
    "RoutedResult",
    "Router",
    "RoutingError",
    "compose",
    "gram_volume",
]
