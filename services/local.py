"""The embedded transport: the Tessera service on a data directory, in this process, no server.

`tessera.connect("./tessera-data")` lands here. It runs the same `Service` (and so the same
Engine, limits and messages) the gRPC server runs, on an event loop of its own in a background
thread: the engine's micro-batcher and worker threads work as they do in a server, and sync
and async callers share one engine. An exception becomes the `TesseraError` subclass a remote
client would raise for the same request (`service.status_of`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from .errors import DeadlineExceeded, TesseraError, error_for
from .streams import RequestFeed

T = TypeVar("T")


class EmbeddedEngine:
    """A Service on `data_dir`, driven from any thread; `close()` snapshots every corpus and stops."""

    def __init__(self, data_dir: str | Path, *, device: str | None = None, batching: bool = True) -> None:
        from .engine import Engine
        from .service import Service

        self.data_dir = Path(data_dir)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tessera-embedded", daemon=True)
        self._thread.start()
        self._closed = False

        async def open_service() -> Service:
            # Made on the loop so the engine's batchers belong to it.
            return Service(Engine(self.data_dir, batching=batching, device=device, allow_space_paths=True))

        try:
            self.service = self.run(open_service())
        except BaseException:
            self._stop_loop()
            raise

    # ---- running coroutines on the engine's loop -----------------------------------------
    def _submit(self, coro: Awaitable[T]) -> concurrent.futures.Future[T]:
        if self._closed:
            raise error_for("FAILED_PRECONDITION", f"the embedded client on {self.data_dir} is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]

    def run(self, coro: Awaitable[T], timeout: float | None = None) -> T:
        future = self._submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise DeadlineExceeded(f"the call did not finish within {timeout} s") from None
        except Exception as exc:
            raise as_tessera_error(exc) from exc

    async def arun(self, coro: Awaitable[T], timeout: float | None = None) -> T:
        future = asyncio.wrap_future(self._submit(coro))
        try:
            return await asyncio.wait_for(future, timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise DeadlineExceeded(f"the call did not finish within {timeout} s") from None
        except Exception as exc:
            raise as_tessera_error(exc) from exc

    # ---- the calls the clients make --------------------------------------------------------
    def unary(self, method: str, request: Any, timeout: float | None) -> Any:
        return self.run(getattr(self.service, method)(request), timeout)

    async def aunary(self, method: str, request: Any, timeout: float | None) -> Any:
        return await self.arun(getattr(self.service, method)(request), timeout)

    def upsert(self, requests: Iterable[Any], timeout: float | None) -> Any:
        feed = RequestFeed(requests)
        try:
            return self.run(self.service.Upsert(_aiter(feed)), timeout)
        except TesseraError:
            feed.reraise()
            raise

    async def aupsert(self, requests: Iterable[Any], timeout: float | None) -> Any:
        feed = RequestFeed(requests)
        try:
            return await self.arun(self.service.Upsert(_aiter(feed)), timeout)
        except TesseraError:
            feed.reraise()
            raise

    def embed_stream(self, requests: Iterable[Any], timeout: float | None) -> Iterator[Any]:
        for request in requests:
            yield self.unary("Embed", request, timeout)

    async def aembed_stream(self, requests: Iterable[Any], timeout: float | None) -> AsyncIterator[Any]:
        for request in requests:
            yield await self.aunary("Embed", request, timeout)

    # ---- shutdown --------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        try:
            self.run(self.service.engine.close())
        finally:
            self._closed = True
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()


async def _aiter(requests: Iterable[Any]) -> AsyncIterator[Any]:
    # Building a message is cheap Python; the engine's own work runs off this loop in threads.
    for request in requests:
        yield request


def as_tessera_error(exc: BaseException) -> TesseraError:
    """The error a server would have answered with, for an exception the engine raised."""
    if isinstance(exc, TesseraError):
        return exc
    from .service import status_of

    return error_for(*status_of(exc))


__all__ = ["EmbeddedEngine", "as_tessera_error"]
