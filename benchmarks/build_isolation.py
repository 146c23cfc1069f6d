"""Build isolation benchmark: what a corpus's FAISS index build costs in a child process instead of a server thread.

A native abort inside FAISS (a failed `FAISS_ASSERT`, a segfault) kills the whole
process, and a server that builds indexes in a background thread goes down with
it. Building in a child process contains that; this measures the price. For each
of HNSW32 (efConstruction 40) and IVF1024,Flat (trained on the vectors, the way
`Corpus._build_index` samples them) over N random unit-norm float32 vectors:

- in-process: `AnnIndex` built in a thread of this process (as the server's
  background builder does), FAISS with the same OpenMP thread count as the child;
- child: the parent writes the vectors to a raw .npy in a temp dir, starts a
  `multiprocessing` "spawn" child that memory-maps them, imports faiss, builds the
  same index, saves it with `AnnIndex.save` and exits; the parent loads the file
  back with `AnnIndex.load`. Wall seconds in total and per part (write vectors,
  child start incl. imports, build, save, child exit, load back), the ratio
  child / in-process, the parent's peak RSS increase (VmHWM, reset before each
  part through /proc/self/clear_refs) and the child's own peak RSS. The build's CPU
  seconds are recorded on both sides too: on a shared machine wall time swings with
  other load (an IVF build measured 31 s and 57 s in two runs here), CPU time much less.

Both indexes answer the same 100 queries (top-10; efSearch 64, nprobe 32):
`same_results` is the fraction of queries whose top-10 ids are identical, and
`child_vs_in_process_overlap` the mean share of ids they have in common. A
multi-threaded HNSW build inserts in a nondeterministic order, so two builds from
the same input need not agree; recall@10 against exact search is reported for
both, which says whether the child's index is as good, not just whether it is equal.

Last, a child builds FAISS's "HNSW0" (no neighbours) and adds 1,000 vectors, which
trips a FAISS assertion and aborts the child (SIGABRT, exit code -6); the parent
records the exit code and the assertion message and searches its own index after.

    python -m benchmarks.build_isolation                 # N=100,000, writes benchmarks/results/build_isolation.json
    python -m benchmarks.build_isolation --smoke --out /tmp/b.json   # N=5,000
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import multiprocessing
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

# Only the standard library and numpy at the top: a "spawn" child re-imports this module
# as __mp_main__, and its start-up time should be what a build worker needs (numpy, faiss,
# tessera.index.ann), measured as such below, not whatever a benchmark happens to import.
from benchmarks.provenance import git_commit, now_utc

DIM = 384
K = 10
N_QUERIES = 100
HNSW_FACTORY = "HNSW32"
HNSW_EF_CONSTRUCTION = 40
IVF_FACTORY = "IVF1024,Flat"
HNSW_EF_SEARCH = 64  # as benchmarks/index_bench.py
IVF_NPROBE = 32
SMOKE_N = 5_000
CHILD_TIMEOUT_S = 3600
MB = 1024 * 1024


# ---- memory -----------------------------------------------------------------------------
def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def rss_mb() -> float:
    return _status_kb("VmRSS") / 1024


def peak_mb() -> float:
    return _status_kb("VmHWM") / 1024


def reset_peak() -> bool:
    """Set this process's high-water RSS mark back to its current RSS (Linux >= 4.0).

    Freed heap goes back to the OS first (glibc's malloc_trim): memory an earlier part freed
    but malloc kept would otherwise be reused unseen and hide the next part's growth.
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_s() -> float:
    """CPU seconds this process has used, all threads: on a shared machine, steadier than wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def children_maxrss_mb() -> float:
    """The largest peak RSS of any child waited for so far (getrusage(RUSAGE_CHILDREN), kB on Linux)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


# ---- data -------------------------------------------------------------------------------
def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def build(factory: str, vectors: np.ndarray, threads: int) -> Any:
    """The build both sides run: the same code, the same inputs, the same FAISS thread count."""
    import faiss

    from tessera.index.ann import AnnIndex
    from tessera.index.building import training_sample

    faiss.omp_set_num_threads(threads)
    ef = HNSW_EF_CONSTRUCTION if factory.startswith("HNSW") else None
    index = AnnIndex(factory, vectors.shape[1], ef_construction=ef)
    if not index.is_trained:
        index.train(vectors[training_sample(len(vectors), index)])
    index.add(vectors, np.arange(len(vectors), dtype=np.int64))
    return index


def search(index: Any, queries: np.ndarray) -> np.ndarray:
    import faiss

    faiss.omp_set_num_threads(1)
    params = {"ef_search": HNSW_EF_SEARCH} if index.factory.startswith("HNSW") else {"nprobe": IVF_NPROBE}
    return index.search(queries, K, **params).slots


def exact_top(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    scores = queries @ vectors.T
    top = np.argpartition(-scores, K, axis=1)[:, :K]
    return np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1), axis=1)


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x[x >= 0]) & set(y[y >= 0])) / K for x, y in zip(a, b, strict=True)]))


# ---- children (module-level: "spawn" pickles them by name) --------------------------------
def child_build(job: dict[str, Any]) -> None:
    entered = time.time()
    import faiss  # noqa: F401

    import tessera.index.ann  # noqa: F401

    imported, cpu_imported = time.time(), cpu_s()
    baseline_rss = rss_mb()
    vectors = np.load(job["vectors"], mmap_mode="r")  # the parent's file, paged in as FAISS reads it
    index = build(job["factory"], vectors, job["threads"])
    built, cpu_built = time.time(), cpu_s()
    index.save(Path(job["index"]))
    saved = time.time()
    report = {
        "entered": entered,
        "imported": imported,
        "built": built,
        "saved": saved,
        "build_cpu_s": cpu_built - cpu_imported,
        "baseline_rss_mb": baseline_rss,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    Path(job["report"]).write_text(json.dumps(report))


def child_abort(job: dict[str, Any]) -> None:
    # FAISS prints its assertion to fd 2 just before abort(); keep it for the parent to read.
    fd = os.open(job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 2)
    import faiss

    Path(job["started"]).write_text(str(time.time()))
    index = faiss.index_factory(job["dim"], "HNSW0")  # M=0: no neighbour slots, and FAISS does not refuse it
    index.add(unit_vectors(1000, job["dim"], seed=7))  # Faiss assertion 'i < end' failed -> abort()
    sys.stderr.write("HNSW0 did not abort; falling back to os.abort()\n")
    sys.stderr.flush()
    os.abort()


def run_child(target: Any, job: dict[str, Any]) -> tuple[int | None, float, float]:
    """Start `target(job)` in a spawned process and wait; (exit code, start time, end time)."""
    context = multiprocessing.get_context("spawn")
    started = time.time()
    process = context.Process(target=target, args=(job,), daemon=True)
    process.start()
    process.join(CHILD_TIMEOUT_S)
    ended = time.time()
    if process.is_alive():
        process.kill()
        process.join()
    return process.exitcode, started, ended


# ---- one index type, both ways -------------------------------------------------------------
def in_process(factory: str, vectors: np.ndarray, threads: int) -> tuple[dict[str, float], Any]:
    """Build in a worker thread, as the server's background builder does."""
    box: dict[str, Any] = {}

    def work() -> None:
        box["index"] = build(factory, vectors, threads)

    reset_peak()
    rss0, cpu0 = rss_mb(), cpu_s()
    start = time.perf_counter()
    worker = threading.Thread(target=work, name="build")
    worker.start()
    worker.join()
    seconds = time.perf_counter() - start
    stats = {
        "in_process_s": seconds,
        "in_process_cpu_s": cpu_s() - cpu0,  # this process is otherwise idle, waiting on the thread
        "in_process_peak_rss_increase_mb": peak_mb() - rss0,
        "in_process_retained_rss_mb": rss_mb() - rss0,
    }
    return stats, box["index"]


def in_child(factory: str, vectors: np.ndarray, threads: int, work: Path) -> tuple[dict[str, float], Any]:
    from tessera.index.ann import AnnIndex

    tag = factory.split(",")[0].lower()
    paths = {name: work / f"{tag}.{name}" for name in ("vectors.npy", "index.faiss", "report.json")}
    reset_peak()
    rss0 = rss_mb()
    start = time.time()
    np.save(paths["vectors.npy"], np.ascontiguousarray(vectors, dtype=np.float32))  # raw .npy, mmap-able
    written = time.time()
    job = {
        "factory": factory,
        "threads": threads,
        "vectors": str(paths["vectors.npy"]),
        "index": str(paths["index.faiss"]),
        "report": str(paths["report.json"]),
    }
    code, launched, exited = run_child(child_build, job)
    if code != 0:
        raise RuntimeError(f"{factory} child build exited with {code}")
    child = json.loads(paths["report.json"].read_text())
    index = AnnIndex.load(factory, vectors.shape[1], paths["index.faiss"])
    loaded = time.time()
    peak_increase = peak_mb() - rss0
    index_bytes = sum(p.stat().st_size for p in work.glob(f"{tag}.index*"))
    for p in work.glob(f"{tag}.*"):
        p.unlink()
    stats = {
        "child_s": loaded - start,
        "write_vectors_s": written - start,
        "child_python_start_s": child["entered"] - launched,  # interpreter + numpy + this module, unpickling
        "child_import_faiss_s": child["imported"] - child["entered"],
        "child_start_s": child["imported"] - launched,
        "child_build_s": child["built"] - child["imported"],
        "child_build_cpu_s": child["build_cpu_s"],
        "child_save_s": child["saved"] - child["built"],
        "child_exit_s": exited - child["saved"],
        "load_s": loaded - exited,
        "overhead_s": (loaded - start) - (child["built"] - child["imported"]),
        "parent_peak_rss_increase_mb": peak_increase,
        "parent_retained_rss_mb": rss_mb() - rss0,
        "child_baseline_rss_mb": child["baseline_rss_mb"],
        "child_peak_rss_mb": child["peak_rss_mb"],
        "children_maxrss_mb": children_maxrss_mb(),
        "index_file_mb": index_bytes / MB,
        "vectors_file_mb": vectors.nbytes / MB,
    }
    return stats, index


def compare(prefix: str, factory: str, vectors: np.ndarray, threads: int, work: Path) -> tuple[dict, Any]:
    queries = unit_vectors(N_QUERIES, vectors.shape[1], seed=1)
    truth = exact_top(vectors, queries)
    print(f"{factory}: in-process build ...", file=sys.stderr, flush=True)
    local_stats, local = in_process(factory, vectors, threads)
    print(f"{factory}: child build ...", file=sys.stderr, flush=True)
    child_stats, child = in_child(factory, vectors, threads, work)
    local_top, child_top = search(local, queries), search(child, queries)
    row = {
        f"{prefix}_factory": factory,
        **{f"{prefix}_{k}": v for k, v in local_stats.items()},
        **{f"{prefix}_{k}": v for k, v in child_stats.items()},
        f"{prefix}_ratio": child_stats["child_s"] / local_stats["in_process_s"],
        f"{prefix}_build_cpu_ratio": child_stats["child_build_cpu_s"] / local_stats["in_process_cpu_s"],
        f"{prefix}_same_results": float(np.mean(np.all(local_top == child_top, axis=1))),
        f"{prefix}_child_vs_in_process_overlap": overlap(child_top, local_top),
        f"{prefix}_in_process_recall_at_10": overlap(local_top, truth),
        f"{prefix}_child_recall_at_10": overlap(child_top, truth),
    }
    print(json.dumps(row, indent=2), file=sys.stderr, flush=True)
    return row, local


def abort_check(dim: int, work: Path, survivor: Any) -> dict[str, Any]:
    """A child that aborts natively: the parent sees the exit code and carries on."""
    before = search(survivor, unit_vectors(N_QUERIES, dim, seed=1))
    job = {"dim": dim, "stderr": str(work / "abort.stderr"), "started": str(work / "abort.started")}
    code, launched, exited = run_child(child_abort, job)
    message = (work / "abort.stderr").read_text(errors="replace").strip().splitlines()
    faiss_started = float((work / "abort.started").read_text()) if (work / "abort.started").exists() else None
    after = search(survivor, unit_vectors(N_QUERIES, dim, seed=1))  # this process still runs FAISS
    return {
        "abort_how": 'faiss.index_factory(dim, "HNSW0").add(1000 vectors) in a spawned child',
        "abort_exit_code": code,
        "abort_signal": signal.Signals(-code).name if code is not None and code < 0 else None,
        "abort_faiss_message": message[-1][:300] if message else "",
        "abort_child_lived_s": exited - launched,
        "abort_after_faiss_import_s": exited - faiss_started if faiss_started else None,
        "parent_survived": bool(np.array_equal(before, after)),
    }


def serve_main_reimport_s() -> float:
    """A spawn child re-imports the parent's __main__; under `tessera serve` that is tessera.cli."""
    code = "import time; t = time.perf_counter(); import tessera.cli; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="number of vectors")
    parser.add_argument("--smoke", action="store_true", help=f"N={SMOKE_N:,}, for a quick end-to-end check")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="FAISS OpenMP threads per build")
    parser.add_argument("--tmp-dir", type=Path, default=None, help="where the vectors and index files go")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "build_isolation.json")
    args = parser.parse_args(argv)
    n = SMOKE_N if args.smoke else args.n

    import faiss

    vectors = unit_vectors(n, DIM, seed=0)
    result: dict[str, Any] = {
        "benchmark": "build_isolation",
        "n": n,
        "dim": DIM,
        "smoke": args.smoke,
        "threads": args.threads,
        "k": K,
        "queries": N_QUERIES,
        "hnsw_ef_construction": HNSW_EF_CONSTRUCTION,
        "hnsw_ef_search": HNSW_EF_SEARCH,
        "ivf_nprobe": IVF_NPROBE,
        "data": "random unit-norm float32 (standard normal, normalised)",
        "start_method": "spawn",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "faiss": faiss.__version__,
        },
        "ratio_is": "child_s / in_process_s (wall seconds; 1.0 = isolation is free)",
        "child_s_is": "write vectors + child start (python, imports) + build + save + child exit + parent load",
        "overhead_s_is": "child_s minus the build inside the child",
        "build_cpu_ratio_is": "CPU seconds of the build in the child / in-process (contention on a shared "
        "machine moves wall time more than CPU time)",
        "rss_is": "parent: VmHWM/VmRSS growth over the part; child: its own ru_maxrss (incl. mmapped vector pages); "
        "children_maxrss: getrusage(RUSAGE_CHILDREN) after the child, the largest child so far",
    }
    with tempfile.TemporaryDirectory(prefix="build_isolation_", dir=args.tmp_dir) as tmp:
        work = Path(tmp)
        hnsw, survivor = compare("hnsw", HNSW_FACTORY, vectors, args.threads, work)
        ivf, _ = compare("ivf", IVF_FACTORY, vectors, args.threads, work)
        result |= hnsw | ivf
        # The fixed cost of isolation, whatever the index: a child's start-up, averaged over the two.
        result["child_start_s"] = (hnsw["hnsw_child_start_s"] + ivf["ivf_child_start_s"]) / 2
        result["serve_main_reimport_s"] = serve_main_reimport_s()
        print("aborting child ...", file=sys.stderr, flush=True)
        result |= abort_check(DIM, work, survivor)
    result["commit"] = git_commit()
    result["measured_at"] = now_utc()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
