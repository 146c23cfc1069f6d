"""How hits of several corpora merge into one ranking; no FAISS or Arrow here, so clients can import the names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tessera.embedder.choices import Choice

if TYPE_CHECKING:
    from .calibration import Stats
    from .search import Hit

RRF_K = 60  # the constant of Cormack et al. (2009)


class Fusion(Choice):
    CALIBRATED = "calibrated"  # each corpus's scores shifted by what a top match there scores for this query
    PAIR = "pair"  # one shift per (query modality, corpus), from stored items standing in as queries
    RRF = "rrf"  # reciprocal rank fusion: ranks only
    RAW = "raw"  # the raw similarities, modality gap and all


def fuse(per_corpus: Sequence[tuple[list[Hit], Stats]], fusion: Fusion) -> list[Hit]:
    """Every corpus's hits in one list, best first: each gets its calibrated score, and `score` the fused one."""
    fused: list[Hit] = []
    for hits, stats in per_corpus:
        for rank, hit in enumerate(hits):
            hit.calibrated_score = calibrated = hit.raw_score - stats.offset
            if fusion is Fusion.RRF:
                hit.score = 1.0 / (RRF_K + rank + 1)
            elif fusion is Fusion.RAW:
                hit.score = hit.raw_score
            else:
                hit.score = calibrated
            fused.append(hit)
    fused.sort(key=lambda h: (-h.score, h.corpus, h.id))
    return fused
