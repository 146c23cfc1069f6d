"""One corpus on disk: a manifest, a write-ahead log, snapshots, and the FAISS index over its vectors.

`Corpus` owns the state and the locks; its jobs live beside it: opening and recovery
(`recovery.py`), the index build policy (`building.py`), search planning and re-scoring
(`search.py`), snapshots (`snapshotting.py`). Writes are validated, logged and fsync'd, then
applied; a single writer mutex keeps the log's order the order they were applied in. Searches
share a readers-writer lock with the short in-memory part of a write, so an fsync never stalls
them. Until an ANN index exists (small corpora, untrained IVF, a build in progress) searches are
exact over the stored vectors, which is always correct.

A full disk refuses writes with `DiskFullError` and changes nothing: the log rolls back a failed
append before the item reaches memory, a failed snapshot removes its temporary files, and opening
a corpus removes what interrupted writes left.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tessera.embedder.modality import Modality
from tessera.embedder.similarity import Similarity

from . import describing, manifests, recovery
from .ann import AnnIndex
from .background import BackgroundWork
from .building import BUILD_DONE, BUILD_FAILED, BUILD_RUNNING, RETRAIN_GROWTH, IndexBuilds
from .config import IndexConfig
from .diskspace import DiskFullError, DiskGuard
from .errors import CorpusError
from .filters import Filter, compile_filter
from .integrity import MANIFEST, CorpusDamagedError
from .items import Item, ItemError, metadata_of, payload_table, validate_items
from .locks import ReadWriteLock
from .records import Delete, Upsert, encode_delete, encode_upsert
from .search import Hit, SearchArgs, checked_args, make_hits, search_slots
from .snapshot import write_json_atomic
from .snapshotting import Snapshots
from .store import ItemStore
from .wal import WriteAheadLog

log = logging.getLogger(__name__)


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
        self.verify = verify  # check the snapshot files' digests as they load (see Corpus.open)
        # The free-space rules: a Catalog passes its data directory's, with the --min-free-mb threshold.
        self.guard = guard or DiskGuard(path, label="corpus directory")
        self.manifest = manifest
        self.name: str = manifest["name"]
        # Unique to this corpus, never reused: caches keyed by it (calibration) cannot serve a dropped
        # corpus's statistics to a new one of the same name. Corpora made before it get one per open.
        self.uid: str = str(manifest.get("uid") or uuid.uuid4().hex)
        self.space_id: str = manifest["space"]
        self.modality = Modality.parse(manifest["modality"])
        self.dim: int = int(manifest["dim"])
        self.similarity = Similarity.parse(manifest.get("similarity", "cosine"))
        self.config = manifests.index_config(manifest)
        self.read_only = read_only
        self.store = ItemStore(self.dim)
        self.ann: AnnIndex | None = None
        self.ann_dead = 0  # retired slots still inside an index that cannot remove them
        self.built_count = 0
        self.trained_on = 0  # vectors the current index was trained on
        self.rw = ReadWriteLock()
        self.write_mutex = threading.Lock()
        self.background = BackgroundWork(self.name)
        self.builds = IndexBuilds(self)
        self.snapshots = Snapshots(self)
        self.closed = False
        self.recovery: dict[str, Any] = {}
        self.wal: WriteAheadLog
        recovery.load(self)

    # ---- lifecycle -----------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        name: str,
        space: str,
        modality: Modality | str,
        dim: int,
        similarity: Similarity | str = Similarity.COSINE,
        index: IndexConfig | None = None,
        guard: DiskGuard | None = None,
    ) -> Corpus:
        path = Path(path)
        if (path / MANIFEST).exists():
            raise FileExistsError(f"corpus {name!r} already exists at {path}")
        guard = guard or DiskGuard(path.parent, label="corpus directory")
        what = f"creating corpus {name!r}"
        guard.check(what)
        existed = path.exists()
        manifest = manifests.new(name, space, modality, dim, similarity, index or IndexConfig())
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
        manifest = manifests.read(path)
        return cls(path, manifest, read_only=read_only, guard=guard, verify=verify)

    def close(self, *, snapshot: bool = True) -> None:
        """Finish background work and snapshot what the log holds, so the next open is fast.

        `snapshot=False` (a corpus about to be deleted) skips the snapshot; the log still holds every write.
        """
        if self.closed:
            return
        self.background.wait_idle()
        self.snapshots.stop()
        if snapshot and not self.read_only and self.snapshots.unsnapshotted:
            try:
                self.snapshot()
            except DiskFullError as exc:  # nothing is lost: the log holds every acknowledged write
                log.warning({"event": "snapshot_skipped", "corpus": self.name, "reason": str(exc)})
        self.closed = True
        self.background.shutdown(wait=True)
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
        if self.closed:
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
        with self.write_mutex:
            self.store.check_schema(payload)
            record = Upsert(payload, vectors)
            # A failed append leaves nothing in the log (it rolls back), and the item never reaches memory.
            with self.guard.writing(what):
                seqno = self.wal.append([encode_upsert(record)])
            self.snapshots.unsnapshotted += 1
            with self.rw.write():
                self.apply(record)
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
        with self.write_mutex:
            if compiled is not None:
                with self.rw.read():
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
            self.snapshots.unsnapshotted += 1
            with self.rw.write():
                self.apply(record)
        self._after_write()
        return WriteResult(len(targets), seqno)

    def apply(self, record: Upsert | Delete) -> None:
        """Apply a logged record to memory (the store and the index); the caller holds the write lock."""
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
                self.ann_dead += len(retired)

    def _after_write(self) -> None:
        self.builds.maybe_start()
        self.snapshots.after_write()

    def snapshot(self) -> str:
        """Write vectors, payloads and the index, switch the manifest to them, then empty the log.

        On a full disk it raises DiskFullError and leaves the corpus as it was.
        """
        self._check_writable()
        return self.snapshots.write()

    # ---- index building ------------------------------------------------------------------
    def target_factory(self) -> str:
        return self.builds.target_factory()

    def wait_idle(self) -> None:
        """Wait for background builds and snapshots (including ones they start); re-raises their errors."""
        self.background.wait_idle()

    def rebuild(self) -> None:
        """Build the index for the target factory now, from the live items (compacts tombstones).

        Also the way to try again after a build failed or was interrupted: automatic builds skip
        a factory whose last attempt did not finish.
        """
        self._check_writable()
        self.wait_idle()
        self.builds.running = True
        self.builds.build(force=True)

    # ---- reads ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.store.count

    def get(self, ids: Sequence[str], *, with_vectors: bool = True, with_data: bool = True) -> list[Item]:
        """Items by id, in the order asked; ids not in the corpus are left out.

        `with_data=False` leaves the stored media bytes out (`data` is None), for callers that
        want vectors or metadata and would otherwise copy every image or clip they name.
        """
        with self.rw.read():
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
        filter: Filter | Mapping[str, Any] | None = None,
        nprobe: int | None = None,
        ef_search: int | None = None,
        exact: bool = False,
        normalize: bool = True,
        with_payload: bool = True,
        with_vectors: bool = False,
    ) -> list[list[Hit]]:
        """Top-k items per query row by cosine. Scores are exact cosines even when an ANN index picked them.

        Queries are L2-normalised first; composite Symile queries pass `normalize=False` to keep the
        multilinear inner product. `with_vectors` sets each hit's vector, read in the same pass.
        """
        args = checked_args(
            queries,
            k,
            self.dim,
            self.name,
            filter,
            nprobe,
            ef_search,
            normalize,
            exact,
            None,
            with_payload,
            with_vectors,
        )
        with self.rw.read():  # one read lock for both steps: the slots found and the rows they name
            scores, slots = search_slots(self.store, self.ann, self.config, self.ann_dead, args)
            return make_hits(self.store, scores, slots, args, self.name, self.modality)

    def run_search(self, args: SearchArgs) -> list[list[Hit]]:
        """A search whose values were checked where they entered (routing's `Query`, `checked_args`)."""
        assert args.queries.shape[1] == self.dim and args.queries.dtype == np.float32
        # One read lock for both steps: the slots found and the rows they name come from the same store.
        with self.rw.read():
            scores, slots = search_slots(self.store, self.ann, self.config, self.ann_dead, args)
            return make_hits(self.store, scores, slots, args, self.name, self.modality)

    def search_slots(
        self,
        queries: np.ndarray,
        k: int,
        *,
        filter: Filter | Mapping[str, Any] | None = None,
        nprobe: int | None = None,
        ef_search: int | None = None,
        exact: bool = False,
        normalize: bool = True,
        rescore: bool | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, slots) arrays, (n_queries, k); -1 slots pad results shorter than k.

        `rescore` overrides the corpus's setting for this call.
        """
        args = checked_args(queries, k, self.dim, self.name, filter, nprobe, ef_search, normalize, exact, rescore)
        with self.rw.read():
            return search_slots(self.store, self.ann, self.config, self.ann_dead, args)

    def sample_vectors(self, n: int, seed: int = 0) -> np.ndarray:
        """Up to n live vectors chosen at random (for calibration statistics)."""
        with self.rw.read():
            live = self.store.live_slots()
            if len(live) > n:
                live = np.sort(np.random.default_rng(seed).choice(live, n, replace=False))
            return np.array(self.store.vectors[live])

    # ---- description ---------------------------------------------------------------------
    def wal_bytes(self) -> int:
        return self.snapshots.wal_bytes()

    def bytes_on_disk(self) -> int:
        return describing.bytes_on_disk(self.path)

    def describe(self) -> dict[str, Any]:
        """Name, space, modality, counts, the index and its last build, disk use, and what recovery did."""
        with self.rw.read():
            return describing.describe(self)


__all__ = [
    "BUILD_DONE",
    "BUILD_FAILED",
    "BUILD_RUNNING",
    "RETRAIN_GROWTH",
    "Corpus",
    "CorpusDamagedError",
    "CorpusError",
    "Hit",
    "Item",
    "ItemError",
    "WriteResult",
]
