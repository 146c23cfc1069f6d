"""A corpus's background work (index builds, snapshots): one worker thread, and a way to wait for all of it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class BackgroundWork:
    """One thread, so a build and a snapshot of the same corpus never run at once."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"corpus-{name}")
        self._pending: list[Future[Any]] = []
        self._lock = threading.Lock()

    def submit(self, fn: Callable[[], Any]) -> None:
        """Queue `fn`; RuntimeError once shut down."""
        with self._lock:
            self._pending = [f for f in self._pending if not f.done()]
            self._pending.append(self._executor.submit(fn))

    def wait_idle(self) -> None:
        """Wait for everything queued, including work it queues; re-raises its errors."""
        while True:
            with self._lock:
                pending, self._pending = self._pending, []
            if not pending:
                return
            for future in pending:
                future.result()

    def shutdown(self, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait)
