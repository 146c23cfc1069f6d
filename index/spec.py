"""The index specs Tessera accepts: a grammar over FAISS factory strings, checked before FAISS sees one.

FAISS's own factory parser accepts strings whose indexes abort the process later
(`HNSW0` builds, then trips an assertion in HNSW.cpp once vectors arrive), allocate
without bound (`IVF999999999,Flat`), or never answer (`IVF0,Flat`). So a spec is
parsed here into components Tessera knows, each parameter inside its bounds, and
anything else is refused with a message naming the part:

    spec       := [transform ","]* [("IDMap" | "IDMap2") ","] main
    transform  := "OPQ" M ["_" D] | "PCA" ["R" | "W" | "WR"] D | "L2norm"
    main       := "Flat" | hnsw | ivf "," ivf_codes | codes
    hnsw       := "HNSW" M ["_" ("Flat" | sq | pq)]
    ivf        := "IVF" nlist ["_HNSW" M]
    ivf_codes  := "Flat" | codes
    codes      := pq | pq_fastscan | sq
    pq         := "PQ" m ["x" nbits]
    pq_fastscan:= "PQ" m "x4fs" ["r"]
    sq         := "SQ4" | "SQ6" | "SQ8" | "SQfp16" | "SQbf16"

FAISS's refine stages (`RFlat`, `Refine(...)`) are refused: IVF under a refine cannot take
Tessera's ids, and every hit is re-scored exactly from the stored vectors anyway.

Dimension rules (m dividing the dimension, PCA no wider than its input) apply
once the dimension is known, at corpus creation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tessera.embedder.quoting import quote

HNSW_M = (4, 256)
PQ_NBITS = (1, 12)
MAX_NLIST = 1 << 20
# The IVF centroids live in memory whatever the corpus holds: no spec may ask for more than this.
MAX_CENTROID_BYTES = 1 << 30
MAX_SPEC_CHARS = 200
SQ_KINDS = ("SQ4", "SQ6", "SQ8", "SQfp16", "SQbf16")

_INT = r"([0-9]{1,12})"
_TRANSFORM = {
    "OPQ": re.compile(rf"OPQ{_INT}(?:_{_INT})?"),
    "PCA": re.compile(rf"PCA(R|W|WR)?{_INT}"),
}
_HNSW = re.compile(rf"HNSW{_INT}(?:_(.+))?")
_IVF = re.compile(rf"IVF{_INT}(?:_HNSW{_INT})?")
_PQ = re.compile(rf"PQ{_INT}(?:x{_INT})?")
_PQ_FASTSCAN = re.compile(rf"PQ{_INT}x4fs(r)?")


class IndexSpecError(ValueError):
    """The index spec is not one Tessera accepts; the message names the part and the rule."""


@dataclass(frozen=True)
class IndexSpec:
    factory: str  # the string as given, which FAISS's index_factory builds
    kind: str  # "exact", "hnsw", "ivf" or "codes": which search the index does
    nlist: int | None = None  # IVF lists
    hnsw_m: int | None = None


def parse_factory(factory: object, dim: int | None = None) -> IndexSpec:
    """Check a factory string against the grammar above; raises IndexSpecError naming the bad part."""
    if not isinstance(factory, str):
        raise IndexSpecError(f"index: give a factory string such as 'HNSW32', not {quote(factory)}")
    if not factory:
        raise IndexSpecError("index: the factory string is empty; give one such as 'Flat' or 'HNSW32', or 'auto'")
    if len(factory) > MAX_SPEC_CHARS:
        raise IndexSpecError(f"index {quote(factory)}: a spec has at most {MAX_SPEC_CHARS} characters")
    if not factory.isascii() or not factory.isprintable() or any(c.isspace() for c in factory):
        raise IndexSpecError(f"index {quote(factory)}: only letters, digits, ',', '_', '(' and ')', no spaces")
    return _Parser(factory, dim).parse()


class _Parser:
    def __init__(self, factory: str, dim: int | None) -> None:
        self.factory = factory
        self.dim = dim  # the dimension the next component sees; None when not yet known

    def fail(self, part: str, rule: str) -> IndexSpecError:
        where = f" ('{part}')" if part != self.factory else ""
        return IndexSpecError(f"index {quote(self.factory)}{where}: {rule}")

    def parse(self) -> IndexSpec:
        parts = self.factory.split(",")
        if "" in parts:
            raise self.fail(self.factory, "an empty component between commas")
        while parts and self._transform(parts[0]):
            parts.pop(0)
        if parts and parts[0] in ("IDMap", "IDMap2"):
            parts.pop(0)
        if parts and (parts[-1] == "RFlat" or parts[-1].startswith("Refine")):
            raise self.fail(
                parts[-1],
                "FAISS's refine stage is not offered: Tessera re-scores every hit by exact cosine from the stored "
                "vectors (the `rescore` and `refine` settings), so drop it",
            )
        if not parts:
            raise self.fail(self.factory, "no index after the transforms; end with e.g. 'Flat' or 'HNSW32'")
        main, rest = parts[0], parts[1:]
        if main == "Flat" and not rest:
            return IndexSpec(self.factory, "exact")
        if match := _HNSW.fullmatch(main):
            if rest:
                raise self.fail(rest[0], "nothing follows an HNSW index")
            m = self._bounded(main, "HNSW needs M", int(match[1]), *HNSW_M)
            if match[2] is not None and match[2] != "Flat":
                self._codes(match[2], f"{main}: after 'HNSW{match[1]}_' comes Flat, SQ8, SQfp16, ... or PQ<m>")
            return IndexSpec(self.factory, "hnsw", hnsw_m=m)
        if match := _IVF.fullmatch(main):
            nlist = self._nlist(main, int(match[1]))
            if match[2] is not None:
                self._bounded(main, "the HNSW quantizer of IVF needs M", int(match[2]), *HNSW_M)
            if len(rest) != 1:
                raise self.fail(main, "IVF takes one encoding after it, e.g. 'IVF1024,Flat' or 'IVF1024,SQ8'")
            if rest[0] != "Flat":
                self._codes(rest[0], "after IVF comes Flat, SQ4/SQ6/SQ8/SQfp16/SQbf16, PQ<m>[x<nbits>] or PQ<m>x4fs")
            return IndexSpec(self.factory, "ivf", nlist=nlist)
        if rest:
            raise self.fail(rest[0], "unexpected after the index")
        self._codes(main, "not an index Tessera knows: use Flat, HNSW<M>, IVF<nlist>,<codes>, PQ<m>, SQ8, ...")
        return IndexSpec(self.factory, "codes")

    def _bounded(self, part: str, what: str, value: int, low: int, high: int) -> int:
        if not low <= value <= high:
            raise self.fail(part, f"{what} between {low} and {high}, got {value}")
        return value

    def _nlist(self, part: str, nlist: int) -> int:
        high = MAX_NLIST
        if self.dim is not None:
            high = min(high, MAX_CENTROID_BYTES // (4 * self.dim))
        return self._bounded(part, "IVF needs a number of lists", nlist, 1, high)

    def _transform(self, part: str) -> bool:
        if part == "L2norm":
            return True
        if match := _TRANSFORM["OPQ"].fullmatch(part):
            m, out = int(match[1]), int(match[2]) if match[2] else self.dim
            self._bounded(part, "OPQ needs M", m, 1, self.dim or 4096)
            if out is not None:
                self._bounded(part, "OPQ's output dimension must be", out, 1, self.dim or 4096)
                if out % m:
                    raise self.fail(part, f"OPQ's output dimension {out} is not a multiple of M {m}")
                self.dim = out
            return True
        if match := _TRANSFORM["PCA"].fullmatch(part):
            self.dim = self._bounded(part, "PCA's output dimension must be", int(match[2]), 1, self.dim or 4096)
            return True
        return False

    def _codes(self, part: str, otherwise: str) -> None:
        if part in SQ_KINDS:
            return
        match = _PQ_FASTSCAN.fullmatch(part) or _PQ.fullmatch(part)
        if match is None:
            raise self.fail(part, otherwise)
        m = int(match[1])
        if match.re is _PQ and match[2] is not None:
            self._bounded(part, "PQ needs bits per code", int(match[2]), *PQ_NBITS)
        if m < 1:
            raise self.fail(part, "PQ needs at least 1 sub-quantizer")
        if self.dim is not None and (m > self.dim or self.dim % m):
            raise self.fail(part, f"PQ's sub-quantizers must divide the dimension {self.dim}; {m} does not")


__all__ = ["IndexSpec", "IndexSpecError", "parse_factory"]
