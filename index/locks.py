"""A readers-writer lock: searches share, writes are exclusive, and a waiting writer goes first.

The guards are plain classes rather than @contextmanager generators: a search
takes the read side once per call, and on a small HNSW index the generator
machinery alone would be a visible share of the query time.
"""

from __future__ import annotations

import threading


class _ReadGuard:
    __slots__ = ("_lock",)

    def __init__(self, lock: ReadWriteLock) -> None:
        self._lock = lock

    # Both sides work on the condition's own mutex directly: with no writer about that is one
    # uncontended C-level lock round trip, no Python-level Condition calls. Two threads searching
    # on two cores feel every extra frame here.
    def __enter__(self) -> None:
        lock = self._lock
        with lock._mutex:
            while lock._writer or lock._writers_waiting:
                lock._cond.wait()
            lock._readers += 1

    def __exit__(self, *exc: object) -> None:
        lock = self._lock
        with lock._mutex:
            lock._readers -= 1
            if not lock._readers and lock._writers_waiting:
                lock._cond.notify_all()


class _WriteGuard:
    __slots__ = ("_lock",)

    def __init__(self, lock: ReadWriteLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        self._lock.acquire_write()

    def __exit__(self, *exc: object) -> None:
        self._lock.release_write()


class ReadWriteLock:
    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._read_guard = _ReadGuard(self)
        self._write_guard = _WriteGuard(self)

    def read(self) -> _ReadGuard:
        return self._read_guard

    def write(self) -> _WriteGuard:
        return self._write_guard

    def acquire_write(self) -> None:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True

    def release_write(self) -> None:
        with self._cond:
            self._writer = False
            self._cond.notify_all()
