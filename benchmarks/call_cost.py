"""What one corpus search costs on top of the FAISS search inside it, in microseconds per call.

A 10,000-vector HNSW32 corpus of clustered synthetic vectors (efSearch 64, hot cache, one
thread, one query per call) is searched two ways, taking turns: `Corpus.search(q, 10,
with_payload=False)`, the in-process path with its query checks, read lock, slot -> id mapping
and hit objects; and FAISS's own Python `search` on the same index object with the same
parameters. The difference is Tessera's per-call cost. With `--baseline DIR` (the `index/`
directory of another commit, e.g. from `git worktree add`) that commit's corpus is measured in
the same run on the same vectors, so two versions compare on one machine state.

    python -m benchmarks.call_cost
    git worktree add /tmp/before f45a236 && python -m benchmarks.call_cost --baseline /tmp/before/index
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import faiss
import numpy as np

from benchmarks.index_bench import clustered_vectors
from benchmarks.provenance import git_commit, now_utc

N, DIM, K, EF = 10_000, 384, 10, 64
QUERIES = 1000


def load_index_package(directory: Path | None) -> ModuleType:
    """`tessera.index`, or another commit's copy of it imported under its own name."""
    if directory is None:
        return importlib.import_module("tessera.index")
    root = Path(tempfile.mkdtemp(prefix="tessera-baseline-"))
    shutil.copytree(directory, root / "tessera_baseline_index")
    sys.path.insert(0, str(root))
    return importlib.import_module("tessera_baseline_index")


def build(package: ModuleType, root: Path, vectors: np.ndarray) -> Any:
    catalog = importlib.import_module(f"{package.__name__}.catalog").Catalog(root)
    item = importlib.import_module(f"{package.__name__}.items").Item
    corpus = catalog.create(
        "bench", space="vectors:384", modality="vector", dim=DIM, index={"factory": "HNSW32", "use_gpu": False}
    )
    corpus.upsert([item(id=str(i), vector=v) for i, v in enumerate(vectors)])
    corpus.wait_idle()
    if corpus.ann is None:
        corpus.rebuild()
    return catalog, corpus


class TimedIndex:
    """Stands in for a FAISS index: forwards every attribute, and adds up the time spent inside `search_c`
    (FAISS's C++ search), so what remains of a call's time is the Python around it, free of the search's
    own noise (on this VM a 10k HNSW search swings by 20% or more, far more than the wrapper costs)."""

    def __init__(self, index: Any) -> None:
        self._index = index
        self.inside = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._index, name)

    def search_c(self, *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return self._index.search_c(*args)
        finally:
            self.inside += time.perf_counter() - start


def wrapper_us(call: Any, timed: TimedIndex, queries: np.ndarray, passes: int) -> tuple[float, float]:
    """(µs per call outside FAISS's C++ search, µs inside it), over `passes` replays of the queries."""
    timed.inside = 0.0
    start = time.perf_counter()
    for _ in range(passes):
        for q in queries:
            call(q)
    total = time.perf_counter() - start
    calls = passes * len(queries)
    return (total - timed.inside) / calls * 1e6, timed.inside / calls * 1e6


def sides_for(corpus: Any) -> dict[str, tuple[Any, TimedIndex]]:
    """Tessera's in-process search and FAISS's own Python `search`, each over a timed view of one index."""
    real = corpus.ann.index
    corpus.search(np.ones((1, DIM), np.float32), K, ef_search=EF, with_payload=False)  # caches its FAISS params
    corpus.ann.index = ours_timed = TimedIndex(real)
    raw_timed = TimedIndex(real)
    params = faiss.SearchParametersHNSW(efSearch=EF)
    python_search = type(real).search  # faiss's Python wrapper (checks, allocation), then search_c

    def raw(q: np.ndarray) -> Any:
        return python_search(raw_timed, q[None, :], K, params=params)

    def ours(q: np.ndarray) -> Any:
        return corpus.search(q[None, :], K, ef_search=EF, with_payload=False)

    return {"raw_faiss": (raw, raw_timed), "tessera": (ours, ours_timed)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, help="another commit's index/ directory, measured in the same run")
    parser.add_argument("--rounds", type=int, default=21, help="rounds; the JSON keeps the median of each figure")
    parser.add_argument("--passes", type=int, default=1, help="passes over the 1,000 queries per side and round")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "call_cost.json")
    args = parser.parse_args(argv)
    faiss.omp_set_num_threads(1)
    data, queries = clustered_vectors(N, QUERIES, DIM)  # a low intrinsic dimension, as real embeddings have
    packages = {"": load_index_package(None)}
    if args.baseline:
        packages["baseline_"] = load_index_package(args.baseline)
    result: dict[str, Any] = {
        "benchmark": "call_cost",
        "what": f"µs per call outside FAISS's C++ search (search_c), {args.passes} x {QUERIES} queries per side "
        f"and round, medians over {args.rounds} rounds; {N:,} x {DIM} HNSW32 corpus, efSearch {EF}, k {K}, one "
        "thread; call_cost_us = tessera_wrapper_us - raw_faiss_wrapper_us (FAISS's own Python search) of the "
        "same round",
    }
    per_round: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        built = {label: build(package, Path(tmp) / (label or "current"), data) for label, package in packages.items()}
        sides = {label: sides_for(corpus) for label, (_, corpus) in built.items()}
        for r in range(args.rounds):  # versions and sides take turns, the order flipping each round
            for label in list(sides)[:: 1 if r % 2 else -1]:
                measured = {}
                for side in list(sides[label])[:: 1 if r % 2 else -1]:
                    call, timed = sides[label][side]
                    measured[side] = wrapper_us(call, timed, queries, args.passes)
                samples = {
                    "raw_faiss_wrapper_us": measured["raw_faiss"][0],
                    "raw_faiss_inside_us": measured["raw_faiss"][1],
                    "tessera_wrapper_us": measured["tessera"][0],
                    "tessera_inside_us": measured["tessera"][1],
                    # Both sides of one round ran back to back: their difference cancels the machine's drift.
                    "call_cost_us": measured["tessera"][0] - measured["raw_faiss"][0],
                }
                for key, value in samples.items():
                    per_round.setdefault(f"{label}{key}", []).append(value)
        for catalog, _ in built.values():
            catalog.close()
    for key, values in per_round.items():
        result[key] = round(float(np.median(values)), 2)
    for label in packages:
        costs = np.array(per_round[f"{label}call_cost_us"])
        result[f"{label}call_cost_us_iqr"] = [round(float(v), 2) for v in np.percentile(costs, [25, 75])]
    if args.baseline:
        result["baseline"] = str(args.baseline)
        result["ratio"] = round(result["call_cost_us"] / result["baseline_call_cost_us"], 3)
    result.update(commit=git_commit(), measured_at=now_utc())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
