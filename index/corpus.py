"""One corpus on disk: a manifest, a write-ahead log, snapshots, and the FAISS index over its vectors.

Writes are validated, logged and fsync'd, then applied; a single writer mutex
keeps the log's order the order they were applied in. Searches share a
readers-writer lock with the short in-memory part of a write, so an fsync never
stalls them. Until an ANN index exists (small corpora, untrained IVF, a build in
progress) searches are exact over the stored vectors, which is always correct.

A full disk refuses writes with `DiskFullError` and changes nothing: the log rolls
back a failed append before the item reaches memory, a failed snapshot removes its
temporary files, and opening a corpus removes what interrupted writes left. A
background snapshot that finds no room is logged and deferred, not lost: it runs
again once the free space exceeds what it lacked (polled every second), or after a
backoff, while writes go on as long as the log has room.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .ann import AnnIndex
from .config import AUTO, EXACT, IndexConfig, auto_factory, check_knob, is_exact
from .diskspace import DiskFullError, DiskGuard
from .exact import exact_topk
from .filters import Filter, compile_filter
from .integrity import (
    INDEX,
    MANIFEST,
    SNAPSHOTS,
    WAL_FILE,
    CorpusDamagedError,
    FileDamage,
    known_fields,
    log_mismatch,
    looks_like_corpus,
    read_manifest,
    snapshot_rel,
)
from .items import Item, ItemError, metadata_of, payload_table, validate_items
from .locks import ReadWriteLock
from .records import Delete, Upsert, decode, encode_delete, encode_upsert
from .snapshot import read_snapshot, remove_leftovers, write_json_atomic, write_snapshot
from .spec import parse_factory
from .store import ItemStore
from .wal import WALCorruptError, WriteAheadLog, scan_log

log = logging.getLogger(__name__)

FORMAT = 1
# Below this share of admitted rows a filtered search is exact over those rows: graph and IVF
# searches lose recall when most neighbours are filtered out, and the subset is small.
SELECTIVE_FILTER_SHARE = 0.02
TRAINING_SAMPLE_MAX = 100_000
# The states of the last index build, as the manifest's "build" record keeps them.
BUILD_RUNNING, BUILD_DONE, BUILD_FAILED = "building", "built", "build_failed"
AUTO_REBUILD_GROWTH = 4  # "auto" re-sizes its ANN index after the corpus grows this many times over
# A trained index (IVF, PQ) is retrained once the corpus has doubled since training: the first
# vectors written are often not a fair sample of the rest (measured: IVF1024,PQ32 trained on the
# first half of a 100k corpus had recall@10 0.43 against 0.51, and 25% lower QPS).
RETRAIN_GROWTH = 2
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
class _DeferredSnapshot:
    reason: str
    # What it needs, at least: more than was free when the failed attempt began, and the vectors
    # file (written uncompressed). Retrying on less would only fill the disk again.
    need: int
    retry_at: float
    delay: float


class CorpusError(RuntimeError):
    """A corpus-level failure a caller can act on (read-only, wrong format)."""


@dataclass(slots=True)
class Hit:
    id: str
    score: float  # exact cosine between the query and the item
    metadata: dict[str, Any] = field(default_factory=dict)
    text: str | None = None
    uri: str | None = None


@dataclass
class WriteResult:
    count: int  # items written or deleted
    seqno: int  # the log record that made it durable


class Corpus:
    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        *,
        read_only: bool = False,
        guard: DiskGuard | None = None,
        verify: bool = True,
    ) -> None:
        self.path = path
        self._verify = verify  # check the snapshot files' digests as they load (see Corpus.open)
        # The free-space rules: a Catalog passes its data directory's, with the --min-free-mb threshold.
        self.guard = guard or DiskGuard(path, label="corpus directory")
        self.manifest = manifest
        self.name: str = manifest["name"]
        self.space_id: str = manifest["space"]
        self.modality: str = manifest["modality"]
        self.dim: int = int(manifest["dim"])
        self.similarity: str = manifest.get("similarity", "cosine")
        try:
            self.config = IndexConfig.from_json(manifest.get("index"))
        except ValueError as exc:
            # A corpus created before the index grammar (index/spec.py) with a spec it now refuses, such as
            # HNSW0, whose build aborts the process: it opens, searches exactly, and says why.
            self.config = IndexConfig(EXACT)
            manifest["build"] = {
                "state": BUILD_FAILED,
                "factory": str((manifest.get("index") or {}).get("factory")),
                "reason": f"its index spec is refused: {exc}",
            }
        self.read_only = read_only
        self.store = ItemStore(self.dim)
        self.ann: AnnIndex | None = None
        self._ann_dead = 0  # retired slots still inside an index that cannot remove them
        self._built_count = 0
        self._trained_on = 0  # vectors the current index was trained on
        self._rw = ReadWriteLock()
        self._write_mutex = threading.Lock()
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"corpus-{self.name}")
        self._pending: list[Future[Any]] = []
        self._pending_lock = threading.Lock()
        self._building = False
        self._closed = False
        self.recovery: dict[str, Any] = {}
        self._unsnapshotted = 0  # log records not yet in a snapshot
        self._snapshot_lock = threading.Lock()
        self._snapshot_queued = False
        self._deferred: _DeferredSnapshot | None = None
        self._retry_timer: threading.Timer | None = None
        self._load()

    # ---- lifecycle -----------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        name: str,
        space: str,
        modality: str,
        dim: int,
        similarity: str = "cosine",
        index: IndexConfig | None = None,
        guard: DiskGuard | None = None,
    ) -> Corpus:
        path = Path(path)
        if (path / MANIFEST).exists():
            raise FileExistsError(f"corpus {name!r} already exists at {path}")
        config = index or IndexConfig()
        config.validate()
        if config.factory != AUTO:
            parse_factory(config.factory, dim)  # the rules that need the dimension (PQ's m dividing it, ...)
            if not is_exact(config.factory):
                AnnIndex(config.factory, dim)  # fail now, not at the first write, on what FAISS still refuses
        guard = guard or DiskGuard(path.parent, label="corpus directory")
        what = f"creating corpus {name!r}"
        guard.check(what)
        existed = path.exists()
        manifest = {
            "format": FORMAT,
            "name": name,
            "space": space,
            "modality": modality,
            "dim": dim,
            "similarity": similarity,
            "index": config.to_json(),
            "created_at": time.time(),
            "snapshot": None,
            "snapshot_seqno": 0,
            "built_factory": None,
        }
        try:
            with guard.writing(what):
                path.mkdir(parents=True, exist_ok=True)
                write_json_atomic(path / MANIFEST, manifest)
                return cls(path, manifest, guard=guard)
        except BaseException:
            if not existed:  # a corpus that never held an item: nothing of it is worth keeping
                shutil.rmtree(path, ignore_errors=True)
            raise

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        read_only: bool = False,
        guard: DiskGuard | None = None,
        verify: bool = True,
    ) -> Corpus:
        """Open a corpus, checking every file it reads; a damaged one raises CorpusDamagedError and loads nothing.

        `verify=False` skips the snapshot files' digests (their sizes and structure are still checked).
        """
        path = Path(path)
        if not (path / MANIFEST).exists() and not looks_like_corpus(path):
            raise CorpusError(f"no corpus named {path.name!r} (no {MANIFEST})")
        try:
            manifest = read_manifest(path)
        except FileDamage as damage:
            raise CorpusDamagedError(path.name, damage, known_fields(path)) from None
        if manifest.get("format") != FORMAT:
            raise CorpusError(f"corpus {path.name!r} has format {manifest.get('format')}; this Tessera reads {FORMAT}")
        return cls(path, manifest, read_only=read_only, guard=guard, verify=verify)

    def _load(self) -> None:
        """Read and check everything first, and change nothing on disk until all of it passed."""
        try:
            replayed, torn, index_damage = self._read_checked()
        except FileDamage as damage:
            self._background.shutdown(wait=False)
            raise CorpusDamagedError(self.name, damage, self.manifest) from None
        snapshot = self.manifest.get("snapshot")
        if not self.read_only:  # a read-only opener holds no lock: the writer's temporary files are not its to remove
            removed = remove_leftovers(self.path, self.path / SNAPSHOTS, snapshot)
            if removed:
                log.warning(
                    {
                        "event": "leftovers_removed",
                        "corpus": self.name,
                        "paths": [str(p.relative_to(self.path)) for p in removed],
                    }
                )
        self.wal = WriteAheadLog(self.path / WAL_FILE)
        self._unsnapshotted = replayed
        self.recovery = {"snapshot": snapshot, "replayed": replayed, "torn_bytes": torn}
        if torn:
            log.warning(
                "corpus %s: dropped a torn record (%d bytes) at the end of its log; "
                "it was never acknowledged. %d records replayed.",
                self.name,
                torn,
                replayed,
            )
        if snapshot and not self.manifest.get("snapshot_files") and not self.read_only:
            # Written before checksums: the next snapshot (at close, at the latest) records them.
            self._unsnapshotted += 1
        if index_damage is not None:
            self.recovery["index_rebuilt"] = str(index_damage)
            log.error(
                {
                    "event": "index_damaged",
                    "corpus": self.name,
                    "file": index_damage.file,
                    "reason": index_damage.problem,
                    "action": "searching exactly over the vectors, which were verified; the index is rebuilt "
                    "from them and a new snapshot replaces the damaged file"
                    if not self.read_only
                    else "searching exactly over the vectors (read-only: nothing is rebuilt)",
                }
            )
        if self.ann is not None and self.config.use_gpu:
            self.ann.to_gpu()
        self._note_interrupted_build()
        if not self.read_only:
            self._maybe_build()
            if index_damage is not None:
                self._submit(self._replace_damaged_index)

    def _read_checked(self) -> tuple[int, int, FileDamage | None]:
        """Load the snapshot and replay the log into memory; raises FileDamage, writes nothing.

        Returns (records replayed, torn bytes at the log's end, the damage of an index to rebuild).
        """
        snapshot = self.manifest.get("snapshot")
        after = int(self.manifest.get("snapshot_seqno", 0) or 0)
        index_damage: FileDamage | None = None
        if snapshot:
            loaded = read_snapshot(
                self.path / SNAPSHOTS / snapshot,
                self.dim,
                mmap=self.read_only,
                files=self.manifest.get("snapshot_files"),
                snapshot=snapshot,
                verify=self._verify,
            )
            index_damage = loaded.index_damage
            built = self.manifest.get("built_factory")
            if built and loaded.index_path is None and index_damage is None:
                index_damage = FileDamage(snapshot_rel(snapshot, INDEX), "is missing")
            self.store.load(loaded.vectors, loaded.payload, loaded.slots)
            if loaded.index_path is not None and built and index_damage is None:
                try:
                    ann = AnnIndex.load(built, self.dim, loaded.index_path, mmap=self.read_only)
                except Exception as exc:  # FAISS's message names the path; the type is enough here
                    index_damage = FileDamage(
                        snapshot_rel(snapshot, INDEX), f"cannot be read by FAISS ({type(exc).__name__})"
                    )
                else:
                    if not self.store.count <= ann.ntotal <= self.store.n_slots:
                        index_damage = FileDamage(
                            snapshot_rel(snapshot, INDEX),
                            f"holds {ann.ntotal} vectors where the snapshot has {self.store.count} live of "
                            f"{self.store.n_slots}",
                        )
                    else:
                        self.ann = ann
                        self._ann_dead = self.ann.ntotal - self.store.count if not self.ann.supports_remove() else 0
                        self._built_count = self._trained_on = self.store.count
        wal_path = self.path / WAL_FILE
        if not wal_path.exists():
            if snapshot or after:
                raise FileDamage(WAL_FILE, f"is missing (writes after the snapshot's seqno {after} would be lost)")
            return 0, 0, index_damage
        try:
            scan = scan_log(wal_path)
        except WALCorruptError as exc:
            raise FileDamage(WAL_FILE, exc.problem) from None
        except OSError as exc:
            raise FileDamage(WAL_FILE, f"cannot be read ({exc.strerror or type(exc).__name__})") from None
        problem = log_mismatch(scan.base_seqno, scan.last_seqno, after)
        if problem:
            raise FileDamage(WAL_FILE, problem)
        replayed = 0
        for seqno, payload, _ in scan.records:
            if seqno <= after:
                continue  # already in the snapshot: the crash came between snapshot and log reset
            try:
                record = decode(payload, self.dim)
                self._apply(record)
            except Exception as exc:  # its CRC matched, so it was written wrong or by another version
                raise FileDamage(
                    WAL_FILE, f"has a record (seqno {seqno}) that cannot be applied ({type(exc).__name__})"
                ) from None
            replayed += 1
        return replayed, scan.torn_bytes, index_damage

    def _replace_damaged_index(self) -> None:
        """After a rebuild from the vectors, snapshot so the damaged index file is replaced on disk."""
        if self._closed:
            return
        try:
            self.snapshot()
        except DiskFullError as exc:
            log.warning({"event": "snapshot_deferred", "corpus": self.name, "reason": str(exc)})
            return
        log.info({"event": "index_replaced", "corpus": self.name, "snapshot": self.manifest.get("snapshot")})

    def close(self) -> None:
        """Finish background work and snapshot what the log holds, so the next open is fast."""
        if self._closed:
            return
        self.wait_idle()
        if self._retry_timer is not None:
            self._retry_timer.cancel()
        if not self.read_only and self._unsnapshotted:
            try:
                self.snapshot()
            except DiskFullError as exc:
                # Nothing is lost: the log holds every acknowledged write, and the next open replays it.
                log.warning({"event": "snapshot_skipped", "corpus": self.name, "reason": str(exc)})
        self._closed = True
        self._background.shutdown(wait=True)
        self.wal.close()

    def __enter__(self) -> Corpus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writes --------------------------------------------------------------------------
    def _check_writable(self) -> None:
        if self.read_only:
            raise CorpusError(
                f"corpus {self.name!r} is open read-only (memory-mapped); reopen it writable to change it"
            )
        if self._closed:
            raise CorpusError(f"corpus {self.name!r} is closed")

    def upsert(self, items: Sequence[Item]) -> WriteResult:
        """Insert or replace items by id; durable (fsync'd) when this returns."""
        self._check_writable()
        if not items:
            return WriteResult(0, self.wal.next_seqno - 1)
        _, vectors = validate_items(items, self.dim)
        payload = payload_table(items)
        what = f"upsert of {len(items)} items into corpus {self.name!r}"
        self.guard.check(what)
        with self._write_mutex:
            self.store.check_schema(payload)
            record = Upsert(payload, vectors)
            # A failed append leaves nothing in the log (it rolls back), and the item never reaches memory.
            with self.guard.writing(what):
                seqno = self.wal.append([encode_upsert(record)])
            self._unsnapshotted += 1
            with self._rw.write():
                self._apply(record)
        self._after_write()
        return WriteResult(len(items), seqno)

    def delete(self, ids: Sequence[str] | None = None, filter: Mapping[str, Any] | None = None) -> WriteResult:
        """Delete by ids, or by a metadata filter (resolved to ids, which are what the log records)."""
        self._check_writable()
        if (ids is None) == (filter is None):
            raise ValueError("delete takes ids or a filter, not both and not neither")
        compiled = compile_filter(filter) if filter is not None else None
        if filter is not None and compiled is None:
            raise ValueError("an empty filter would delete everything; use drop to remove a whole corpus")
        with self._write_mutex:
            if compiled is not None:
                with self._rw.read():
                    mask = self.store.slot_mask(compiled.mask(self.store.metadata_table()))
                    targets = self.store.ids(np.flatnonzero(mask))
            else:
                targets = [i for i in dict.fromkeys(ids or []) if i in self.store.slot_of]
            if not targets:
                return WriteResult(0, self.wal.next_seqno - 1)
            record = Delete(targets)
            # Not held to the free-space threshold: a delete is small, and deleting is how space is won back.
            with self.guard.writing(f"delete of {len(targets)} items from corpus {self.name!r}"):
                seqno = self.wal.append([encode_delete(record)])
            self._unsnapshotted += 1
            with self._rw.write():
                self._apply(record)
        self._after_write()
        return WriteResult(len(targets), seqno)

    def _apply(self, record: Upsert | Delete) -> None:
        if isinstance(record, Upsert):
            slots, retired = self.store.append(record.payload, record.vectors)
            if self.ann is not None:
                self.ann.add(record.vectors, slots)
        else:
            retired = self.store.remove(record.ids)
        if self.ann is not None and len(retired):
            if self.ann.supports_remove():
                self.ann.remove(retired)
            else:
                self._ann_dead += len(retired)

    def _after_write(self) -> None:
        self._maybe_build()
        if self.wal_bytes() > SNAPSHOT_WAL_BYTES:
            self._request_snapshot()

    # ---- background snapshots, deferred while the disk is full ---------------------------
    def _request_snapshot(self) -> None:
        """Queue one background snapshot, unless one is queued or a deferred one is not due yet."""
        with self._snapshot_lock:
            if self._snapshot_queued or self._closed:
                return
            deferred = self._deferred
            if deferred is not None and time.monotonic() < deferred.retry_at:
                try:
                    if self.guard.free_bytes() <= deferred.need + SNAPSHOT_RETRY_MARGIN:
                        return  # still not the room the attempt that failed lacked
                except OSError:
                    return
            self._snapshot_queued = True
        try:
            self._submit(self._background_snapshot)
        except RuntimeError:  # the executor shut down: the corpus is closing, and close() snapshots
            with self._snapshot_lock:
                self._snapshot_queued = False

    def _background_snapshot(self) -> None:
        with self._snapshot_lock:
            self._snapshot_queued = False  # writes from now on may ask for the next one
        if self._closed or self.wal_bytes() <= SNAPSHOT_WAL_BYTES:
            return  # a snapshot since the request made this one unneeded
        try:
            free_before = self.guard.free_bytes()
        except OSError:
            free_before = 0
        try:
            name = self.snapshot()
        except DiskFullError as exc:
            self._defer_snapshot(exc, free_before)
            return
        except Exception:
            log.exception("corpus %s: background snapshot failed", self.name)
            raise
        if self._deferred is not None:
            log.info({"event": "snapshot_resumed", "corpus": self.name, "snapshot": name})
            self._deferred = None

    def _defer_snapshot(self, exc: DiskFullError, free_before: int) -> None:
        first, longest = SNAPSHOT_RETRY_BACKOFF_S
        delay = first if self._deferred is None else min(self._deferred.delay * 2, longest)
        need = max(free_before, self.store.n_slots * self.dim * 4)
        self._deferred = _DeferredSnapshot(str(exc), need, time.monotonic() + delay, delay)
        log.warning(
            {
                "event": "snapshot_deferred",
                "corpus": self.name,
                "reason": str(exc),
                "free_bytes": exc.free_bytes,
                "needs_more_than_bytes": need,
                "wal_bytes": self.wal_bytes(),
                "retry_within_s": delay,
            }
        )
        self._schedule_retry_poll()

    def _schedule_retry_poll(self) -> None:
        with self._snapshot_lock:
            if self._closed or (self._retry_timer is not None and self._retry_timer.is_alive()):
                return
            timer = threading.Timer(SNAPSHOT_RETRY_POLL_S, self._retry_poll)
            timer.daemon = True
            self._retry_timer = timer
        timer.start()

    def _retry_poll(self) -> None:
        with self._snapshot_lock:
            self._retry_timer = None
        if self._closed or self._deferred is None:
            return
        if self.wal_bytes() <= SNAPSHOT_WAL_BYTES:
            self._deferred = None  # an explicit snapshot ran meanwhile
            return
        self._request_snapshot()
        self._schedule_retry_poll()

    # ---- index building ------------------------------------------------------------------
    def target_factory(self) -> str:
        if self.config.factory == "auto":
            return auto_factory(self.store.count, self.config.ann_threshold)
        return self.config.factory

    def _needs_build(self) -> bool:
        target = self.target_factory()
        if is_exact(target):
            return False
        if self._build_failed(target):
            return False  # never the same failing build in a loop; `tessera corpus rebuild` tries again
        if self.ann is None:
            return self.store.count >= _training_size(target, self.dim)
        if self._ann_dead and self._ann_dead > self.config.rebuild_tombstone_ratio * max(1, self.ann.ntotal):
            return True
        if self.config.factory == "auto" and self.store.count >= AUTO_REBUILD_GROWTH * max(1, self._built_count):
            return True
        return self.ann.needs_training and self.store.count >= RETRAIN_GROWTH * max(1, self._trained_on)

    def _maybe_build(self) -> None:
        if not self._building and self._needs_build():
            self._building = True
            self._submit(self._build_index)

    def _submit(self, fn: Any) -> None:
        with self._pending_lock:
            self._pending = [f for f in self._pending if not f.done()]
            self._pending.append(self._background.submit(fn))

    def wait_idle(self) -> None:
        """Wait for background builds and snapshots (including ones they start); re-raises their errors."""
        while True:
            with self._pending_lock:
                pending, self._pending = self._pending, []
            if not pending:
                return
            for future in pending:
                future.result()

    def rebuild(self) -> None:
        """Build the index for the target factory now, from the live items (compacts tombstones).

        Also the way to try again after a build failed or was interrupted: automatic builds skip
        a factory whose last attempt did not finish.
        """
        self._check_writable()
        self.wait_idle()
        self._building = True
        self._build_index(force=True)

    # ---- build attempts, recorded in the manifest ----------------------------------------
    def _build_failed(self, factory: str) -> bool:
        """Whether the last attempt at `factory` failed and the corpus has not since grown enough
        (RETRAIN_GROWTH times over) to make another automatic attempt a different one."""
        build = self.manifest.get("build") or {}
        if build.get("state") != BUILD_FAILED or build.get("factory") != factory:
            return False
        tried_on = build.get("vectors")
        return not isinstance(tried_on, int) or self.store.count < RETRAIN_GROWTH * max(1, tried_on)

    def _record_build(self, state: str, factory: str, **details: Any) -> None:
        """Persist the build's state before it starts and when it ends: a process killed or aborted
        mid-build (a native assertion, the OOM killer) leaves "building" behind, which the next open
        reports as a failure instead of starting the same build again."""
        record = {"state": state, "factory": factory, "at": time.time(), **details}
        with self._write_mutex:
            self.manifest["build"] = record
            if not self.read_only:
                with self.guard.writing(f"recording the index build of corpus {self.name!r}"):
                    write_json_atomic(self.path / MANIFEST, self.manifest)

    def _note_interrupted_build(self) -> None:
        build = self.manifest.get("build") or {}
        if build.get("state") != BUILD_RUNNING:
            return
        reason = (
            f"the server stopped during the build of {build.get('factory')} ({build.get('vectors')} vectors): "
            "killed, out of memory or crashed"
        )
        log.warning({"event": "index_build_interrupted", "corpus": self.name, "factory": build.get("factory")})
        if self.read_only:
            self.manifest["build"] = {**build, "state": BUILD_FAILED, "reason": reason}
        else:
            self._record_build(BUILD_FAILED, str(build.get("factory")), reason=reason, vectors=build.get("vectors"))

    def _build_index(self, force: bool = False) -> None:
        factory, tried_on = "?", 0
        try:
            with self._rw.read():
                factory = self.target_factory()
                if is_exact(factory):
                    self.ann = None
                    return
                live = self.store.live_slots()
                n_at_start = self.store.n_slots
            index = AnnIndex(factory, self.dim, ef_construction=self.config.ef_construction)
            if not index.is_trained and len(live) < (index.min_training_size() if force else index.training_size()):
                if not force:
                    return
                raise CorpusError(
                    f"{factory} needs at least {index.min_training_size()} vectors to train (FAISS advises "
                    f"{index.training_size()}) and corpus {self.name!r} has {len(live)}; "
                    "searches stay exact until it has enough"
                )
            tried_on = len(live)
            self._record_build(BUILD_RUNNING, factory, vectors=tried_on)
            with self._rw.read():
                vectors = self.store.vectors[live]
            log.info({"event": "index_build_started", "corpus": self.name, "factory": factory, "vectors": len(live)})
            trained_on = 0
            if not index.is_trained:
                rng = np.random.default_rng(len(live))
                take = min(len(live), max(index.training_size(), TRAINING_SAMPLE_MAX))
                index.train(vectors[np.sort(rng.choice(len(live), take, replace=False))])
                trained_on = len(live)
            index.add(vectors, live)
            del vectors
            with self._write_mutex, self._rw.write():
                # Catch up with writes made while building: new slots in, retired ones out.
                new = np.arange(n_at_start, self.store.n_slots)
                new = new[self.store.alive[new]]
                index.add(self.store.vectors[new], new)
                gone = live[~self.store.alive[live]]
                dead = 0
                if index.supports_remove():
                    index.remove(gone)
                else:
                    dead = len(gone)
                if self.config.use_gpu:
                    index.to_gpu()
                self.ann, self._ann_dead, self._built_count = index, dead, self.store.count
                self._trained_on = trained_on
            log.info({"event": "index_built", "corpus": self.name, "factory": factory, "vectors": len(live) + len(new)})
            self._record_build(BUILD_DONE, factory, vectors=len(live) + len(new))
        except Exception as exc:
            started = (self.manifest.get("build") or {}).get("state") == BUILD_RUNNING
            if started and not isinstance(exc, DiskFullError):
                reason = f"{type(exc).__name__}: {str(exc)[:300]}"
                if "Error in " in reason or ".cpp" in reason:  # FAISS's C++ internals stay in the server log
                    reason = f"FAISS could not build {factory} ({type(exc).__name__}; the server log has the details)"
                log.exception("corpus %s: index build of %s failed; searches stay exact", self.name, factory)
                try:
                    self._record_build(BUILD_FAILED, factory, reason=reason, vectors=tried_on)
                except DiskFullError:
                    record = {"state": BUILD_FAILED, "factory": factory, "reason": reason, "vectors": tried_on}
                    self.manifest["build"] = record
            else:
                log.warning(
                    {"event": "index_build_skipped", "corpus": self.name, "factory": factory, "reason": str(exc)}
                )
            if force:
                raise
            return  # a background build's failure is recorded and reported by describe(), not raised
        finally:
            self._building = False
        if not self._closed:
            self._maybe_build()  # writes made during the build may already call for the next one

    # ---- reads ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.store.count

    def get(self, ids: Sequence[str], *, with_vectors: bool = True, with_data: bool = True) -> list[Item]:
        """Items by id, in the order asked; ids not in the corpus are left out.

        `with_data=False` leaves the stored media bytes out (`data` is None), for callers that
        want vectors or metadata and would otherwise copy every image or clip they name.
        """
        with self._rw.read():
            found = [(i, self.store.slot_of[i]) for i in ids if i in self.store.slot_of]
            slots = np.asarray([s for _, s in found], dtype=np.int64)
            rows = self.store.rows(slots, with_data=with_data) if len(slots) else []
            vectors = self.store.vectors[slots] if with_vectors and len(slots) else None
        return [
            Item(
                id=row["id"],
                vector=None if vectors is None else vectors[n],
                text=row.get("text"),
                data=row.get("data"),
                uri=row.get("uri"),
                metadata=metadata_of(row),
            )
            for n, row in enumerate(rows)
        ]

    def search(
        self,
        queries: np.ndarray,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        nprobe: int | None = None,
        ef_search: int | None = None,
        exact: bool = False,
        normalize: bool = True,
        with_payload: bool = True,
    ) -> list[list[Hit]]:
        """Top-k items per query row by cosine. Scores are exact cosines even when an ANN index picked them."""
        queries, compiled, nprobe, ef_search = self._prepare_search(queries, k, filter, normalize, nprobe, ef_search)
        # One read lock for both steps: the slots found and the rows they name come from the same store.
        with self._rw.read():
            scores, slots = self._search_locked(queries, k, compiled, nprobe, ef_search, exact, None)
            return self._hits_locked(scores, slots, with_payload)

    def search_slots(
        self,
        queries: np.ndarray,
        k: int,
        *,
        filter: Mapping[str, Any] | None = None,
        nprobe: int | None = None,
        ef_search: int | None = None,
        exact: bool = False,
        normalize: bool = True,
        rescore: bool | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, slots) arrays, (n_queries, k); -1 slots pad results shorter than k.

        Queries are L2-normalised first so scores are cosines; composite Symile
        queries pass `normalize=False` to keep the multilinear inner product.
        `rescore` overrides the corpus's setting for this call.
        """
        queries, compiled, nprobe, ef_search = self._prepare_search(queries, k, filter, normalize, nprobe, ef_search)
        with self._rw.read():
            return self._search_locked(queries, k, compiled, nprobe, ef_search, exact, rescore)

    def _prepare_search(
        self,
        queries: np.ndarray,
        k: int,
        filter: Mapping[str, Any] | None,
        normalize: bool,
        nprobe: int | None,
        ef_search: int | None,
    ) -> tuple[np.ndarray, Filter | None, int | None, int | None]:
        queries = self._check_queries(queries, normalize)
        if k.__class__ is not int or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        compiled = compile_filter(filter) if filter else None
        return queries, compiled, check_knob("nprobe", nprobe), check_knob("ef_search", ef_search)

    def _search_locked(
        self,
        queries: np.ndarray,
        k: int,
        compiled: Filter | None,
        nprobe: int | None,
        ef_search: int | None,
        exact: bool,
        rescore: bool | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        store = self.store
        allowed: np.ndarray | None = None
        if compiled is not None:
            allowed = store.slot_mask(compiled.mask(store.metadata_table()))
        elif store.n_slots != len(store.slot_of):
            allowed = store.alive[: store.n_slots]
        ann = self.ann
        vectors = store.vectors[: store.n_slots]
        if (
            exact
            or ann is None
            or (allowed is not None and allowed.sum() <= SELECTIVE_FILTER_SHARE * len(store.slot_of))
        ):
            return exact_topk(vectors, queries, k, allowed)
        ann_allowed = allowed if (compiled is not None or self._ann_dead) else None
        refine = self.config.refine
        result = ann.search(
            queries,
            k * refine,
            allowed=ann_allowed,
            nprobe=nprobe or self.config.nprobe,
            ef_search=ef_search or self.config.ef_search,
        )
        if refine == 1 and (ann.exact_scores or not (self.config.rescore if rescore is None else rescore)):
            return result.scores, result.slots
        return _rescore(vectors, queries, result.slots, k)

    def _hits_locked(self, scores: np.ndarray, slots: np.ndarray, with_payload: bool) -> list[list[Hit]]:
        out: list[list[Hit]] = []
        store = self.store
        for row_scores, row_slots in zip(scores, slots, strict=True):
            if len(row_slots) and row_slots[-1] < 0:  # fewer than k found: -1 pads the tail, as FAISS does
                keep = row_slots >= 0
                row_slots, row_scores = row_slots[keep], row_scores[keep]
            if not with_payload:
                # The one-query service path: plain lists, no Arrow, no per-hit numpy scalars.
                out.append([Hit(i, s) for i, s in zip(store.ids(row_slots), row_scores.tolist(), strict=True)])
                continue
            rows = store.rows(row_slots, with_data=False) if len(row_slots) else []
            out.append(
                [
                    Hit(id=row["id"], score=score, metadata=metadata_of(row), text=row.get("text"), uri=row.get("uri"))
                    for row, score in zip(rows, row_scores.tolist(), strict=True)
                ]
            )
        return out

    def _check_queries(self, queries: np.ndarray, normalize: bool) -> np.ndarray:
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None, :]
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ItemError(f"query vectors have shape {queries.shape}; corpus {self.name!r} stores {self.dim}-d")
        if queries.shape[0] == 1:  # a service's usual call: scalar maths, two numpy calls in all
            squared = float(np.dot(queries[0], queries[0]))
            if not math.isfinite(squared):
                raise ItemError("query vector contains NaN or infinity (or values too large to square)")
            if normalize:
                if squared == 0.0:
                    raise ItemError("query vector is all zeros and has no direction")
                queries = queries * np.float32(1.0 / math.sqrt(squared))
            return queries if queries.flags.c_contiguous else np.ascontiguousarray(queries)
        # NaN or infinity anywhere makes that row's squared norm non-finite.
        norms = np.einsum("ij,ij->i", queries, queries)
        if not np.isfinite(norms).all():
            raise ItemError("query vector contains NaN or infinity (or values too large to square)")
        if normalize:
            if not norms.all():
                raise ItemError("query vector is all zeros and has no direction")
            queries = queries / np.sqrt(norms)[:, None]
        return queries if queries.flags.c_contiguous else np.ascontiguousarray(queries)

    def sample_vectors(self, n: int, seed: int = 0) -> np.ndarray:
        """Up to n live vectors chosen at random (for calibration statistics)."""
        with self._rw.read():
            live = self.store.live_slots()
            if len(live) > n:
                live = np.sort(np.random.default_rng(seed).choice(live, n, replace=False))
            return np.array(self.store.vectors[live])

    # ---- snapshots and description -------------------------------------------------------
    def snapshot(self) -> str:
        """Write vectors, payloads and the index, switch the manifest to them, then empty the log.

        On a full disk it raises DiskFullError and leaves the corpus as it was: the files it
        began are removed, the manifest and the log are untouched.
        """
        self._check_writable()
        with self._write_mutex:
            seqno = self.wal.next_seqno - 1
            old = self.manifest.get("snapshot")
            name, again = f"snap-{seqno:012d}", 1
            while name == old:  # nothing logged since (a rebuild, say): never overwrite the snapshot in use
                name, again = f"snap-{seqno:012d}-{again}", again + 1
            what = f"snapshot {name} of corpus {self.name!r}"
            self.guard.check(what)
            log.info({"event": "snapshot_started", "corpus": self.name, "snapshot": name})
            with self.guard.writing(what):
                with self._rw.read():
                    payload, slots = self.store.live_payload()
                    vectors = self.store.vectors[: self.store.n_slots]
                    ann = self.ann
                    updated = {**self.manifest, "snapshot": name, "snapshot_seqno": seqno}
                    updated["built_factory"] = ann.factory if ann else None
                    # Each file's size and digest, checked at every load; the snapshot keeps a copy of the manifest.
                    updated["snapshot_files"] = write_snapshot(
                        self.path / SNAPSHOTS / name,
                        vectors,
                        payload,
                        slots,
                        write_index=ann.save if ann is not None else None,
                        manifest=updated,
                    )
                try:
                    write_json_atomic(self.path / MANIFEST, updated)
                except BaseException:
                    # The manifest still names the old snapshot; this one is an orphan.
                    shutil.rmtree(self.path / SNAPSHOTS / name, ignore_errors=True)
                    raise
            self.manifest.update(updated)
            self._unsnapshotted = 0
            if old:
                shutil.rmtree(self.path / SNAPSHOTS / old, ignore_errors=True)
            # The snapshot is in place. Emptying the log needs no space where blocks are overwritten in
            # place; where it fails (copy-on-write filesystems), the log's records replay as no-ops.
            with self.guard.writing(f"emptying the log of corpus {self.name!r} after {name}"):
                self.wal.reset()
        log.info({"event": "snapshot_written", "corpus": self.name, "snapshot": name})
        return name

    def wal_bytes(self) -> int:
        try:
            return (self.path / WAL_FILE).stat().st_size
        except FileNotFoundError:
            return 0

    def bytes_on_disk(self) -> int:
        total = 0
        for f in self.path.rglob("*"):
            try:
                if f.is_file():
                    total += f.stat().st_size
            except FileNotFoundError:
                pass  # a snapshot's temporary file, gone between listing and stat
        return total

    def _index_state(self, ann: AnnIndex | None) -> str:
        """ "building", "build_failed" (the last attempt at the target failed; searches use what there is),
        "built" or "exact" (no index is wanted yet, or an untrained one is waiting for vectors)."""
        if self._building:
            return BUILD_RUNNING
        configured = str((self.manifest.get("index") or {}).get("factory"))
        if self._build_failed(self.target_factory()) or self._build_failed(configured):
            return BUILD_FAILED
        return BUILD_DONE if ann is not None else "exact"

    def _index_note(self, state: str) -> str:
        if state != BUILD_FAILED:
            return ""
        build = self.manifest.get("build") or {}
        return (
            f"{build.get('reason', 'the last build failed')}. Searches are exact (or use the index built before). "
            f"It is tried again once the corpus has grown {RETRAIN_GROWTH}x, or now with "
            f"`tessera corpus rebuild {self.name}` while no server has the data directory open"
        )

    def describe(self) -> dict[str, Any]:
        with self._rw.read():
            ann = self.ann
            state = self._index_state(ann)
            return {
                "name": self.name,
                "space": self.space_id,
                "modality": self.modality,
                "similarity": self.similarity,
                "dim": self.dim,
                "count": self.store.count,
                "index": {
                    "factory": self.config.factory,
                    "target": self.target_factory(),
                    "built": ann.factory if ann else None,
                    "searching": ann.factory if ann else "exact",
                    "tombstones": self._ann_dead + (self.store.n_dead if ann is None else 0),
                    "gpu": bool(ann and ann.on_gpu),
                    "gpu_note": ann.gpu_note if ann else "",
                    "building": self._building,
                    "state": state,
                    "note": self._index_note(state),
                    "last_build": dict(self.manifest.get("build") or {}),
                },
                "read_only": self.read_only,
                "bytes_on_disk": self.bytes_on_disk(),
                "wal_bytes": self.wal_bytes(),
                "recovery": self.recovery,
                "disk": {
                    "directory": str(self.guard.directory),
                    "free_bytes": self.guard.free_bytes(),
                    "min_free_bytes": self.guard.min_free_bytes,
                    "snapshot_deferred": self._deferred.reason if self._deferred else None,
                },
            }


@functools.lru_cache(maxsize=64)
def _training_size(factory: str, dim: int) -> int:
    return AnnIndex(factory, dim).training_size()


def _rescore(vectors: np.ndarray, queries: np.ndarray, slots: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosines for ANN candidates, best first, cut to k."""
    # The common one-query call, kept to a handful of numpy calls. FAISS pads missing results with -1
    # at the end, so the last label tells whether the row is full.
    if len(queries) == 1 and slots[0, -1] >= 0:
        found = slots[0]
        scores = vectors.take(found, axis=0) @ queries[0]
        order = scores.argsort()[::-1][:k]  # ties among 32-bit cosines are rare enough to not need stability
        return scores[order][None], found[order][None]
    safe = np.maximum(slots, 0)
    scores = np.einsum("qkd,qd->qk", vectors[safe], queries)
    scores[slots < 0] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1).astype(np.float32), np.take_along_axis(slots, order, 1)


def drop_corpus_dir(path: Path) -> None:
    if not (path / MANIFEST).exists():
        raise CorpusError(f"no corpus at {path}")
    shutil.rmtree(path)


__all__ = [
    "Corpus",
    "CorpusDamagedError",
    "CorpusError",
    "Hit",
    "Item",
    "ItemError",
    "WriteResult",
    "drop_corpus_dir",
]
