"""A corpus's snapshots: writing one, and the background ones a growing log asks for.

A snapshot writes vectors, payloads and the index, switches the manifest to them, then empties
the log. A background snapshot that finds no room is logged and deferred, not lost: it runs
again once the free space exceeds what it lacked (polled every second), or after a backoff,
while writes go on as long as the log has room.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .diskspace import DiskFullError
from .integrity import MANIFEST, SNAPSHOTS, WAL_FILE
from .snapshot import write_json_atomic, write_snapshot

if TYPE_CHECKING:
    from .corpus import Corpus

log = logging.getLogger("tessera.index.corpus")

# Snapshot once the write-ahead log passes this size; TESSERA_SNAPSHOT_WAL_MB sets it (operators
# trade restart replay time against snapshot frequency; the reliability benchmark makes it small).
SNAPSHOT_WAL_BYTES = int(os.environ.get("TESSERA_SNAPSHOT_WAL_MB", "256")) << 20
# A background snapshot deferred for lack of space is retried once the free space exceeds what it
# needs by a margin (checked this often), and in any case after a backoff that doubles from the
# first wait to the last.
SNAPSHOT_RETRY_POLL_S = 1.0
SNAPSHOT_RETRY_BACKOFF_S = (2.0, 60.0)
SNAPSHOT_RETRY_MARGIN = 1 << 20


@dataclass
class DeferredSnapshot:
    reason: str
    # What it needs, at least: more than was free when the failed attempt began, and the vectors
    # file (written uncompressed). Retrying on less would only fill the disk again.
    need: int
    retry_at: float
    delay: float


class Snapshots:
    """Writes a corpus's snapshots; the corpus owns the files, the locks and the log."""

    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus
        self.unsnapshotted = 0  # log records not yet in a snapshot
        self.deferred: DeferredSnapshot | None = None
        self._lock = threading.Lock()
        self._queued = False
        self._retry_timer: threading.Timer | None = None

    def write(self) -> str:
        """One snapshot now. On a full disk it raises DiskFullError and leaves the corpus as it was:
        the files it began are removed, the manifest and the log are untouched."""
        c = self.corpus
        with c.write_mutex:
            seqno = c.wal.next_seqno - 1
            old = c.manifest.get("snapshot")
            name, again = f"snap-{seqno:012d}", 1
            while name == old:  # nothing logged since (a rebuild, say): never overwrite the snapshot in use
                name, again = f"snap-{seqno:012d}-{again}", again + 1
            what = f"snapshot {name} of corpus {c.name!r}"
            c.guard.check(what)
            log.info({"event": "snapshot_started", "corpus": c.name, "snapshot": name})
            with c.guard.writing(what):
                with c.rw.read():
                    payload, slots = c.store.live_payload()
                    vectors = c.store.vectors[: c.store.n_slots]
                    ann = c.ann
                    updated = {**c.manifest, "snapshot": name, "snapshot_seqno": seqno}
                    updated["built_factory"] = ann.factory if ann else None
                    # Each file's size and digest, checked at every load; the snapshot keeps a copy of the manifest.
                    updated["snapshot_files"] = write_snapshot(
                        c.path / SNAPSHOTS / name,
                        vectors,
                        payload,
                        slots,
                        write_index=ann.save if ann is not None else None,
                        manifest=updated,
                    )
                try:
                    write_json_atomic(c.path / MANIFEST, updated)
                except BaseException:
                    # The manifest still names the old snapshot; this one is an orphan.
                    shutil.rmtree(c.path / SNAPSHOTS / name, ignore_errors=True)
                    raise
            c.manifest.update(updated)
            self.unsnapshotted = 0
            if old:
                shutil.rmtree(c.path / SNAPSHOTS / old, ignore_errors=True)
            # The snapshot is in place. Emptying the log needs no space where blocks are overwritten in
            # place; where it fails (copy-on-write filesystems), the log's records replay as no-ops.
            with c.guard.writing(f"emptying the log of corpus {c.name!r} after {name}"):
                c.wal.reset()
        log.info({"event": "snapshot_written", "corpus": c.name, "snapshot": name})
        return name

    def wal_bytes(self) -> int:
        try:
            return (self.corpus.path / WAL_FILE).stat().st_size
        except FileNotFoundError:
            return 0

    def after_write(self) -> None:
        if self.wal_bytes() > SNAPSHOT_WAL_BYTES:
            self.request()

    def request(self) -> None:
        """Queue one background snapshot, unless one is queued or a deferred one is not due yet."""
        with self._lock:
            if self._queued or self.corpus.closed:
                return
            deferred = self.deferred
            if deferred is not None and time.monotonic() < deferred.retry_at:
                try:
                    if self.corpus.guard.free_bytes() <= deferred.need + SNAPSHOT_RETRY_MARGIN:
                        return  # still not the room the attempt that failed lacked
                except OSError:
                    return
            self._queued = True
        try:
            self.corpus.background.submit(self._background)
        except RuntimeError:  # the executor shut down: the corpus is closing, and close() snapshots
            with self._lock:
                self._queued = False

    def stop(self) -> None:
        if self._retry_timer is not None:
            self._retry_timer.cancel()

    def _background(self) -> None:
        c = self.corpus
        with self._lock:
            self._queued = False  # writes from now on may ask for the next one
        if c.closed or self.wal_bytes() <= SNAPSHOT_WAL_BYTES:
            return  # a snapshot since the request made this one unneeded
        try:
            free_before = c.guard.free_bytes()
        except OSError:
            free_before = 0
        try:
            name = self.write()
        except DiskFullError as exc:
            self._defer(exc, free_before)
            return
        except Exception:
            log.exception("corpus %s: background snapshot failed", c.name)
            raise
        if self.deferred is not None:
            log.info({"event": "snapshot_resumed", "corpus": c.name, "snapshot": name})
            self.deferred = None

    def _defer(self, exc: DiskFullError, free_before: int) -> None:
        c = self.corpus
        first, longest = SNAPSHOT_RETRY_BACKOFF_S
        delay = first if self.deferred is None else min(self.deferred.delay * 2, longest)
        need = max(free_before, c.store.n_slots * c.dim * 4)
        self.deferred = DeferredSnapshot(str(exc), need, time.monotonic() + delay, delay)
        log.warning(
            {
                "event": "snapshot_deferred",
                "corpus": c.name,
                "reason": str(exc),
                "free_bytes": exc.free_bytes,
                "needs_more_than_bytes": need,
                "wal_bytes": self.wal_bytes(),
                "retry_within_s": delay,
            }
        )
        self._schedule_retry_poll()

    def _schedule_retry_poll(self) -> None:
        with self._lock:
            if self.corpus.closed or (self._retry_timer is not None and self._retry_timer.is_alive()):
                return
            timer = threading.Timer(SNAPSHOT_RETRY_POLL_S, self._retry_poll)
            timer.daemon = True
            self._retry_timer = timer
        timer.start()

    def _retry_poll(self) -> None:
        with self._lock:
            self._retry_timer = None
        if self.corpus.closed or self.deferred is None:
            return
        if self.wal_bytes() <= SNAPSHOT_WAL_BYTES:
            self.deferred = None  # an explicit snapshot ran meanwhile
            return
        self.request()
        self._schedule_retry_poll()
