"""The exceptions Tessera raises to its users, the same for an embedded and a remote client.

Each class carries the gRPC status name it stands for (`code`), so a failure reads the same
whether the engine ran in this process or behind a server: `NotFound` for an unknown corpus,
`InvalidArgument` for a malformed filter, and so on. Plain Python, no grpc import, so
`import tessera` stays cheap.

    try:
        client.search("cats", corpora=["nope"])
    except tessera.NotFound as exc:
        print(exc.code, exc.message)   # NOT_FOUND corpus 'nope' does not exist ...
"""

from __future__ import annotations


class TesseraError(Exception):
    """Base class of every error a Tessera client raises; `code` is the gRPC status name."""

    code = "UNKNOWN"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InvalidArgument(TesseraError, ValueError):
    """The request is malformed: a wrong dimension, a bad filter, an unknown option."""

    code = "INVALID_ARGUMENT"


class NotFound(TesseraError, LookupError):
    """An unknown corpus or space."""

    code = "NOT_FOUND"


class AlreadyExists(TesseraError):
    """A corpus of that name already exists."""

    code = "ALREADY_EXISTS"


class FailedPrecondition(TesseraError):
    """The request is well formed but the corpus cannot serve it in its present state."""

    code = "FAILED_PRECONDITION"


class DataLoss(TesseraError):
    """A file of a corpus is damaged on disk; the corpus is not served until it is repaired or restored."""

    code = "DATA_LOSS"


class ResourceExhausted(TesseraError):
    """Over a limit: too many items, too large a top_k, the server's concurrency cap, a full disk."""

    code = "RESOURCE_EXHAUSTED"


class Unauthenticated(TesseraError):
    """No API key, or one the server does not know."""

    code = "UNAUTHENTICATED"


class PermissionDenied(TesseraError):
    """The API key is valid but its role may not make this call."""

    code = "PERMISSION_DENIED"


class DeadlineExceeded(TesseraError, TimeoutError):
    """The call did not finish within its timeout."""

    code = "DEADLINE_EXCEEDED"


class Unavailable(TesseraError, ConnectionError):
    """The server cannot be reached (after the client's retries)."""

    code = "UNAVAILABLE"


class Internal(TesseraError):
    """A bug on Tessera's side; the server log has the details."""

    code = "INTERNAL"


_BY_CODE: dict[str, type[TesseraError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        DataLoss,
        ResourceExhausted,
        Unauthenticated,
        PermissionDenied,
        DeadlineExceeded,
        Unavailable,
        Internal,
    )
}


def error_for(code: str, message: str) -> TesseraError:
    """The exception for a gRPC status name ("NOT_FOUND", ...); unknown names give a plain TesseraError."""
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls(message)
    error = TesseraError(message)
    error.code = code
    return error


__all__ = [
    "AlreadyExists",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "TesseraError",
    "Unauthenticated",
    "Unavailable",
    "error_for",
]
