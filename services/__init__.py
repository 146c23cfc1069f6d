"""Tessera: one embedding space for text, images, audio, video and vectors, and search over it.

    import tessera

    db = tessera.connect("./tessera-data")     # embedded: this process opens the data directory
    db = tessera.connect("127.0.0.1:50051")    # remote: a `tessera serve` over gRPC

Importing `tessera` is cheap: the client, the embedder and the index load on first use
(PEP 562), so an application that only calls a server never imports torch or FAISS.
Subpackages: `tessera.embedder` (content -> vectors), `tessera.index` (corpora on disk),
`tessera.v1` (the gRPC stubs).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    AlreadyExists,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    TesseraError,
    Unauthenticated,
    Unavailable,
)

if TYPE_CHECKING:
    from .client import AsyncClient, Client, connect, connect_async
    from .embedder import list_spaces, load_space
    from .embedder.modality import Modality
    from .index.fusion import Fusion
    from .messages import Hit, SearchResult

_LAZY = {
    "connect": ".client",
    "connect_async": ".client",
    "Client": ".client",
    "AsyncClient": ".client",
    "Hit": ".messages",
    "Fusion": ".index.fusion",
    "Modality": ".embedder.modality",
    "SearchResult": ".messages",
    "load_space": ".embedder",
    "list_spaces": ".embedder",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "AlreadyExists",
    "AsyncClient",
    "Client",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Fusion",
    "Hit",
    "Internal",
    "InvalidArgument",
    "Modality",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "SearchResult",
    "TesseraError",
    "Unauthenticated",
    "Unavailable",
    "connect",
    "connect_async",
    "list_spaces",
    "load_space",
]
