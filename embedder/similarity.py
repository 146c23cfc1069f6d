"""How a space scores an item against a query: one name per rule, used by spaces, corpora, server and client."""

from __future__ import annotations

from .choices import Choice


class Similarity(Choice):
    COSINE = "cosine"  # a weighted mean of unit query parts, then the cosine
    MIP = "mip"  # Symile's multilinear inner product: the element-wise product of the parts, one inner product
    GRAM = "gram"  # 1 - the Gramian volume the query parts span with the item
