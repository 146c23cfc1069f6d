"""How a space scores an item against a query: one name per rule, used by spaces, corpora, server and client."""

from __future__ import annotations

from enum import Enum

from .quoting import quote


class Similarity(str, Enum):
    COSINE = "cosine"  # a weighted mean of unit query parts, then the cosine
    MIP = "mip"  # Symile's multilinear inner product: the element-wise product of the parts, one inner product
    GRAM = "gram"  # 1 - the Gramian volume the query parts span with the item

    @classmethod
    def parse(cls, value: str | Similarity) -> Similarity:
        if isinstance(value, Similarity):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            names = ", ".join(s.value for s in cls)
            raise ValueError(f"similarity must be one of {names}, not {quote(value)}") from None

    def __str__(self) -> str:
        return self.value
