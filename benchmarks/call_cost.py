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


def per_call_us(fn: Any, queries: np.ndarray, seconds: float) -> float:
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for q in queries:
            fn(q)
        calls += len(queries)
    return (time.perf_counter() - start) / calls * 1e6


def measure(sides: dict[str, Any], queries: np.ndarray, rounds: int, seconds: float) -> dict[str, float]:
    """Best (lowest) µs per call of each side over `rounds`, the sides rotating which goes first."""
    best: dict[str, float] = {}
    names = list(sides)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            best[name] = min(best.get(name, float("inf")), per_call_us(sides[name], queries, seconds))
    return best


def sides_for(label: str, corpus: Any) -> dict[str, Any]:
    index = corpus.ann.index
    params = faiss.SearchParametersHNSW(efSearch=EF)

    def raw(q: np.ndarray) -> Any:
        return index.search(q[None, :], K, params=params)

    def ours(q: np.ndarray) -> Any:
        return corpus.search(q[None, :], K, ef_search=EF, with_payload=False)

    return {f"{label}raw_faiss": raw, f"{label}tessera": ours}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, help="another commit's index/ directory, measured in the same run")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=1.5, help="length of each timed window")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "call_cost.json")
    args = parser.parse_args(argv)
    faiss.omp_set_num_threads(1)
    data, queries = clustered_vectors(N, QUERIES, DIM)  # a low intrinsic dimension, as real embeddings have
    packages = {"": load_index_package(None)}
    if args.baseline:
        packages["baseline_"] = load_index_package(args.baseline)
    sides: dict[str, Any] = {}
    open_catalogs = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, package in packages.items():
            catalog, corpus = build(package, Path(tmp) / (label or "current"), data)
            open_catalogs.append(catalog)
            sides.update(sides_for(label, corpus))
        best = measure(sides, queries, args.rounds, args.seconds)
        for catalog in open_catalogs:
            catalog.close()
    result: dict[str, Any] = {
        "benchmark": "call_cost",
        "what": f"µs per call, {N:,} x {DIM} HNSW32 corpus, efSearch {EF}, k {K}, one thread, hot cache; "
        "call_cost_us = tessera_us - raw_faiss_us (FAISS search on the corpus's own index)",
        **{f"{name}_us": round(us, 2) for name, us in best.items()},
    }
    for label in packages:
        result[f"{label}call_cost_us"] = round(best[f"{label}tessera"] - best[f"{label}raw_faiss"], 2)
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
