"""One corpus search: exact or ANN, the filter as a slot mask, exact re-scoring, and the hits.

Runs under the corpus's read lock on values checked where they entered: `checked_args`
for direct callers of `Corpus.search`, the routed `Query` for searches across corpora. Below
that point values are asserted, not checked again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from tessera.embedder.modality import Modality

from .config import IndexConfig, check_knob
from .exact import exact_topk
from .filters import Filter, compile_filter
from .items import ItemError, metadata_of

if TYPE_CHECKING:
    from .ann import AnnIndex
    from .store import ItemStore

# Below this share of admitted rows a filtered search is exact over those rows: graph and IVF
# searches lose recall when most neighbours are filtered out, and the subset is small.
SELECTIVE_FILTER_SHARE = 0.02
# A query row whose squared norm is this close to 1 is used as it is: float32 normalisation itself leaves
# squared norms within ~1e-7 of 1, and re-scaling such a row would change its cosines by less than 1e-6.
UNIT_TOLERANCE = 2e-6


@dataclass(slots=True)
class Hit:
    """One item found, from the corpus that found it through fusion across corpora.

    A corpus sets `score` and `raw_score` to the exact similarity; fusion across corpora sets
    `calibrated_score` and re-sets `score` to what the fused ranking sorts by.
    """

    id: str
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)
    text: str | None = None
    uri: str | None = None
    corpus: str = ""
    modality: Modality | None = None
    raw_score: float = 0.0
    calibrated_score: float | None = None
    vector: np.ndarray | None = None  # set when the search asked for vectors (`with_vectors`)


class SearchArgs(NamedTuple):
    """A search's values, already valid: float32 C-contiguous finite (n, dim) query rows, unit for cosine.

    A tuple, not a dataclass: one is made per search, and on the one-query path that shows.
    """

    queries: np.ndarray
    k: int
    filter: Filter | None = None
    nprobe: int | None = None
    ef_search: int | None = None
    exact: bool = False
    rescore: bool | None = None  # None: the corpus's setting
    with_payload: bool = True
    with_vectors: bool = False


def checked_args(
    queries: np.ndarray,
    k: int,
    dim: int,
    corpus: str,
    filter: Filter | Mapping[str, Any] | None = None,
    nprobe: int | None = None,
    ef_search: int | None = None,
    normalize: bool = True,
    exact: bool = False,
    rescore: bool | None = None,
    with_payload: bool = True,
    with_vectors: bool = False,
) -> SearchArgs:
    """What a direct caller of `Corpus.search` passed, checked; raises ItemError/ValueError naming the problem."""
    if k.__class__ is not int or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if filter is not None and not isinstance(filter, Filter):
        filter = compile_filter(filter)
    return SearchArgs(
        check_queries(queries, dim, corpus, normalize),
        k,
        filter,
        None if nprobe is None else check_knob("nprobe", nprobe),
        None if ef_search is None else check_knob("ef_search", ef_search),
        exact,
        rescore,
        with_payload,
        with_vectors,
    )


def check_queries(queries: np.ndarray, dim: int, corpus: str, normalize: bool) -> np.ndarray:
    """(n, dim) float32 rows, finite; unit length when `normalize` (cosine), as given otherwise (Symile's MIP)."""
    queries = np.asarray(queries, dtype=np.float32)
    if queries.ndim == 1:
        queries = queries[None, :]
    if queries.ndim != 2 or queries.shape[1] != dim:
        raise ItemError(f"query vectors have shape {queries.shape}; corpus {corpus!r} stores {dim}-d")
    if queries.shape[0] == 1:  # a service's usual call: scalar maths, two numpy calls in all
        row = queries[0]
        squared = float(np.dot(row, row))
        if not math.isfinite(squared):
            raise ItemError("query vector contains NaN or infinity (or values too large to square)")
        if normalize and abs(squared - 1.0) > UNIT_TOLERANCE:  # embeddings arrive unit already: no copy then
            if squared == 0.0:
                raise ItemError("query vector is all zeros and has no direction")
            return queries * (1.0 / math.sqrt(squared))  # a new C-contiguous float32 array (NumPy 2 scalar rules)
        return queries if queries.flags.c_contiguous else np.ascontiguousarray(queries)
    # NaN or infinity anywhere makes that row's squared norm non-finite.
    norms = np.einsum("ij,ij->i", queries, queries)
    if not np.isfinite(norms).all():
        raise ItemError("query vector contains NaN or infinity (or values too large to square)")
    if normalize:
        if not norms.all():
            raise ItemError("query vector is all zeros and has no direction")
        queries = queries / np.sqrt(norms)[:, None]
    return queries if queries.flags.c_contiguous else np.ascontiguousarray(queries)


def search_slots(
    store: ItemStore, ann: AnnIndex | None, config: IndexConfig, ann_dead: int, args: SearchArgs
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, slots), (n_queries, k), -1 slots padding short rows: exact when no index serves, else ANN
    candidates re-scored exactly (unless the index's scores are exact or re-scoring is off)."""
    queries, k, filter, nprobe, ef_search, exact, rescore_hits, _, _ = args  # one unpack, not attribute reads
    allowed: np.ndarray | None = None
    if filter is not None:
        allowed = store.slot_mask(filter.mask(store.metadata_table()))
    elif store.n_slots != len(store.slot_of):
        allowed = store.alive[: store.n_slots]
    vectors = store.vectors[: store.n_slots]
    if exact or ann is None or (allowed is not None and allowed.sum() <= SELECTIVE_FILTER_SHARE * len(store.slot_of)):
        return exact_topk(vectors, queries, k, allowed)
    refine = config.refine
    result = ann.search(
        queries,
        k * refine,
        allowed=allowed if (filter is not None or ann_dead) else None,
        nprobe=nprobe or config.nprobe,
        ef_search=ef_search or config.ef_search,
    )
    if refine == 1 and (ann.exact_scores or not (config.rescore if rescore_hits is None else rescore_hits)):
        return result.scores, result.slots
    return rescore(vectors, queries, result.slots, k)


def make_hits(
    store: ItemStore, scores: np.ndarray, slots: np.ndarray, args: SearchArgs, corpus: str, modality: Modality
) -> list[list[Hit]]:
    out: list[list[Hit]] = []
    for row_scores, row_slots in zip(scores, slots, strict=True):
        if len(row_slots) and row_slots[-1] < 0:  # fewer than k found: -1 pads the tail, as FAISS does
            keep = row_slots >= 0
            row_slots, row_scores = row_slots[keep], row_scores[keep]
        values = row_scores.tolist()
        if not args.with_payload:
            # The one-query service path: plain lists, no Arrow, no per-hit numpy scalars.
            hits = [
                Hit(i, s, {}, None, None, corpus, modality, s)
                for i, s in zip(store.ids(row_slots), values, strict=True)
            ]
        else:
            rows = store.rows(row_slots, with_data=False) if len(row_slots) else []
            hits = [
                Hit(row["id"], s, metadata_of(row), row.get("text"), row.get("uri"), corpus, modality, s)
                for row, s in zip(rows, values, strict=True)
            ]
        if args.with_vectors and hits:
            for hit, vector in zip(hits, store.vectors[row_slots], strict=True):
                hit.vector = vector
        out.append(hits)
    return out


def rescore(vectors: np.ndarray, queries: np.ndarray, slots: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact similarities for ANN candidates, best first, cut to k."""
    # The common one-query call, kept to a handful of numpy calls. FAISS pads missing results with -1
    # at the end, so the last label tells whether the row is full.
    if len(queries) == 1 and slots[0, -1] >= 0:
        found = slots[0]
        scores = vectors.take(found, axis=0) @ queries[0]
        order = scores.argsort()[::-1][:k]  # ties among 32-bit cosines are rare enough to not need stability
        return scores[order][None], found[order][None]
    safe = np.maximum(slots, 0)
    scores = np.einsum("qkd,qd->qk", vectors[safe], queries)
    scores[slots < 0] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1).astype(np.float32), np.take_along_axis(slots, order, 1)
