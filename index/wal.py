"""An append-only write-ahead log of opaque records, fsync'd before a write is acknowledged.

On disk: an 8-byte magic and the u64 seqno the log starts after, then records of

    u32 payload length | u32 CRC-32 of (seqno + payload) | u64 seqno | payload

A crash can leave the last record half written. Opening the log finds it
(short read or CRC mismatch at the tail), drops it, truncates the file to the
last whole record and reports how many bytes went; an acknowledged record is
never the torn one, because `append` returns only after fsync. A bad CRC
followed by further whole records is real corruption and is refused, not
silently skipped. What a record means (an upsert batch, a delete) is the
caller's business.

A write that fails (a full disk: ENOSPC or EDQUOT) is rolled back before the
error is raised: the file is truncated to where the append began, so the
refused record is neither left torn nor written later by a buffer, and its
seqno is handed to the next append. If even the truncation fails, the log
remembers it and tries again before its next append; until one succeeds every
append is refused. Emptying the log after a snapshot rewrites the header in
place and truncates, which needs no free space.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .durable import write_atomic

MAGIC = b"TSWAL001"
FILE_HEADER = struct.Struct("<8sQ")  # magic, base seqno
HEADER = struct.Struct("<IIQ")
MAX_RECORD_BYTES = 1 << 30


class WALCorruptError(RuntimeError):
    """The log has a damaged record before its end; it needs a person, not a silent skip."""


@dataclass(frozen=True)
class ReplayReport:
    records: int
    last_seqno: int
    torn_bytes: int  # bytes of a half-written last record that were dropped


def _crc(seqno: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(struct.pack("<Q", seqno)))


class WriteAheadLog:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        if not self.path.exists():
            self._create_empty(self.path, base_seqno=0)
        self.report, end = self._scan()
        self._next_seqno = self.report.last_seqno + 1
        # Unbuffered: a failed write must leave nothing in a buffer that a later flush would write.
        self._fd = os.open(self.path, os.O_RDWR)
        self._end = end  # the end of the last whole, durable record
        self._dirty = False  # a failed append could not be truncated away yet
        if self.report.torn_bytes:
            os.ftruncate(self._fd, end)
            os.fsync(self._fd)

    @staticmethod
    def _create_empty(path: Path, base_seqno: int) -> None:
        write_atomic(path, FILE_HEADER.pack(MAGIC, base_seqno))

    def _records(self) -> Iterator[tuple[int, bytes, int]]:
        """(seqno, payload, end offset) of each whole record; sets self._torn on a torn tail."""
        data = self.path.read_bytes()
        if len(data) < FILE_HEADER.size or data[: len(MAGIC)] != MAGIC:
            raise WALCorruptError(f"{self.path} is not a Tessera write-ahead log (bad header)")
        self._base_seqno = FILE_HEADER.unpack_from(data)[1]
        offset, self._torn = FILE_HEADER.size, 0
        while offset < len(data):
            if len(data) - offset < HEADER.size:
                self._torn = len(data) - offset
                return
            length, crc, seqno = HEADER.unpack_from(data, offset)
            start, end = offset + HEADER.size, offset + HEADER.size + length
            if length > MAX_RECORD_BYTES or end > len(data):
                self._torn = len(data) - offset
                return
            payload = data[start:end]
            if _crc(seqno, payload) != crc:
                if end < len(data):
                    raise WALCorruptError(
                        f"{self.path}: record at byte {offset} fails its checksum and is not the last"
                    )
                self._torn = len(data) - offset
                return
            yield seqno, payload, end
            offset = end

    def _scan(self) -> tuple[ReplayReport, int]:
        count, last, end = 0, None, FILE_HEADER.size
        for seqno, _, record_end in self._records():
            count, last, end = count + 1, seqno, record_end
        last = self._base_seqno if last is None else last
        return ReplayReport(count, last, self._torn), end

    def replay(self) -> Iterator[tuple[int, bytes]]:
        """Every whole record in order, as (seqno, payload)."""
        with self._lock:  # read under the lock, yield outside it, so a consumer may append
            records = [(seqno, payload) for seqno, payload, end in self._records() if end <= self._end]
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
            return seqno - 1

    def _roll_back(self) -> None:
        """Cut the file back to the last durable record (shrinking a file needs no free space)."""
        os.ftruncate(self._fd, self._end)
        os.fsync(self._fd)
        self._dirty = False

    def reset(self) -> None:
        """Empty the log (after a snapshot made its records redundant); seqnos keep counting up.

        The header's base seqno is rewritten first, then the records are cut off: a crash
        between the two leaves records at or below the new base, which the corpus skips
        on replay as already in the snapshot. Neither step allocates disk space on an
        overwrite-in-place filesystem (ext4, xfs, tmpfs).
        """
        with self._lock:
            os.pwrite(self._fd, FILE_HEADER.pack(MAGIC, self._next_seqno - 1), 0)
            os.fsync(self._fd)
            os.ftruncate(self._fd, FILE_HEADER.size)
            os.fsync(self._fd)
            self._end = FILE_HEADER.size
            self._dirty = False

    @property
    def next_seqno(self) -> int:
        return self._next_seqno

    def close(self) -> None:
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
