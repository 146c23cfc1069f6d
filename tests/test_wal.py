"""The write-ahead log: round trips, torn tails, corruption, and SIGKILL during appends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tessera.index.wal import (
    FILE_HEADER,
    FILE_HEADER_V1,
    HEADER,
    MAGIC,
    MAGIC_V1,
    WALCorruptError,
    WriteAheadLog,
    scan_log,
)

REPO = Path(__file__).resolve().parents[1]


def test_records_survive_reopen_in_order(tmp_path: Path) -> None:
    path = tmp_path / "wal.log"
    with WriteAheadLog(path) as wal:
        assert wal.append([b"one", b"two"]) == 2
        assert wal.append([b"three"]) == 3
    with WriteAheadLog(path) as wal:
        assert list(wal.replay()) == [(1, b"one"), (2, b"two"), (3, b"three")]
        assert wal.report.records == 3 and wal.report.torn_bytes == 0
        assert wal.append([b"four"]) == 4


def _partial_record(payload: bytes, keep: int) -> bytes:
    """The first `keep` bytes of a record as an append killed midway leaves them (never committed)."""
    import struct
    import zlib

    seqno = 2
    crc = zlib.crc32(payload, zlib.crc32(struct.pack("<Q", seqno)))
    return (HEADER.pack(len(payload), crc, seqno) + payload)[:keep]


def test_torn_last_record_is_dropped_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "wal.log"
    with WriteAheadLog(path) as wal:
        wal.append([b"kept"])
    with open(path, "ab") as f:  # the crash cut the next append short, before the header's committed end moved
        f.write(_partial_record(b"x" * 100, 16 + 100 - 40))
    with WriteAheadLog(path) as wal:
        assert wal.report.torn_bytes == 16 + 100 - 40
        assert list(wal.replay()) == [(1, b"kept")]
        assert wal.append([b"after"]) == 2
    with WriteAheadLog(path) as wal:
        assert list(wal.replay()) == [(1, b"kept"), (2, b"after")]


def test_a_truncated_log_is_refused_not_taken_for_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "wal.log"
    with WriteAheadLog(path) as wal:
        wal.append([b"first"])
        wal.append([b"x" * 100])
    size = path.stat().st_size
    os.truncate(path, size - 40)  # acknowledged, committed bytes cut off: a damaged disk, not a crash
    with pytest.raises(WALCorruptError, match="acknowledged writes are missing") as caught:
        scan_log(path)
    assert caught.value.records_before == 1
    os.truncate(path, FILE_HEADER.size + 16 + len(b"first"))  # cut at a record boundary: still found
    with pytest.raises(WALCorruptError, match="acknowledged writes are missing"):
        WriteAheadLog(path)


def test_a_damaged_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wal.log"
    WriteAheadLog(path).close()
    data = bytearray(path.read_bytes())
    data[12] ^= 0x01  # one bit of the base seqno
    path.write_bytes(bytes(data))
    with pytest.raises(WALCorruptError, match="damaged header"):
        scan_log(path)
    os.truncate(path, 20)
    with pytest.raises(WALCorruptError, match="shorter than its header"):
        scan_log(path)


def test_a_log_of_the_first_format_still_opens_and_is_upgraded_at_reset(tmp_path: Path) -> None:
    import struct
    import zlib

    path = tmp_path / "wal.log"
    records = b"".join(
        HEADER.pack(len(p), zlib.crc32(p, zlib.crc32(struct.pack("<Q", s))), s) + p
        for s, p in ((1, b"one"), (2, b"two"))
    )
    path.write_bytes(FILE_HEADER_V1.pack(MAGIC_V1, 0) + records)
    with WriteAheadLog(path) as wal:
        assert list(wal.replay()) == [(1, b"one"), (2, b"two")]
        assert wal.append([b"three"]) == 3
        wal.reset()
    assert path.read_bytes()[:8] == MAGIC and path.stat().st_size == FILE_HEADER.size
    with WriteAheadLog(path) as wal:
        assert wal.next_seqno == 4


def test_bad_checksum_before_the_end_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wal.log"
    with WriteAheadLog(path) as wal:
        wal.append([b"first record", b"second record"])
    data = bytearray(path.read_bytes())
    data[FILE_HEADER.size + 16 + 2] ^= 0xFF  # flip a byte inside the first payload
    path.write_bytes(bytes(data))
    with pytest.raises(WALCorruptError, match="fails its checksum and is not the last"):
        WriteAheadLog(path)


def test_reset_empties_the_log_and_seqnos_keep_counting(tmp_path: Path) -> None:
    path = tmp_path / "wal.log"
    with WriteAheadLog(path) as wal:
        wal.append([b"a", b"b"])
        wal.reset()
        assert list(wal.replay()) == []
    with WriteAheadLog(path) as wal:
        assert wal.next_seqno == 3
        assert wal.append([b"c"]) == 3


WRITER = """
import sys
from tessera.index.wal import WriteAheadLog
wal = WriteAheadLog(sys.argv[1])
i = 0
while True:
    seqno = wal.append([f"record-{i}".encode() * 50])
    print(seqno, flush=True)  # acknowledged: fsync has returned
    i += 1
"""


@pytest.mark.parametrize("delay", [0.3, 0.7, 1.1])
def test_sigkill_mid_append_loses_no_acknowledged_record(tmp_path: Path, delay: float) -> None:
    path = tmp_path / "wal.log"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    acknowledged = [int(line) for line in proc.stdout.read().split()]
    proc.wait()
    assert acknowledged, "the writer acknowledged nothing before the kill"
    with WriteAheadLog(path) as wal:
        replayed = [seqno for seqno, _ in wal.replay()]
    assert set(acknowledged) <= set(replayed)
    assert replayed == list(range(1, len(replayed) + 1))
