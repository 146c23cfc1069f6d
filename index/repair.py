"""Mending a damaged corpus offline (`tessera corpus repair NAME`), with the data directory locked.

What can be rebuilt is, and what cannot is said:

- a damaged or missing index (index.faiss and its side files): rebuilt from the verified vectors
  and written in a new snapshot. Nothing is lost; a server also does this by itself as it loads.
- a damaged or missing manifest: rewritten from the copy every snapshot keeps of it, once that
  copy and the snapshot's files verify and the log still reaches back to that snapshot.
- a damaged snapshot (vectors, payloads, its directory): the corpus is switched to an older
  snapshot whose files verify, when the log still holds every write since that one (a server
  stopped between a new snapshot and removing the old one leaves such a pair). Nothing is lost.
- a damaged log: the whole records in sequence after the snapshot are kept and the rest dropped.
  Acknowledged writes after the damage are lost, so this runs only with `accept_loss`.

Anything else (a damaged snapshot with no older one to fall back on) is reported with what to
do: restore the corpus directory from a backup, or drop the corpus and ingest it again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import dirlock
from .durable import write_atomic
from .integrity import (
    MANIFEST,
    SNAPSHOTS,
    WAL_FILE,
    CorpusReport,
    FileDamage,
    corpus_dirs,
    file_record,
    is_index_file,
    log_mismatch,
    mismatch,
    read_manifest,
    verify_corpus,
)
from .wal import (
    FILE_HEADER,
    FILE_HEADER_V1,
    HEADER,
    MAGIC_V1,
    MAX_RECORD_BYTES,
    WALCorruptError,
    _crc,
    _header,
    scan_log,
)

MAX_ROUNDS = 4  # a corpus may need a fix of its manifest, then of its log, then of its index


@dataclass
class Step:
    description: str
    lossy: bool
    apply: Callable[[], None]


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)
    impossible: list[str] = field(default_factory=list)


@dataclass
class RepairResult:
    name: str
    done: list[str] = field(default_factory=list)
    withheld: list[str] = field(default_factory=list)  # lossy steps not run without accept_loss
    impossible: list[str] = field(default_factory=list)
    report: CorpusReport | None = None  # the verification after the repair

    @property
    def ok(self) -> bool:
        return self.report is not None and self.report.ok


# ---- what the files still offer ----------------------------------------------------------
def _verified_copy(directory: Path) -> dict[str, Any] | None:
    """The manifest copy in a snapshot directory, if it and every file it records verify."""
    try:
        copy = read_manifest(directory)
    except FileDamage:
        return None
    if copy.get("snapshot") != directory.name:
        return None
    for name, record in (copy.get("snapshot_files") or {}).items():
        try:
            actual = file_record(directory / name)
        except OSError:
            return None
        if mismatch(record, actual["bytes"], hexdigest=actual["xxh3_64"]) and not is_index_file(name):
            return None
    return copy


def _snapshot_copies(corpus_dir: Path, exclude: str | None) -> list[dict[str, Any]]:
    """Manifest copies of the snapshots whose files verify, newest first."""
    folder = corpus_dir / SNAPSHOTS
    if not folder.is_dir():
        return []
    copies = []
    for entry in folder.iterdir():
        if entry.is_dir() and entry.name != exclude and not entry.name.endswith(".tmp"):
            copy = _verified_copy(entry)
            if copy is not None:
                copies.append(copy)
    return sorted(copies, key=lambda c: int(c.get("snapshot_seqno", 0)), reverse=True)


@dataclass
class _Salvage:
    records: list[tuple[int, bytes]]  # the whole records in sequence after the snapshot
    dropped: str  # what is dropped, in words ("" when nothing)


def _salvage_log(path: Path, after: int) -> _Salvage:
    """The log's whole records with seqnos after+1, after+2, ... as far as they go unbroken."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return _Salvage([], "the log is missing: writes after the snapshot that it held are lost (how many is unknown)")
    best: list[tuple[int, bytes, int]] = []
    starts = [FILE_HEADER_V1.size] if data[: len(MAGIC_V1)] == MAGIC_V1 else [FILE_HEADER.size, FILE_HEADER_V1.size]
    for start in starts:
        run, offset = [], start
        while len(data) - offset >= HEADER.size:
            length, crc, seqno = HEADER.unpack_from(data, offset)
            end = offset + HEADER.size + length
            if length > MAX_RECORD_BYTES or end > len(data):
                break
            payload = data[offset + HEADER.size : end]
            if _crc(seqno, payload) != crc or (run and seqno != run[-1][0] + 1):
                break
            run.append((seqno, payload, end))
            offset = end
        if len(run) > len(best):
            best = run
    kept = [(s, p) for s, p, _ in best if s > after]
    if kept and kept[0][0] != after + 1:
        gap = f"seqnos {after + 1}..{kept[0][0] - 1} are missing"
        return _Salvage([], f"{gap}, so none of the {len(kept)} records after them can be applied: they are dropped")
    end = best[-1][2] if best else min(len(data), starts[0])
    lost = len(data) - end
    if not lost:
        return _Salvage(kept, "")
    last = kept[-1][0] if kept else after
    return _Salvage(kept, f"the {lost} bytes after seqno {last} (the damaged record and any after it) are dropped")


def _write_log(path: Path, base: int, records: list[tuple[int, bytes]]) -> None:
    body = b"".join(HEADER.pack(len(p), _crc(s, p), s) + p for s, p in records)
    write_atomic(path, _header(base, FILE_HEADER.size + len(body)) + body)


def _log_fits(corpus_dir: Path, seqno: int) -> bool:
    try:
        scan = scan_log(corpus_dir / WAL_FILE)
    except (OSError, WALCorruptError):
        return False
    return log_mismatch(scan.base_seqno, scan.last_seqno, seqno) is None


# ---- planning ----------------------------------------------------------------------------
def _switch_manifest(corpus_dir: Path, copy: dict[str, Any], current: dict[str, Any] | None) -> Callable[[], None]:
    def apply() -> None:
        from .snapshot import write_json_atomic

        merged = dict(current or copy)
        for key in ("snapshot", "snapshot_seqno", "snapshot_files", "built_factory"):
            merged[key] = copy.get(key)
        write_json_atomic(corpus_dir / MANIFEST, merged)

    return apply


def _rewrite_log(corpus_dir: Path, after: int, salvage: _Salvage) -> Callable[[], None]:
    return lambda: _write_log(corpus_dir / WAL_FILE, after, salvage.records)


def _resnapshot(corpus_dir: Path) -> Callable[[], None]:
    def apply() -> None:
        from .corpus import Corpus

        corpus = Corpus.open(corpus_dir)  # rebuilds a damaged index from the vectors, and snapshots
        try:
            corpus.wait_idle()
            corpus.snapshot()
        finally:
            corpus.close()

    return apply


def _log_step(corpus_dir: Path, after: int, why: str) -> Step:
    salvage = _salvage_log(corpus_dir / WAL_FILE, after)
    kept = f"keep its {len(salvage.records)} whole records after the snapshot's seqno {after}"
    lost = f"; {salvage.dropped}" if salvage.dropped else ""
    return Step(f"rewrite {WAL_FILE} ({why}): {kept}{lost}", True, _rewrite_log(corpus_dir, after, salvage))


def plan(corpus_dir: Path, report: CorpusReport | None = None) -> Plan:
    """What repairing this corpus would do now, one round; nothing is changed."""
    report = report or verify_corpus(corpus_dir)
    out = Plan()
    if report.ok:
        return out
    bad = {f.file: f for f in report.damaged}
    try:
        manifest: dict[str, Any] | None = read_manifest(corpus_dir)
    except FileDamage:
        manifest = None
    snapshot = manifest.get("snapshot") if manifest else None
    prefix = f"{SNAPSHOTS}/{snapshot}"
    snapshot_bad = [
        f
        for f in bad
        if snapshot
        and (f == prefix or (f.startswith(prefix + "/") and not is_index_file(f.rsplit("/", 1)[-1])))
        and not f.endswith("/" + MANIFEST)
    ]
    if manifest is None or snapshot_bad:
        what = f"{MANIFEST} is damaged" if manifest is None else f"{snapshot_bad[0]} is damaged"
        copies = _snapshot_copies(corpus_dir, exclude=snapshot if snapshot_bad else None)
        for copy in copies:
            if _log_fits(corpus_dir, int(copy.get("snapshot_seqno", 0))):
                out.steps.append(
                    Step(
                        f"switch the manifest to snapshot {copy['snapshot']} (its files verify) and replay the log "
                        f"from its seqno {copy.get('snapshot_seqno', 0)}, since {what}; nothing is lost",
                        False,
                        _switch_manifest(corpus_dir, copy, manifest),
                    )
                )
                return out
        if copies and manifest is None:
            newest = copies[0]
            out.steps.append(
                Step(
                    f"rebuild the manifest from the copy in snapshot {newest['snapshot']}, since {what}; the log "
                    "does not fit that snapshot and is rewritten next (writes it held after the damage are lost)",
                    True,
                    _switch_manifest(corpus_dir, newest, None),
                )
            )
            return out
        if manifest is None:
            out.impossible.append(
                f"{what} and no snapshot holds a verified copy of it (a corpus never snapshotted, or snapshotted "
                "before copies were kept): restore the corpus directory from a backup, or drop the corpus and "
                "ingest it again"
            )
        else:
            out.impossible.append(
                f"{what} and no older snapshot whose files verify is there to rebuild from with the log: restore the "
                "corpus directory from a backup, or drop the corpus and ingest it again"
            )
        return out
    after = int(manifest.get("snapshot_seqno", 0) or 0)
    if WAL_FILE in bad:
        out.steps.append(_log_step(corpus_dir, after, bad[WAL_FILE].detail))
        return out
    rest = [f for f in bad if f.startswith(prefix + "/")]
    if rest:
        out.steps.append(
            Step(
                f"rebuild the index from the verified vectors and write a new snapshot, since {', '.join(rest)} "
                "is damaged; nothing is lost",
                False,
                _resnapshot(corpus_dir),
            )
        )
        return out
    out.impossible.extend(f"{f.file} {f.detail}" for f in report.damaged)
    return out


def repair_corpus(root: Path, name: str, *, accept_loss: bool = False) -> RepairResult:
    """Repair corpus `name` under data directory `root`, holding the directory's lock (no server may run)."""
    corpus_dir = root / "corpora" / name
    if not corpus_dir.is_dir():
        raise FileNotFoundError(f"no corpus named {name!r} under {root}")
    result = RepairResult(name)
    key = dirlock.acquire(root)
    try:
        for _ in range(MAX_ROUNDS):
            report = verify_corpus(corpus_dir)
            result.report = report
            if report.ok:
                break
            step_plan = plan(corpus_dir, report)
            result.impossible = step_plan.impossible
            if not step_plan.steps:
                break
            step = step_plan.steps[0]
            if step.lossy and not accept_loss:
                result.withheld.append(step.description)
                break
            step.apply()
            result.done.append(step.description)
        else:
            result.report = verify_corpus(corpus_dir)
    finally:
        dirlock.release(key)
    if result.report is not None and result.report.ok:
        result.impossible = []
    return result


def describe_repair(corpus_dir: Path, report: CorpusReport) -> list[str]:
    """What `tessera corpus repair` would do first for a damaged corpus, in words (for `verify`)."""
    step_plan = plan(corpus_dir, report)
    lines = []
    for step in step_plan.steps:
        flag = " --accept-loss" if step.lossy else ""
        lines.append(f"`tessera corpus repair {corpus_dir.name}{flag}` would {step.description}")
    lines.extend(f"cannot be repaired here: {why}" for why in step_plan.impossible)
    return lines


# ---- reports -----------------------------------------------------------------------------
def verify_data_dir(root: Path, name: str | None = None) -> list[CorpusReport]:
    """Verify one corpus (`name`) or every corpus under data directory `root`; changes nothing."""
    if name is not None:
        corpus_dir = root / "corpora" / name
        if not corpus_dir.is_dir():
            raise FileNotFoundError(f"no corpus named {name!r} under {root}/corpora")
        return [verify_corpus(corpus_dir)]
    return [verify_corpus(d) for d in corpus_dirs(root)]


def format_verification(root: Path, reports: list[CorpusReport]) -> str:
    """A per-file report, and for each damaged corpus what `tessera corpus repair` would do."""
    if not reports:
        return f"no corpora under {root}/corpora"
    lines = []
    for report in reports:
        state = "ok" if report.ok else f"DAMAGED ({len(report.damaged)} of {len(report.files)} files)"
        lines.append(f"corpus {report.name}: {state}")
        for check in report.files:
            lines.append(f"  {check.status.upper() if check.status != 'ok' else 'ok':<9} {check.file}  {check.detail}")
        lines.extend(f"  note: {note}" for note in report.notes)
        if not report.ok:
            lines.extend(f"  repair: {line}" for line in describe_repair(root / "corpora" / report.name, report))
    damaged = [r.name for r in reports if not r.ok]
    lines.append(
        f"{len(reports) - len(damaged)} of {len(reports)} corpora sound"
        + (f"; damaged: {', '.join(damaged)}" if damaged else "")
    )
    return "\n".join(lines)


def format_repair(result: RepairResult) -> str:
    lines = [f"corpus {result.name}:"]
    lines.extend(f"  done: {what}" for what in result.done)
    lines.extend(
        f"  not done (it loses data; run again with --accept-loss to accept that): {what}" for what in result.withheld
    )
    lines.extend(f"  cannot repair: {why}" for why in result.impossible)
    if result.report is not None:
        if result.report.ok:
            lines.append("  verified: every file is sound" + ("" if result.done else " (nothing to repair)"))
        else:
            still = "; ".join(f"{f.file} {f.detail}" for f in result.report.damaged)
            lines.append(f"  still damaged: {still}")
    return "\n".join(lines)


__all__ = [
    "Plan",
    "RepairResult",
    "Step",
    "describe_repair",
    "format_repair",
    "format_verification",
    "plan",
    "repair_corpus",
    "verify_data_dir",
]
