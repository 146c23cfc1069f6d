"""Free space on the data directory, and the one error for its running out.

Every write Tessera makes (a log append, a snapshot, its index file, a manifest, an
`tessera embed` part, a saved space) can meet a full disk (ENOSPC) or a spent quota
(EDQUOT). `DiskFullError` says so in words a caller can act on: which directory, how much
is free, and that writes resume by themselves once space is freed. The gRPC layer answers
it with RESOURCE_EXHAUSTED, never INTERNAL.

Libraries report a full disk in their own ways: Python and pyarrow raise OSError with
errno 28, faiss a RuntimeError ending "(No space left on device)", safetensors an error
ending "(os error 28)". `is_disk_full` recognises all of them, following the exception's
cause chain.

A `DiskGuard` also enforces an optional low-space threshold (`--min-free-mb`): below it,
writes that add data are refused before the disk is completely full, which leaves room for
the snapshot that compacts the log once space returns.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DISK_FULL_ERRNOS = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if e is not None)
_DISK_FULL_TEXT = tuple(
    s.lower()
    for s in (
        *(os.strerror(e) for e in DISK_FULL_ERRNOS),  # "No space left on device", "Disk quota exceeded"
        *(f"os error {e}" for e in DISK_FULL_ERRNOS),  # Rust (safetensors)
        *(f"errno {e}]" for e in DISK_FULL_ERRNOS),  # Arrow's detail text
    )
)


def free_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding `path` (statvfs f_bavail)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent  # a directory not made yet: ask about the one it would be made in
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def total_bytes(path: str | os.PathLike[str]) -> int:
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether `exc`, or an exception it was raised from, means the disk or the quota is full."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFullError):
            return True
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return True
        text = str(exc).lower()
        if any(marker in text for marker in _DISK_FULL_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class DiskFullError(OSError):
    """A write was refused for lack of space (or quota) under `directory`; `free_bytes` were left.

    An OSError (errno ENOSPC or EDQUOT), so code that handles OSError still does. Nothing
    was half written: the writer rolled back or removed its temporary files first.
    """

    def __init__(
        self,
        message: str,
        *,
        directory: Path,
        free_bytes: int,
        min_free_bytes: int = 0,
        code: int = errno.ENOSPC,
    ) -> None:
        super().__init__(code, message)
        self.message = message
        self.directory = directory
        self.free_bytes = free_bytes
        self.min_free_bytes = min_free_bytes

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # OSError's own pickling would drop the keyword arguments
        return (_rebuild, (self.message, self.directory, self.free_bytes, self.min_free_bytes, self.errno))


def _rebuild(message: str, directory: Path, free: int, min_free: int, code: int) -> DiskFullError:
    return DiskFullError(message, directory=directory, free_bytes=free, min_free_bytes=min_free, code=code)


class DiskGuard:
    """The free-space rules of one directory: `check` before a write, `refusal` for one that failed."""

    def __init__(self, directory: str | os.PathLike[str], min_free_bytes: int = 0, *, label: str = "data directory"):
        if min_free_bytes < 0:
            raise ValueError(f"the free-space threshold must be 0 or more bytes, got {min_free_bytes}")
        self.directory = Path(directory)
        self.min_free_bytes = int(min_free_bytes)
        self.label = label

    def free_bytes(self) -> int:
        return free_bytes(self.directory)

    def _describe_free(self, free: int) -> str:
        try:
            total = f" of {format_bytes(total_bytes(self.directory))}"
        except OSError:
            total = ""
        return f"{format_bytes(free)} free{total}"

    def check(self, what: str) -> None:
        """Refuse `what` (e.g. "upsert of 64 items into corpus 'docs'") while free space is under the threshold."""
        if not self.min_free_bytes:
            return
        free = self.free_bytes()
        if free < self.min_free_bytes:
            raise DiskFullError(
                f"{what} refused: the {self.label} {self.directory} is low on space ({self._describe_free(free)}, "
                f"under the {format_bytes(self.min_free_bytes)} minimum set by --min-free-mb); free some space "
                "there and retry, writes resume without a restart",
                directory=self.directory,
                free_bytes=free,
                min_free_bytes=self.min_free_bytes,
            )

    def refusal(self, exc: BaseException, what: str) -> DiskFullError | None:
        """The DiskFullError to raise for `exc` if it means the disk is full, else None (re-raise `exc`)."""
        if isinstance(exc, DiskFullError):
            return exc
        if not is_disk_full(exc):
            return None
        code = exc.errno if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS else errno.ENOSPC
        try:
            free = self.free_bytes()
        except OSError:
            free = 0
        reason = "quota is exhausted" if code == getattr(errno, "EDQUOT", -1) else "has no space left"
        return DiskFullError(
            f"{what} failed: the {self.label} {self.directory} {reason} ({self._describe_free(free)}). Free some "
            "space there and retry: writes resume without a restart",
            directory=self.directory,
            free_bytes=free,
            min_free_bytes=self.min_free_bytes,
            code=code,
        )

    @contextmanager
    def writing(self, what: str) -> Iterator[None]:
        """Turn a full-disk failure inside the block into a DiskFullError; other errors pass unchanged."""
        try:
            yield
        except Exception as exc:
            refusal = self.refusal(exc, what)
            if refusal is None or refusal is exc:
                raise
            raise refusal from exc


__all__ = ["DISK_FULL_ERRNOS", "DiskFullError", "DiskGuard", "format_bytes", "free_bytes", "is_disk_full"]
