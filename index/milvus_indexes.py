"""Tessera index specs (index/spec.py's FAISS factory strings) as Milvus index types.

Only specs with a Milvus equivalent are taken; every other one is refused by name, with the
list of those that work, rather than silently built as something else:

    auto            AUTOINDEX (Milvus picks, as "auto" lets Tessera pick locally)
    Flat            FLAT (exact)
    HNSW<M>         HNSW, M, efConstruction (ef_construction, else Milvus's default)
    IVF<n>,Flat     IVF_FLAT, nlist n
    IVF<n>,SQ8      IVF_SQ8, nlist n
    IVF<n>,PQ<m>[x<b>]  IVF_PQ, nlist n, m, nbits b (8 unless given)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tessera.embedder.quoting import quote

from .config import AUTO, IndexConfig

# ef below k makes Milvus refuse the search, and the local HNSW's beam is never narrower than k either.
DEFAULT_EF = 64
DEFAULT_NPROBE = 8
TAKEN = "auto, Flat, HNSW<M>, IVF<nlist>,Flat, IVF<nlist>,SQ8 or IVF<nlist>,PQ<m>"

_HNSW = re.compile(r"HNSW([0-9]{1,4})")
_IVF = re.compile(r"IVF([0-9]{1,8}),(Flat|SQ8|PQ([0-9]{1,4})(?:x([0-9]{1,2}))?)")


@dataclass(frozen=True)
class MilvusIndex:
    index_type: str  # Milvus's name: FLAT, HNSW, IVF_FLAT, ...
    params: dict[str, Any] = field(default_factory=dict)
    exact_scores: bool = True  # False for compressed codes, whose distances Tessera re-scores from the vectors

    def search_params(self, k: int, nprobe: int | None, ef_search: int | None, config: IndexConfig) -> dict[str, Any]:
        """The `params` of one search: the query's knob, else the corpus's, else a default."""
        if self.index_type == "HNSW":
            return {"ef": max(k, ef_search or config.ef_search or DEFAULT_EF)}
        if self.index_type.startswith("IVF"):
            return {"nprobe": min(self.params["nlist"], nprobe or config.nprobe or DEFAULT_NPROBE)}
        return {}


def milvus_index(config: IndexConfig, dim: int) -> MilvusIndex:
    """The Milvus index for a corpus's config; ValueError naming the spec when Milvus has none like it."""
    spec = config.factory.replace(" ", "")
    if spec == AUTO:
        return MilvusIndex("AUTOINDEX", exact_scores=False)
    if spec in ("Flat", "IDMap,Flat", "IDMap2,Flat"):
        return MilvusIndex("FLAT")
    if match := _HNSW.fullmatch(spec):
        params: dict[str, Any] = {"M": int(match[1])}
        if config.ef_construction:
            params["efConstruction"] = config.ef_construction
        return MilvusIndex("HNSW", params)
    if match := _IVF.fullmatch(spec):
        nlist, codes = int(match[1]), match[2]
        if codes == "Flat":
            return MilvusIndex("IVF_FLAT", {"nlist": nlist})
        if codes == "SQ8":
            return MilvusIndex("IVF_SQ8", {"nlist": nlist}, exact_scores=False)
        m, nbits = int(match[3]), int(match[4] or 8)
        if dim % m:
            raise ValueError(f"index {quote(config.factory)}: PQ{m} needs m to divide the dimension {dim}")
        return MilvusIndex("IVF_PQ", {"nlist": nlist, "m": m, "nbits": nbits}, exact_scores=False)
    raise ValueError(f"index {quote(config.factory)} has no Milvus equivalent; the milvus backend takes {TAKEN}")
