"""Opening a corpus: load its snapshot, replay its log, and recover from what a crash or a damaged file left.

Everything is read and checked first, and nothing on disk changes until all of it passed: a
damaged file raises CorpusDamagedError (DATA_LOSS) and loads nothing. A damaged index alone is
not fatal: the verified vectors are searched exactly, and the index is rebuilt from them and
replaced by a new snapshot.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .ann import AnnIndex
from .diskspace import DiskFullError
from .integrity import INDEX, SNAPSHOTS, WAL_FILE, CorpusDamagedError, FileDamage, log_mismatch, snapshot_rel
from .records import decode
from .snapshot import read_snapshot, remove_leftovers
from .wal import WALCorruptError, WriteAheadLog, scan_log

if TYPE_CHECKING:
    from .corpus import Corpus

log = logging.getLogger("tessera.index.corpus")


def load(corpus: Corpus) -> None:
    """Fill `corpus` from its files, open its log, and start what recovery needs (a build, an index repair)."""
    c = corpus
    try:
        replayed, torn, index_damage = _read_checked(c)
    except FileDamage as damage:
        c.background.shutdown(wait=False)
        raise CorpusDamagedError(c.name, damage, c.manifest) from None
    snapshot = c.manifest.get("snapshot")
    if not c.read_only:  # a read-only opener holds no lock: the writer's temporary files are not its to remove
        removed = remove_leftovers(c.path, c.path / SNAPSHOTS, snapshot)
        if removed:
            log.warning(
                {"event": "leftovers_removed", "corpus": c.name, "paths": [str(p.relative_to(c.path)) for p in removed]}
            )
    c.wal = WriteAheadLog(c.path / WAL_FILE)
    c.snapshots.unsnapshotted = replayed
    c.recovery = {"snapshot": snapshot, "replayed": replayed, "torn_bytes": torn}
    if torn:
        log.warning(
            "corpus %s: dropped a torn record (%d bytes) at the end of its log; "
            "it was never acknowledged. %d records replayed.",
            c.name,
            torn,
            replayed,
        )
    if snapshot and not c.manifest.get("snapshot_files") and not c.read_only:
        # Written before checksums: the next snapshot (at close, at the latest) records them.
        c.snapshots.unsnapshotted += 1
    if index_damage is not None:
        c.recovery["index_rebuilt"] = str(index_damage)
        log.error(
            {
                "event": "index_damaged",
                "corpus": c.name,
                "file": index_damage.file,
                "reason": index_damage.problem,
                "action": "searching exactly over the vectors, which were verified; the index is rebuilt "
                "from them and a new snapshot replaces the damaged file"
                if not c.read_only
                else "searching exactly over the vectors (read-only: nothing is rebuilt)",
            }
        )
    if c.ann is not None and c.config.use_gpu:
        c.ann.to_gpu()
    c.builds.note_interrupted()
    if not c.read_only:
        c.builds.maybe_start()
        if index_damage is not None:
            c.background.submit(lambda: _replace_damaged_index(c))


def _read_checked(c: Corpus) -> tuple[int, int, FileDamage | None]:
    """Load the snapshot and replay the log into memory; raises FileDamage, writes nothing.

    Returns (records replayed, torn bytes at the log's end, the damage of an index to rebuild).
    """
    snapshot = c.manifest.get("snapshot")
    after = int(c.manifest.get("snapshot_seqno", 0) or 0)
    index_damage: FileDamage | None = None
    if snapshot:
        index_damage = _load_snapshot(c, snapshot)
    wal_path = c.path / WAL_FILE
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
            c.apply(decode(payload, c.dim))
        except Exception as exc:  # its CRC matched, so it was written wrong or by another version
            raise FileDamage(
                WAL_FILE, f"has a record (seqno {seqno}) that cannot be applied ({type(exc).__name__})"
            ) from None
        replayed += 1
    return replayed, scan.torn_bytes, index_damage


def _load_snapshot(c: Corpus, snapshot: str) -> FileDamage | None:
    """Vectors and payloads into the store, and the index when it is sound; returns the index's damage."""
    loaded = read_snapshot(
        c.path / SNAPSHOTS / snapshot,
        c.dim,
        mmap=c.read_only,
        files=c.manifest.get("snapshot_files"),
        snapshot=snapshot,
        verify=c.verify,
    )
    index_damage = loaded.index_damage
    built = c.manifest.get("built_factory")
    if built and loaded.index_path is None and index_damage is None:
        index_damage = FileDamage(snapshot_rel(snapshot, INDEX), "is missing")
    c.store.load(loaded.vectors, loaded.payload, loaded.slots)
    if loaded.index_path is None or not built or index_damage is not None:
        return index_damage
    try:
        ann = AnnIndex.load(built, c.dim, loaded.index_path, mmap=c.read_only)
    except Exception as exc:  # FAISS's message names the path; the type is enough here
        return FileDamage(snapshot_rel(snapshot, INDEX), f"cannot be read by FAISS ({type(exc).__name__})")
    if not c.store.count <= ann.ntotal <= c.store.n_slots:
        return FileDamage(
            snapshot_rel(snapshot, INDEX),
            f"holds {ann.ntotal} vectors where the snapshot has {c.store.count} live of {c.store.n_slots}",
        )
    c.ann = ann
    c.ann_dead = ann.ntotal - c.store.count if not ann.supports_remove() else 0
    c.built_count = c.trained_on = c.store.count
    return None


def _replace_damaged_index(c: Corpus) -> None:
    """After a rebuild from the vectors, snapshot so the damaged index file is replaced on disk."""
    if c.closed:
        return
    try:
        c.snapshot()
    except DiskFullError as exc:
        log.warning({"event": "snapshot_deferred", "corpus": c.name, "reason": str(exc)})
        return
    log.info({"event": "index_replaced", "corpus": c.name, "snapshot": c.manifest.get("snapshot")})
