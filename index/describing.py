"""What a corpus says about itself: counts, its index and last build, disk use, and what recovery did."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .corpus import Corpus


def bytes_on_disk(path: Path) -> int:
    total = 0
    for f in path.rglob("*"):
        try:
            if f.is_file():
                total += f.stat().st_size
        except FileNotFoundError:
            pass  # a snapshot's temporary file, gone between listing and stat
    return total


def describe(c: Corpus) -> dict[str, Any]:
    """The corpus's description; the caller holds its read lock."""
    ann = c.ann
    state = c.builds.state()
    deferred = c.snapshots.deferred
    return {
        "name": c.name,
        "backend": "local",
        "space": c.space_id,
        "modality": c.modality.value,
        "similarity": c.similarity.value,
        "dim": c.dim,
        "count": c.store.count,
        "index": {
            "factory": c.config.factory,
            "target": c.builds.target_factory(),
            "built": ann.factory if ann else None,
            "searching": ann.factory if ann else "exact",
            "tombstones": c.ann_dead + (c.store.n_dead if ann is None else 0),
            "gpu": bool(ann and ann.on_gpu),
            "gpu_note": ann.gpu_note if ann else "",
            "building": c.builds.running,
            "state": state,
            "note": c.builds.note(state),
            "last_build": dict(c.manifest.get("build") or {}),
        },
        "read_only": c.read_only,
        "bytes_on_disk": bytes_on_disk(c.path),
        "wal_bytes": c.snapshots.wal_bytes(),
        "recovery": c.recovery,
        "disk": {
            "directory": str(c.guard.directory),
            "free_bytes": c.guard.free_bytes(),
            "min_free_bytes": c.guard.min_free_bytes,
            "snapshot_deferred": deferred.reason if deferred else None,
        },
    }
