"""What verifying a corpus's files costs at load: one 1M x 384 corpus opened with and without its checksums.

A corpus's snapshot records each file's size and xxh3-64 digest (index/integrity.py), and a
load reads each file whole into memory, hashes it there and parses it from the same buffer,
so verifying adds one pass of hashing at memory speed and no extra read. This script writes
one snapshot of random unit vectors (ids and the payload's columns as Tessera writes them),
then opens the corpus `--rounds` times each way, alternating, with a warm page cache, and
reports the best load time of each (and the medians), their ratio, and the raw speed of xxh3 and of CRC-32
(zlib) over the vectors file, which is why xxh3 was chosen. `tessera corpus verify` (a
streamed check of every file, offline) is timed too.

    python -m benchmarks.verify_cost                      # 1M x 384, writes benchmarks/results/verify_cost.json
    python -m benchmarks.verify_cost --vectors 2000 --dim 16 --rounds 1 --out /tmp/v.json
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import statistics
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import xxhash

from benchmarks.provenance import git_commit, now_utc
from tessera.index.config import IndexConfig
from tessera.index.corpus import Corpus
from tessera.index.integrity import SNAPSHOTS, VECTORS, verify_corpus
from tessera.index.snapshot import write_json_atomic, write_snapshot

RESULTS = Path(__file__).parent / "results" / "verify_cost.json"
BATCH = 100_000


def build(path: Path, n: int, dim: int) -> None:
    """A corpus of n random unit vectors with one snapshot, written by the code a snapshot runs."""
    corpus = Corpus.create(
        path, name="verify-cost", space=f"vectors:{dim}", modality="vector", dim=dim, index=IndexConfig("Flat")
    )
    corpus.close()
    rng = np.random.default_rng(0)
    vectors = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, BATCH):
        block = rng.standard_normal((min(BATCH, n - start), dim), dtype=np.float32)
        vectors[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    ids = pa.array([f"item-{i}" for i in range(n)], pa.string())
    payload = pa.table(
        {
            "id": ids,
            "text": pa.nulls(n, pa.string()),
            "data": pa.nulls(n, pa.binary()),
            "uri": pa.nulls(n, pa.string()),
        }
    )
    name = "snap-000000000000"  # the log is empty from seqno 0 on, so the snapshot is at 0
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.update({"snapshot": name, "snapshot_seqno": 0, "built_factory": None})
    manifest["snapshot_files"] = write_snapshot(
        path / SNAPSHOTS / name, vectors, payload, np.arange(n, dtype=np.int64), manifest=manifest
    )
    write_json_atomic(path / "manifest.json", manifest)


def load_seconds(path: Path, verify: bool) -> tuple[float, int]:
    gc.collect()
    start = time.perf_counter()
    corpus = Corpus.open(path, verify=verify)
    elapsed = time.perf_counter() - start
    count = len(corpus)
    corpus.close()
    del corpus
    gc.collect()
    return elapsed, count


def hash_speed(data: np.ndarray) -> dict[str, float]:
    out = {}
    for name, fn in (("xxh3", xxhash.xxh3_64_intdigest), ("crc32", zlib.crc32)):
        fn(data[: 1 << 20])
        start = time.perf_counter()
        fn(data)
        out[name] = data.nbytes / (time.perf_counter() - start) / 1e9
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--rounds", type=int, default=5, help="loads each way, alternating (default: %(default)s)")
    parser.add_argument("--dir", type=Path, help="where to write the corpus (default: a temporary directory)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="verify-cost-", dir=args.dir))
    path = work / "corpus"
    try:
        start = time.perf_counter()
        build(path, args.vectors, args.dim)
        print(f"wrote {args.vectors} x {args.dim} in {time.perf_counter() - start:.1f} s", flush=True)
        snapshot = path / SNAPSHOTS / "snap-000000000000"
        files = {p.name: p.stat().st_size for p in snapshot.iterdir()}
        vectors_bytes = np.fromfile(snapshot / VECTORS, dtype=np.uint8)  # also warms the page cache
        speed = hash_speed(vectors_bytes)
        del vectors_bytes
        load_seconds(path, True)  # warm-up: page cache, imports, allocator
        without, with_verify = [], []
        for _ in range(args.rounds):
            for verify, times in ((False, without), (True, with_verify)):
                elapsed, count = load_seconds(path, verify)
                assert count == args.vectors
                times.append(elapsed)
                print(f"load verify={verify}: {elapsed:.3f} s", flush=True)
        start = time.perf_counter()
        report = verify_corpus(path)
        offline = time.perf_counter() - start
        assert report.ok, report
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # Best of the rounds, as the other benchmarks report: on a shared machine the spread between
    # rounds (other processes) is larger than what hashing costs; the medians are kept beside.
    plain, checked = min(without), min(with_verify)
    verified = sum(size for name, size in files.items() if name != "manifest.json")
    result = {
        "vectors": args.vectors,
        "dim": args.dim,
        "load_s_without_verify": round(plain, 3),
        "load_s_with_verify": round(checked, 3),
        "ratio": round(checked / plain, 3),
        "load_s_without_verify_median": round(statistics.median(without), 3),
        "load_s_with_verify_median": round(statistics.median(with_verify), 3),
        "algorithm": "xxh3_64",
        "bytes_verified": verified,
        "xxh3_gb_per_s": round(speed["xxh3"], 2),
        "crc32_gb_per_s": round(speed["crc32"], 2),
        "hash_s_xxh3": round(verified / speed["xxh3"] / 1e9, 3),  # what the digests alone cost
        "hash_s_crc32": round(verified / speed["crc32"] / 1e9, 3),  # what CRC-32 would have cost
        "verify_offline_s": round(offline, 3),
        "rounds": args.rounds,
        "load_s_without_verify_all": [round(t, 3) for t in without],
        "load_s_with_verify_all": [round(t, 3) for t in with_verify],
        "commit": git_commit(),
        "measured_at": now_utc(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
