"""An append-only write-ahead log of opaque records, fsync'd before a write is acknowledged.

On disk: a 32-byte header, then records of

    u32 payload length | u32 CRC-32 of (seqno + payload) | u64 seqno | payload

The header holds an 8-byte magic, the u64 seqno the log starts after, the u64 "committed end"
(every byte before it is whole records that were fsync'd) and a CRC-32 of those fields. Seqnos
run on by one from the base.

A crash can leave the last record half written. Opening the log finds it
(short read or CRC mismatch at the tail), drops it, truncates the file to the
last whole record and reports how many bytes went; an acknowledged record is
never the torn one, because `append` returns only after fsync. Damage is refused
with `WALCorruptError`, not silently skipped: a bad CRC followed by further whole
records, a damaged header, a record out of sequence, or a file that ends before its
committed end (a truncated log, which would otherwise look like a torn tail and
lose acknowledged writes without a word). The committed end is published by a
short timer after appends (off the write path, one extra fsync at most every
COMMIT_DELAY_S), by `reset` and by `close`; so only a truncation within the last
fraction of a second of writes before a crash can pass for a torn tail. A log of the
first format (16-byte header, no committed end) is read as before and rewritten in the
new one at its next `reset`. What a record means (an upsert batch, a delete) is the
caller's business; `scan_log` checks a log without opening it for writing.

A write that fails (a full disk: ENOSPC or EDQUOT) is rolled back before the
error is raised: the file is truncated to where the append began, so the
refused record is neither left torn nor written later by a buffer, and its
seqno is handed to the next append. If even the truncation fails, the log
remembers it and tries again before its next append; until one succeeds every
append is refused. Emptying the log after a snapshot rewrites the header in
place and truncates, which needs no free space.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .durable import write_atomic

log = logging.getLogger(__name__)

MAGIC_V1 = b"TSWAL001"
MAGIC = b"TSWAL002"
FILE_HEADER_V1 = struct.Struct("<8sQ")  # magic, base seqno
FILE_HEADER = struct.Struct("<8sQQI4x")  # magic, base seqno, committed end, CRC-32 of the 24 bytes before it
HEADER = struct.Struct("<IIQ")
MAX_RECORD_BYTES = 1 << 30
COMMIT_DELAY_S = 0.25  # how soon after an append the header's committed end catches up


class WALCorruptError(RuntimeError):
    """The log is damaged before its end; it needs a person, not a silent skip.

    `problem` says what is wrong in words that name no path (the caller knows which log it
    opened); `records_before` counts the whole records in order before the damage.
    """

    def __init__(self, problem: str, records_before: int = 0) -> None:
        super().__init__(problem)
        self.problem = problem
        self.records_before = records_before


@dataclass(frozen=True)
class ReplayReport:
    records: int
    last_seqno: int
    torn_bytes: int  # bytes of a half-written last record that were dropped


@dataclass
class LogScan:
    """What `scan_log` found: the whole records in order, and where the good part ends."""

    version: int
    base_seqno: int
    committed_end: int  # what the header says was made durable (the header's size for a first-format log)
    header_size: int
    records: list[tuple[int, bytes, int]] = field(default_factory=list)  # (seqno, payload, end offset)
    end: int = 0  # the end of the last whole record in sequence
    torn_bytes: int = 0  # what follows it: a half-written record, or stale records from before a reset

    @property
    def last_seqno(self) -> int:
        return self.records[-1][0] if self.records else self.base_seqno


def _crc(seqno: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(struct.pack("<Q", seqno)))


def _header(base_seqno: int, committed_end: int) -> bytes:
    fields = struct.pack("<8sQQ", MAGIC, base_seqno, committed_end)
    return FILE_HEADER.pack(MAGIC, base_seqno, committed_end, zlib.crc32(fields))


def parse(data: bytes) -> LogScan:
    """Check a log's bytes; raises WALCorruptError on damage. Reads nothing from disk."""
    if len(data) < len(MAGIC) or data[: len(MAGIC)] not in (MAGIC, MAGIC_V1):
        what = "is shorter than its header" if len(data) < len(MAGIC) else "does not start with a log header"
        raise WALCorruptError(f"{what} (truncated or overwritten)")
    if data[: len(MAGIC)] == MAGIC_V1:
        if len(data) < FILE_HEADER_V1.size:
            raise WALCorruptError("is shorter than its header (truncated)")
        base = FILE_HEADER_V1.unpack_from(data)[1]
        scan = LogScan(1, base, FILE_HEADER_V1.size, FILE_HEADER_V1.size)
    else:
        if len(data) < FILE_HEADER.size:
            raise WALCorruptError("is shorter than its header (truncated)")
        _, base, committed, crc = FILE_HEADER.unpack_from(data)
        if zlib.crc32(data[: FILE_HEADER.size - 8]) != crc:
            raise WALCorruptError("has a damaged header (its checksum does not match)")
        if committed < FILE_HEADER.size:
            raise WALCorruptError("has a damaged header (its committed end lies inside the header)")
        scan = LogScan(2, base, committed, FILE_HEADER.size)
    offset, expected, committed = scan.header_size, base + 1, scan.committed_end
    while offset < len(data):
        durable = offset < committed  # these bytes were fsync'd whole: nothing there may be torn
        if len(data) - offset < HEADER.size:
            if durable:
                break
            scan.torn_bytes = len(data) - offset
            break
        length, crc, seqno = HEADER.unpack_from(data, offset)
        end = offset + HEADER.size + length
        if length > MAX_RECORD_BYTES or end > len(data):
            if durable:
                break
            scan.torn_bytes = len(data) - offset
            break
        payload = data[offset + HEADER.size : end]
        if _crc(seqno, payload) != crc:
            if durable or end < len(data):
                raise WALCorruptError(
                    f"has a record at byte {offset} (seqno {expected}) that fails its checksum and is not the last",
                    len(scan.records),
                )
            scan.torn_bytes = len(data) - offset
            break
        if seqno != expected:
            if durable:
                raise WALCorruptError(
                    f"has a record at byte {offset} with seqno {seqno} where {expected} belongs", len(scan.records)
                )
            scan.torn_bytes = len(data) - offset  # records a reset cut off before a crash: already snapshotted
            break
        scan.records.append((seqno, payload, end))
        offset, expected = end, expected + 1
    scan.end = scan.records[-1][2] if scan.records else scan.header_size
    if scan.end < committed:
        raise WALCorruptError(
            f"ends at byte {len(data)}, before byte {committed}, the end of the records it had made durable "
            "(truncated, or damaged there): acknowledged writes are missing",
            len(scan.records),
        )
    return scan


def scan_log(path: str | os.PathLike[str]) -> LogScan:
    """Check the log at `path` without changing it; raises WALCorruptError on damage, OSError if unreadable."""
    return parse(Path(path).read_bytes())


class WriteAheadLog:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        if not self.path.exists():
            self._create_empty(self.path, base_seqno=0)
        scan = scan_log(self.path)
        self._version, self._base_seqno, self._header_size = scan.version, scan.base_seqno, scan.header_size
        self.report = ReplayReport(len(scan.records), scan.last_seqno, scan.torn_bytes)
        self._next_seqno = self.report.last_seqno + 1
        # Unbuffered: a failed write must leave nothing in a buffer that a later flush would write.
        self._fd = os.open(self.path, os.O_RDWR)
        self._end = scan.end  # the end of the last whole, durable record
        self._committed = scan.committed_end  # what the header says
        self._dirty = False  # a failed append could not be truncated away yet
        self._timer: threading.Timer | None = None
        if self.report.torn_bytes:
            os.ftruncate(self._fd, self._end)
            os.fsync(self._fd)

    @staticmethod
    def _create_empty(path: Path, base_seqno: int) -> None:
        write_atomic(path, _header(base_seqno, FILE_HEADER.size))

    def replay(self) -> Iterator[tuple[int, bytes]]:
        """Every whole record in order, as (seqno, payload)."""
        with self._lock:  # read under the lock, yield outside it, so a consumer may append
            records = [(seqno, payload) for seqno, payload, end in scan_log(self.path).records if end <= self._end]
        yield from records

    def append(self, payloads: Sequence[bytes]) -> int:
        """Write records and fsync once (group commit); returns the last seqno. Durable on return.

        On failure (OSError, e.g. ENOSPC) nothing of these records stays in the file and no
        seqno is used up; the error is re-raised for the caller to report.
        """
        if not payloads:
            raise ValueError("nothing to append")
        for payload in payloads:
            if len(payload) > MAX_RECORD_BYTES:
                raise ValueError(f"a record of {len(payload)} bytes exceeds the {MAX_RECORD_BYTES}-byte limit")
        with self._lock:
            if self._dirty:
                self._roll_back()  # what an earlier failed append left; raises if it still cannot
            seqno = self._next_seqno
            chunks = []
            for payload in payloads:
                chunks.append(HEADER.pack(len(payload), _crc(seqno, payload), seqno))
                chunks.append(payload)
                seqno += 1
            data = memoryview(b"".join(chunks))
            start = self._end
            try:
                written = 0
                while written < len(data):
                    written += os.pwrite(self._fd, data[written:], start + written)
                os.fsync(self._fd)
            except BaseException:
                self._dirty = True
                try:
                    self._roll_back()
                except OSError:
                    pass  # stays dirty: the next append tries again first
                raise
            self._end = start + len(data)
            self._next_seqno = seqno
            if self._version == 2 and self._timer is None:
                self._timer = threading.Timer(COMMIT_DELAY_S, self._commit_soon)
                self._timer.daemon = True
                self._timer.start()
            return seqno - 1

    def _commit_soon(self) -> None:
        try:
            self.commit()
        except OSError as exc:  # best effort: the records are durable; only the truncation check lags
            log.warning({"event": "wal_commit_failed", "log": self.path.name, "reason": str(exc)})

    def commit(self) -> None:
        """Record in the header that every byte up to the last appended record is durable.

        The records were fsync'd before their append returned, so the header never claims
        more than is on disk; it is rewritten in place (no space needed) and fsync'd.
        """
        with self._lock:
            self._timer = None
            if self._fd < 0 or self._version != 2 or self._committed == self._end or self._dirty:
                return
            os.pwrite(self._fd, _header(self._base_seqno, self._end), 0)
            os.fsync(self._fd)
            self._committed = self._end

    def _roll_back(self) -> None:
        """Cut the file back to the last durable record (shrinking a file needs no free space)."""
        os.ftruncate(self._fd, self._end)
        os.fsync(self._fd)
        self._dirty = False

    def reset(self) -> None:
        """Empty the log (after a snapshot made its records redundant); seqnos keep counting up.

        The header's base seqno (and committed end: the header's own end) is rewritten first,
        then the records are cut off: a crash between the two leaves records at or below the
        new base after the committed end, which a scan drops as a stale tail. Neither step
        allocates disk space on an overwrite-in-place filesystem (ext4, xfs, tmpfs). A log of
        the first format is replaced by a new-format one (a few bytes; where even they do not
        fit, it is emptied in the old format).
        """
        with self._lock:
            base = self._next_seqno - 1
            if self._version == 1:
                try:
                    self._create_empty(self.path, base)
                except OSError:
                    os.pwrite(self._fd, FILE_HEADER_V1.pack(MAGIC_V1, base), 0)
                    os.fsync(self._fd)
                    os.ftruncate(self._fd, FILE_HEADER_V1.size)
                    os.fsync(self._fd)
                    self._end = self._committed = FILE_HEADER_V1.size
                else:
                    os.close(self._fd)
                    self._fd = os.open(self.path, os.O_RDWR)
                    self._version, self._header_size = 2, FILE_HEADER.size
                    self._end = self._committed = FILE_HEADER.size
            else:
                os.pwrite(self._fd, _header(base, FILE_HEADER.size), 0)
                os.fsync(self._fd)
                os.ftruncate(self._fd, FILE_HEADER.size)
                os.fsync(self._fd)
                self._end = self._committed = FILE_HEADER.size
            self._base_seqno = base
            self._dirty = False

    @property
    def next_seqno(self) -> int:
        return self._next_seqno

    def close(self) -> None:
        timer = self._timer
        if timer is not None:
            timer.cancel()
        try:
            self.commit()
        except OSError:
            pass  # the records are durable; the next open treats them as a tail
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __del__(self) -> None:
        fd = getattr(self, "_fd", -1)
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> WriteAheadLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
