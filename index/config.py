"""How a corpus indexes its vectors: a FAISS factory string or "auto", and its search defaults."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Any

from tessera.embedder.quoting import quote

from .spec import parse_factory

AUTO = "auto"
EXACT = "Flat"
# Below this many vectors "auto" searches exactly; above it an ANN index pays for itself.
ANN_THRESHOLD = 100_000
# Ceilings on what a caller may ask for. HNSW allocates its beam up front (efSearch 10^8 takes
# 800 MB per query in flight; 2^31 would take 16 GB), so an unchecked value is a way to kill the
# server. Far below these, recall has nothing left to gain.
CEILINGS = {"nprobe": 65_536, "ef_search": 32_768, "ef_construction": 4_096, "refine": 64}


def check_knob(name: str, value: object) -> int | None:
    """None (the default) or a positive integer no larger than its ceiling, returned as a plain int
    (numpy integers from a caller's sweep are fine; booleans are not)."""
    if value is None:
        return None
    if value.__class__ is int and 0 < value <= CEILINGS[name]:  # the usual case, without the ABC checks below
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {quote(value)}")
    if value > CEILINGS[name]:
        raise ValueError(f"{name} is {value}; the most this server accepts is {CEILINGS[name]}")
    return int(value)


@dataclass(frozen=True)
class IndexConfig:
    factory: str = AUTO  # a spec in index/spec.py's grammar, e.g. "Flat", "HNSW32", "IVF4096,PQ32", or "auto"
    nprobe: int | None = None  # IVF lists probed per query unless the query says otherwise
    ef_search: int | None = None  # HNSW beam width unless the query says otherwise
    # HNSW beam width while building the graph; None keeps FAISS's default (40). Peers default to 100-200:
    # a wider build beam costs build time and buys recall at every later efSearch.
    ef_construction: int | None = None
    use_gpu: bool = True  # move the index to the GPU when faiss sees one
    ann_threshold: int = ANN_THRESHOLD  # "auto" switches from exact to ANN at this size
    rebuild_tombstone_ratio: float = 0.25  # rebuild in the background once this share of an index is dead
    refine: int = 1  # an ANN index fetches refine*k candidates, re-ranked by exact cosine on the stored vectors
    # Hits from compressed indexes (PQ, SQ) get exact cosines from the stored vectors, so scores are
    # comparable across corpora and calibration; False returns FAISS's approximate scores as they are.
    rescore: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | str | None) -> IndexConfig:
        """Settings as a dict, or just the factory string (`"HNSW32"`), as the client and CLI take it."""
        if isinstance(data, str):
            data = {"factory": data}
        if data is not None and not isinstance(data, dict):
            raise ValueError(f"index: give a factory string such as 'HNSW32' or a dict of settings, not {data!r:.80}")
        data = dict(data or {})
        known = {k: data.pop(k) for k in list(data) if k in cls.__dataclass_fields__}
        if data:
            raise ValueError(f"unknown index settings: {', '.join(sorted(data))}")
        config = cls(**known)
        config.validate()
        return config

    def validate(self) -> None:
        if self.factory != AUTO:
            parse_factory(self.factory)  # the dimension-free rules; Corpus.create checks the rest
        for name in CEILINGS:
            # Stored as plain ints: the config is written to the corpus manifest as JSON.
            object.__setattr__(self, name, check_knob(name, getattr(self, name)))
        if not isinstance(self.rescore, bool):
            raise ValueError(f"rescore must be true or false, got {quote(self.rescore)}")
        if not 0 < self.rebuild_tombstone_ratio <= 1:
            raise ValueError("rebuild_tombstone_ratio must be in (0, 1]")


def auto_factory(n_vectors: int, threshold: int = ANN_THRESHOLD) -> str:
    """Exact below `threshold`; above it IVF with ~4*sqrt(n) lists over 8-bit scalar codes.

    IVF-SQ8 builds in seconds even on two cores (HNSW over 1M vectors takes many
    minutes) and keeps a quarter of the memory of the floats. The corpus keeps the
    float vectors anyway, so every returned hit is re-scored by exact cosine.
    """
    if n_vectors < threshold:
        return EXACT
    nlist = 1 << round(math.log2(4 * math.sqrt(n_vectors)))
    # FAISS wants ~39 training points per list; a low threshold must not ask for more lists than that allows.
    nlist = min(nlist, 1 << max(0, int(math.log2(max(1, n_vectors // 39)))))
    return f"IVF{nlist},SQ8"


def is_exact(factory: str) -> bool:
    return factory.replace(" ", "") in ("Flat", "IDMap,Flat", "IDMap2,Flat")
