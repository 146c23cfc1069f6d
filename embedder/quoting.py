"""Quoting client input inside error messages, cut short.

An error that echoes a 10,000-character name whole outgrows gRPC's metadata limit, and the
client then sees RESOURCE_EXHAUSTED about metadata instead of the real error. Every message
that quotes what a caller sent goes through `quote`.
"""

from __future__ import annotations

QUOTE_CHARS = 60


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """repr() of `value`, cut to about `limit` characters with an ellipsis and the full length."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f"{len(value)} chars" if isinstance(value, (str, bytes)) else f"{len(text)} chars as text"
    return f"{text[:limit]}... ({size})"


__all__ = ["QUOTE_CHARS", "quote"]
