"""Integrity of a corpus on disk: checksums of its files, what a damaged file is, and an offline check.

Every file a snapshot writes gets an xxh3-64 digest and its size recorded in the manifest
(`snapshot_files`); the manifest carries a digest of its own other fields (`checksum`); the
log's records carry CRCs and its header a committed end (index/wal.py). A corpus is verified
as it loads: the snapshot files are read into memory whole (or memory-mapped) and hashed where
they lie, which costs one pass at memory speed (xxh3 hashes at about 10 GB/s a core, CRC-32 at
3; benchmarks/verify_cost.py measures a 1M x 384 load).

A damaged file stops its corpus from loading at all: `CorpusDamagedError` names the file,
relative to the corpus directory (never a server path), and says what to do. A corpus written
before checksums existed (no `snapshot_files`) still opens: its files are parsed and checked
against each other, and its next snapshot records their digests.

`verify_corpus` checks every file of a corpus without changing anything; index/repair.py
mends what can be mended. Both back `tessera corpus verify` and `tessera corpus repair`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xxhash

MANIFEST = "manifest.json"
WAL_FILE = "wal.log"
SNAPSHOTS = "snapshots"
VECTORS = "vectors.arrow"
PAYLOAD = "payload.parquet"
INDEX = "index.faiss"
ALGORITHM = "xxh3_64"
CHECKSUM_KEY = "checksum"  # the manifest's digest of its own other fields
_BLOCK = 16 << 20


# ---- checksums ---------------------------------------------------------------------------
def digest(data: Any) -> str:
    """xxh3-64 of a bytes-like object (bytes, memoryview, a numpy or Arrow buffer), as hex."""
    return xxhash.xxh3_64_hexdigest(data)


def file_record(path: Path) -> dict[str, Any]:
    """{"bytes": size, "xxh3_64": digest} of a file, read in blocks."""
    hasher = xxhash.xxh3_64()
    size = 0
    with open(path, "rb", buffering=0) as f:
        while block := f.read(_BLOCK):
            hasher.update(block)
            size += len(block)
    return {"bytes": size, ALGORITHM: hasher.hexdigest()}


def mismatch(record: dict[str, Any] | None, size: int, data: Any = b"", *, hexdigest: str | None = None) -> str | None:
    """Why `data` (of `size` bytes; or a file of that size and `hexdigest`) is not the file `record` describes.

    None when it is, or when nothing is recorded.
    """
    if not record:
        return None
    if int(record.get("bytes", size)) != size:
        what = "shorter" if size < int(record["bytes"]) else "longer"
        return f"is {size} bytes where its snapshot wrote {record['bytes']} ({what}: truncated or overwritten)"
    expected = record.get(ALGORITHM)
    if expected is not None and (hexdigest if hexdigest is not None else digest(data)) != expected:
        return "fails its checksum (its bytes changed on disk)"
    return None


def manifest_digest(manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != CHECKSUM_KEY}
    return f"{ALGORITHM}:" + digest(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """The manifest as written: its fields plus the digest of them."""
    body = {k: v for k, v in manifest.items() if k != CHECKSUM_KEY}
    return json.dumps({**body, CHECKSUM_KEY: manifest_digest(body)}, indent=2).encode()


# ---- damage ------------------------------------------------------------------------------
class FileDamage(Exception):
    """One damaged file: `file` is relative to the corpus directory, `problem` completes "<file> ..."."""

    def __init__(self, file: str, problem: str) -> None:
        super().__init__(f"{file} {problem}")
        self.file = file
        self.problem = problem


def _remedy(name: str, file: str) -> str:
    base = f"Run `tessera corpus verify {name}` for every damaged file"
    if file == MANIFEST:
        how = (
            f"`tessera corpus repair {name}` (with the server stopped) rebuilds the manifest from the copy "
            "inside the snapshot where there is one"
        )
    elif file == WAL_FILE:
        how = (
            f"`tessera corpus repair {name} --accept-loss` (with the server stopped) keeps the log's records "
            "before the damage and drops the rest"
        )
    else:
        how = (
            f"`tessera corpus repair {name}` (with the server stopped) says whether an older snapshot and the "
            "log can rebuild it"
        )
    return (
        f"{base}; {how}; otherwise restore the corpus directory from a backup, or drop the corpus and ingest it again"
    )


class CorpusDamagedError(RuntimeError):
    """A file of a corpus is damaged: the corpus is not loaded, and every call on it gets this (DATA_LOSS)."""

    def __init__(self, corpus: str, damage: FileDamage, manifest: dict[str, Any] | None = None) -> None:
        self.corpus = corpus
        self.file = damage.file
        self.problem = damage.problem
        self.manifest = manifest or {}
        self.reason = f"{damage.file} {damage.problem}"
        super().__init__(
            f"corpus {corpus!r} is damaged and is not served: {self.reason}. {_remedy(corpus, damage.file)}"
        )

    def describe(self) -> dict[str, Any]:
        """What a listing shows of a damaged corpus: what the manifest still says, and the damage."""
        m = self.manifest
        return {
            "name": self.corpus,
            "space": str(m.get("space", "")),
            "modality": m.get("modality"),
            "similarity": str(m.get("similarity", "")),
            "dim": int(m["dim"]) if isinstance(m.get("dim"), int) else 0,
            "damaged": True,
            "damage": str(self),
            "damaged_file": self.file,
        }


def looks_like_corpus(path: Path) -> bool:
    """A corpus directory, even one whose manifest is gone: it holds a manifest, a log or snapshots."""
    return (path / MANIFEST).exists() or (path / WAL_FILE).exists() or (path / SNAPSHOTS).is_dir()


REQUIRED = {"name": str, "space": str, "modality": str, "dim": int}


def read_manifest(corpus_dir: Path) -> dict[str, Any]:
    """The manifest, checked: raises FileDamage when it is missing, not JSON, fails its digest or lacks a field."""
    try:
        raw = (corpus_dir / MANIFEST).read_bytes()
    except FileNotFoundError:
        raise FileDamage(MANIFEST, "is missing (the log and snapshots are still there)") from None
    except OSError as exc:
        raise FileDamage(MANIFEST, f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        manifest = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise FileDamage(MANIFEST, "is not valid JSON (truncated or overwritten)") from None
    if not isinstance(manifest, dict):
        raise FileDamage(MANIFEST, "is not a JSON object (overwritten)")
    recorded = manifest.get(CHECKSUM_KEY)
    if recorded is not None and recorded != manifest_digest(manifest):
        raise FileDamage(MANIFEST, "fails its checksum (its bytes changed on disk)")
    for key, kind in REQUIRED.items():
        if not isinstance(manifest.get(key), kind) or (kind is int and manifest[key] < 1):
            raise FileDamage(MANIFEST, f"has no valid {key!r} (overwritten)")
    return manifest


def known_fields(corpus_dir: Path) -> dict[str, Any]:
    """What a corpus with a damaged manifest still tells of itself: the newest snapshot's copy, if one reads."""
    folder = corpus_dir / SNAPSHOTS
    if not folder.is_dir():
        return {}
    for entry in sorted(folder.iterdir(), reverse=True):
        try:
            return read_manifest(entry)
        except (FileDamage, OSError):
            continue
    return {}


def snapshot_rel(snapshot: str, file: str | None = None) -> str:
    return f"{SNAPSHOTS}/{snapshot}" + (f"/{file}" if file else "")


def is_index_file(name: str) -> bool:
    """The index and its side files (index.faiss, index.labels.npy): rebuilt from the vectors when damaged."""
    return name.startswith("index.")


# ---- offline verification ----------------------------------------------------------------
@dataclass
class FileCheck:
    file: str  # relative to the corpus directory
    status: str  # "ok", "damaged", "unchecked" (no checksum recorded, parsed instead) or "missing"
    detail: str = ""


@dataclass
class CorpusReport:
    name: str
    files: list[FileCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def damaged(self) -> list[FileCheck]:
        return [f for f in self.files if f.status in ("damaged", "missing")]

    @property
    def ok(self) -> bool:
        return not self.damaged


def _check_recorded(report: CorpusReport, directory: Path, snapshot: str, name: str, record: dict[str, Any]) -> None:
    rel = snapshot_rel(snapshot, name)
    try:
        actual = file_record(directory / name)
    except FileNotFoundError:
        report.files.append(FileCheck(rel, "missing", "is missing"))
        return
    except OSError as exc:
        report.files.append(FileCheck(rel, "damaged", f"cannot be read ({exc.strerror or type(exc).__name__})"))
        return
    problem = mismatch(record, actual["bytes"], hexdigest=actual[ALGORITHM])
    if problem:
        report.files.append(FileCheck(rel, "damaged", problem))
    else:
        report.files.append(FileCheck(rel, "ok", f"{actual['bytes']} bytes, {ALGORITHM} matches"))


def _parse_unrecorded(report: CorpusReport, directory: Path, snapshot: str, manifest: dict[str, Any]) -> None:
    """A snapshot written before checksums: parse its files and check them against each other."""
    from .ann import AnnIndex
    from .snapshot import read_snapshot

    dim = int(manifest["dim"])
    try:
        loaded = read_snapshot(directory, dim, mmap=True, files=None, snapshot=snapshot)
    except FileDamage as damage:
        report.files.append(FileCheck(damage.file, "damaged", damage.problem))
        return
    built = manifest.get("built_factory")
    if built and loaded.index_path is not None:
        try:
            index = AnnIndex.load(built, dim, loaded.index_path, mmap=True)
        except Exception as exc:
            report.files.append(
                FileCheck(snapshot_rel(snapshot, INDEX), "damaged", f"cannot be read by FAISS ({type(exc).__name__})")
            )
            return
        if not len(loaded.slots) <= index.ntotal <= len(loaded.vectors):
            report.files.append(
                FileCheck(snapshot_rel(snapshot, INDEX), "damaged", f"holds {index.ntotal} vectors, not the snapshot's")
            )
            return
    for entry in sorted(os.listdir(directory)):
        report.files.append(FileCheck(snapshot_rel(snapshot, entry), "unchecked", "parsed (no checksum recorded)"))


def verify_corpus(corpus_dir: Path, *, parse: bool = True) -> CorpusReport:
    """Check every file of one corpus against its recorded checksum; changes nothing on disk.

    Files without a recorded checksum (a corpus written before they existed) are parsed instead
    when `parse` is set. The log is scanned record by record.
    """
    from .wal import WALCorruptError, scan_log

    report = CorpusReport(corpus_dir.name)
    try:
        manifest = read_manifest(corpus_dir)
    except FileDamage as damage:
        report.files.append(
            FileCheck(MANIFEST, "missing" if "missing" in damage.problem else "damaged", damage.problem)
        )
        manifest = None
    else:
        digest_note = "its checksum matches" if manifest.get(CHECKSUM_KEY) else "valid JSON (no checksum recorded)"
        report.files.append(FileCheck(MANIFEST, "ok", digest_note))
    snapshot = manifest.get("snapshot") if manifest else None
    snapshot_seqno = int(manifest.get("snapshot_seqno", 0) or 0) if manifest else 0
    if snapshot:
        directory = corpus_dir / SNAPSHOTS / snapshot
        records = manifest.get("snapshot_files")
        if not directory.is_dir():
            report.files.append(
                FileCheck(snapshot_rel(snapshot), "missing", "is missing (the snapshot the manifest names)")
            )
        elif records:
            for name, record in sorted(records.items()):
                _check_recorded(report, directory, snapshot, name, record)
            copy = directory / MANIFEST
            if copy.exists():
                try:
                    read_manifest(directory)
                    report.files.append(FileCheck(snapshot_rel(snapshot, MANIFEST), "ok", "its checksum matches"))
                except FileDamage as damage:
                    report.files.append(FileCheck(snapshot_rel(snapshot, MANIFEST), "damaged", damage.problem))
        else:
            report.notes.append("the snapshot has no checksums (written before they were recorded); it was parsed")
            if parse:
                _parse_unrecorded(report, directory, snapshot, manifest)
    wal = corpus_dir / WAL_FILE
    if not wal.exists():
        if snapshot or snapshot_seqno or manifest is None:
            report.files.append(FileCheck(WAL_FILE, "missing", "is missing"))
    else:
        try:
            scan = scan_log(wal)
        except WALCorruptError as exc:
            report.files.append(FileCheck(WAL_FILE, "damaged", exc.problem))
        except OSError as exc:
            report.files.append(FileCheck(WAL_FILE, "damaged", f"cannot be read ({exc.strerror})"))
        else:
            problem = log_mismatch(scan.base_seqno, scan.last_seqno, snapshot_seqno) if manifest else None
            if problem:
                report.files.append(FileCheck(WAL_FILE, "damaged", problem))
            else:
                torn = f", {scan.torn_bytes} bytes of an unfinished last write" if scan.torn_bytes else ""
                report.files.append(FileCheck(WAL_FILE, "ok", f"{len(scan.records)} records, CRCs match{torn}"))
    return report


def log_mismatch(base_seqno: int, last_seqno: int, snapshot_seqno: int) -> str | None:
    """Why a sound log does not fit the manifest's snapshot, or None.

    The log is emptied only after the manifest names the snapshot, so it starts at or before
    the snapshot's seqno, and it reaches at least that far.
    """
    if base_seqno > snapshot_seqno:
        return (
            f"starts after seqno {base_seqno}, past the snapshot's {snapshot_seqno}: "
            "the writes between are missing (a log from elsewhere, or a damaged manifest)"
        )
    if last_seqno < snapshot_seqno:
        return (
            f"ends at seqno {last_seqno}, before the snapshot's {snapshot_seqno}: it is older than the snapshot "
            "(replaced or truncated)"
        )
    return None


def corpus_dirs(root: Path) -> list[Path]:
    """Every corpus directory under a data directory's corpora/ folder (manifest or not)."""
    folder = root / "corpora"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and looks_like_corpus(p))


__all__ = [
    "ALGORITHM",
    "CorpusDamagedError",
    "CorpusReport",
    "FileCheck",
    "FileDamage",
    "corpus_dirs",
    "digest",
    "file_record",
    "looks_like_corpus",
    "read_manifest",
    "verify_corpus",
]
