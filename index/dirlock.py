"""One process at a time writes a data directory.

A server and an embedded client (`tessera.connect(path)`) on the same directory would each
append to the corpora's logs and rewrite their snapshots without knowing of the other. The
first to open the directory takes an exclusive `flock` on `<data dir>/.tessera.lock`, which
the kernel drops when that process exits, even on SIGKILL, so a crash never leaves it stuck.
Within one process the lock is shared by every Catalog on the directory (tests reopen a
directory to model a restart).
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

LOCK_FILE = ".tessera.lock"

_held: dict[str, list[int]] = {}  # real path -> [fd, open catalogs]
_guard = threading.Lock()


class DataDirLockedError(RuntimeError):
    """Another process has the data directory open."""


def acquire(root: Path) -> str:
    """Lock `root` for this process; returns the key to `release` with."""
    key = os.path.realpath(root)
    with _guard:
        if key in _held:
            _held[key][1] += 1
            return key
        fd = os.open(os.path.join(key, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirLockedError(
                f"the data directory {root} is open in another process (pid {holder}); stop that process, "
                "or connect to its server (tessera.connect('host:port')) instead of opening the directory"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError:
            pass  # the pid is only a hint for the error above; a full disk must not stop a server starting
        _held[key] = [fd, 1]
        return key


def release(key: str) -> None:
    with _guard:
        entry = _held.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            os.close(entry[0])  # closing the descriptor drops the flock
            del _held[key]
