"""Client-streamed requests whose own failure must reach the caller as itself.

gRPC reads a client stream's request iterator in its own thread; when that iterator raises
(an item with no id, a file that cannot be read), the call ends as `UNKNOWN: Exception
iterating requests!` and the real error is lost. `RequestFeed` keeps it so the client can
raise it instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from .errors import InvalidArgument, TesseraError


class RequestFeed:
    def __init__(self, requests: Iterable[Any]) -> None:
        self._requests = requests
        self.error: BaseException | None = None

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self._requests
        except Exception as exc:
            self.error = exc
            raise

    def reraise(self) -> None:
        """Raise the iterator's own error, if it failed, as a TesseraError."""
        if self.error is None:
            return
        if isinstance(self.error, TesseraError):
            raise self.error
        raise InvalidArgument(f"{type(self.error).__name__}: {self.error}") from self.error
