"""Tessera against the systems people pick instead, on the same vectors, machine and run.

Systems (benchmarks/peer_systems.py): Tessera in-process and over gRPC (HNSW, IVF and
exact), raw FAISS, hnswlib, Milvus Lite 3.x (a pure-Python engine over FAISS), Milvus
Lite 2.5.1 (Milvus's C++ engine, in a venv of its own: IVF_FLAT and FLAT), Chroma
(embedded), Qdrant (qdrant-client local mode) and LanceDB. Each runs in a process of
its own, so peak RSS is its own (the whole process tree: Milvus Lite and `tessera serve`
run a server process beside it).
A system that is missing or fails is reported with its exact error.

Per dataset and system: ingest throughput, build time (until searches hit the
index), peak RSS, size on disk, a QPS vs recall@10 curve over the system's
search knob (one query per call, one client), QPS at recall@10 >= 0.95, and
p50/p99 latency with 1 and 8 concurrent clients at that operating point.
Queries are held out of the indexed vectors; ground truth is exact search.

    python -m benchmarks.peers                                  # 100k + 1M synthetic, 100k MiniLM
    python -m benchmarks.peers --datasets synthetic-1m --merge  # add or redo one dataset
    python -m benchmarks.peers --datasets minilm-100k --systems tessera-grpc --merge  # redo one system
    python -m benchmarks.peers --smoke                          # 10k vectors, every system, a few minutes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from tqdm.auto import tqdm

from benchmarks.peer_systems import EF_CONSTRUCTION, SYSTEMS, M, disk_mb
from benchmarks.provenance import git_commit, now_utc

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parents[1]
K = 10
RECALL_BAR = 0.95
# "Equal recall" allows this much less: exact search over real sentences scores 0.9999, not 1.0, against
# ground truth from the same vectors (near-duplicate sentences tie, and normalising the query reorders ties).
RECALL_TIE = 0.001
N_QUERIES = 1000
CLIENTS = 8
PASSES = 3
POINT_SECONDS = 15.0  # one curve point stops early after this long (exact scans of 1M vectors)
DATASETS = ("synthetic-100k", "synthetic-1m", "minilm-100k")
SMOKE_DATASET = "synthetic-10k"


@dataclass(frozen=True)
class Settings:
    queries: int = N_QUERIES  # held-out queries per dataset
    timeout_s: float = 3600.0  # one system on one dataset
    point_seconds: float = POINT_SECONDS  # a curve point stops early after this long
    knob_step: int = 1  # every knob value (1) or every other (2, the smoke run)
    ef_construction: int = EF_CONSTRUCTION  # every HNSW's build beam


# 120 s a system: under a loaded 2-core machine qdrant-local alone passed 60 s (its pure-Python ingest).
SMOKE = Settings(queries=100, timeout_s=120.0, point_seconds=0.5, knob_step=2)


# ---- data ---------------------------------------------------------------------------------
def load_dataset(name: str, n_queries: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(indexed vectors, held-out queries, what they are)."""
    from benchmarks.index_bench import clustered_vectors, minilm_vectors

    kind, size = name.rsplit("-", 1)
    n = int(size[:-1]) * (1000 if size.endswith("k") else 1_000_000)
    if kind == "synthetic":
        xb, xq = clustered_vectors(n, n_queries, seed=0)
        return xb, xq, "clustered synthetic, 384-d, seed 0 (benchmarks.index_bench.clustered_vectors)"
    if kind == "minilm":
        xb, xq = minilm_vectors(n, n_queries)
        what = (
            "all-MiniLM-L6-v2 embeddings of distinct real sentences from the docstrings of the Python "
            "standard library and the installed packages (benchmarks.text_corpus.real_sentences)"
        )
        return xb, xq, what
    raise ValueError(f"unknown dataset {name!r}; pick from {', '.join(DATASETS)} or synthetic-<N>k")


def ground_truth(xb: np.ndarray, xq: np.ndarray) -> np.ndarray:
    from tessera.index.exact import exact_topk

    return exact_topk(xb, xq, K)[1]


# ---- one system, in its own process --------------------------------------------------------
def tree_rss_mb(proc: psutil.Process) -> float:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    hits = [len(set(f[f >= 0].tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits)) / truth.shape[1]


def sweep_point(system: Any, xq: np.ndarray, truth: np.ndarray, max_seconds: float) -> dict[str, Any]:
    """One client, one query per call, in order; the fastest of up to PASSES passes over the queries.

    A pass stops early once `max_seconds` have gone (exact scans of a million vectors); a
    2-core VM shared with other work swings by tens of percent, hence the best pass.
    """
    system.search(xq[0], K)  # warm-up
    best: dict[str, Any] | None = None
    spent = 0.0
    for _ in range(PASSES):
        found, latencies = [], []
        start = time.perf_counter()
        for q in xq:
            t0 = time.perf_counter()
            found.append(system.search(q, K))
            latencies.append(time.perf_counter() - t0)
            if t0 - start > max_seconds and len(found) >= 20:
                break
        elapsed = time.perf_counter() - start
        spent += elapsed
        if best is None or len(found) / elapsed > best["qps"]:
            lat = np.array(latencies)
            best = {
                "knob_value": system.value,
                "recall_at_10": recall_at_k(np.array(found), truth[: len(found)]),
                "qps": len(found) / elapsed,
                "p50_ms": float(np.percentile(lat, 50) * 1e3),
                "p99_ms": float(np.percentile(lat, 99) * 1e3),
                "queries": len(found),
            }
        if spent > max_seconds:
            break
    return best


def concurrent_point(system: Any, xq: np.ndarray, clients: int, max_seconds: float) -> dict[str, Any]:
    """`clients` threads each send one query at a time; QPS over the run, latency per call."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    deadline = time.perf_counter() + max_seconds

    def work(c: int) -> None:
        for q in xq[c::clients]:
            t0 = time.perf_counter()
            system.search(q, K)
            latencies[c].append(time.perf_counter() - t0)
            if t0 > deadline and len(latencies[c]) >= 5:
                return

    start = time.perf_counter()
    threads = [threading.Thread(target=work, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    lat = np.concatenate([np.array(x) for x in latencies])
    return {
        "qps": len(lat) / elapsed,
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "p99_ms": float(np.percentile(lat, 99) * 1e3),
        "queries": len(lat),
    }


def operating_point(curve: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest point at recall@10 >= the bar; the most accurate one if none reaches it."""
    good = [p for p in curve if p["recall_at_10"] >= RECALL_BAR]
    # Below the bar: the most accurate point, and among equally accurate ones the fastest.
    return max(good, key=lambda p: p["qps"]) if good else max(curve, key=lambda p: (p["recall_at_10"], p["qps"]))


def run_worker(system_name: str, data_dir: Path, out: Path, settings: Settings) -> None:
    xb = np.load(data_dir / "xb.npy")
    xq = np.load(data_dir / "xq.npy")
    truth = np.load(data_dir / "truth.npy")
    root = Path(tempfile.mkdtemp(prefix=f"peers-{system_name}-", dir=data_dir))
    system = SYSTEMS[system_name](root, xb.shape[1], settings.ef_construction)
    me = psutil.Process()
    row: dict[str, Any] = {"baseline_rss_mb": tree_rss_mb(me)}
    try:
        start = time.perf_counter()
        system.ingest(xb)
        row["ingest_s"] = time.perf_counter() - start
        system.build()
        row["build_s"] = time.perf_counter() - start
        row["ingest_vectors_per_s"] = len(xb) / row["ingest_s"]
        _single_threaded_faiss()  # one query per call: FAISS's own threads would only contend
        curve = []
        extra = list(system.knob_extra)
        for value in system.knob_values[:: settings.knob_step]:
            system.set_knob(value)
            curve.append(sweep_point(system, xq, truth, settings.point_seconds))
        while extra and max(p["recall_at_10"] for p in curve) < RECALL_BAR:
            system.set_knob(extra.pop(0))
            curve.append(sweep_point(system, xq, truth, settings.point_seconds))
        best = operating_point(curve)
        system.set_knob(best["knob_value"])
        row.update(
            knob=system.knob,
            curve=curve,
            knob_at_op=best["knob_value"],
            recall_at_10=best["recall_at_10"],
            qps_at_recall_95=best["qps"] if best["recall_at_10"] >= RECALL_BAR else None,
            qps_1c=best["qps"],
            p50_ms_1c=best["p50_ms"],
            p99_ms_1c=best["p99_ms"],
        )
        if system.thread_safe:
            many = concurrent_point(system, xq, CLIENTS, settings.point_seconds)
            row.update(qps_8c=many["qps"], p50_ms_8c=many["p50_ms"], p99_ms_8c=many["p99_ms"])
        row["disk_mb"] = disk_mb(system.persist())
        row.update(config=system.config(), version=system.version())
    finally:
        system.close()
    out.write_text(json.dumps(row))


def _single_threaded_faiss() -> None:
    if "faiss" in sys.modules:
        sys.modules["faiss"].omp_set_num_threads(1)


def failure(returncode: int, stderr: str, peak_rss_mb: float) -> str:
    """The exact error: the exception the worker printed, or the signal that killed it."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    if returncode < 0:
        total = psutil.virtual_memory().total / 2**20
        why = f"killed by signal {-returncode}"
        if -returncode == 9 and peak_rss_mb > 0.8 * total:
            why += f" at {peak_rss_mb:,.0f} MB RSS of {total:,.0f} MB: the kernel's out-of-memory killer"
        return why
    # The exception line of the traceback, not the caret lines around it.
    errors = [line for line in lines if not set(line) <= set("^~ ")]
    return errors[-1] if errors else f"exit code {returncode}"


def measure(system: str, data_dir: Path, settings: Settings) -> dict[str, Any]:
    """Run one system's worker; its peak RSS is polled from here, over its whole process tree."""
    out = data_dir / f"{system}.json"
    out.unlink(missing_ok=True)
    try:
        SYSTEMS[system].prepare()  # e.g. the side venv of Milvus Lite 2.5.1: once, outside timing and timeout
    except Exception as exc:
        return {"system": system, "status": "error", "error": f"prepare: {type(exc).__name__}: {exc}"}
    command = [
        sys.executable,
        "-m",
        "benchmarks.peers",
        "--worker",
        system,
        "--data-dir",
        str(data_dir),
        "--point-seconds",
        str(settings.point_seconds),
        "--knob-step",
        str(settings.knob_step),
        "--ef-construction",
        str(settings.ef_construction),
    ]
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watched, peak = psutil.Process(proc.pid), 0.0
    stderr_chunks: list[str] = []
    reader = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()), daemon=True)
    reader.start()
    while proc.poll() is None:
        try:
            peak = max(peak, tree_rss_mb(watched))
        except psutil.Error:
            pass
        if time.perf_counter() - started > settings.timeout_s:
            for child in watched.children(recursive=True):
                child.kill()
            proc.kill()
            proc.wait()
            return {"system": system, "status": "error", "error": f"did not finish within {settings.timeout_s:.0f} s"}
        time.sleep(0.05)
    reader.join(timeout=10)
    wall = time.perf_counter() - started
    if proc.returncode != 0 or not out.exists():
        return {
            "system": system,
            "status": "error",
            "error": failure(proc.returncode, "".join(stderr_chunks), peak),
            "stderr_tail": "".join(stderr_chunks).strip().splitlines()[-15:],
            "peak_rss_mb": peak,
            "wall_s": wall,
        }
    row = json.loads(out.read_text())
    return {"system": system, "status": "ok", "peak_rss_mb": peak, "wall_s": wall, **row}


# ---- the comparison ------------------------------------------------------------------------
def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's two comparisons, per dataset: in-process against the best peer, gRPC against two."""
    ok = {r["system"]: r for r in rows if r["status"] == "ok"}

    def qps(name: str) -> float | None:
        return ok[name].get("qps_at_recall_95") if name in ok else None

    peers = {name: qps(name) for name in ok if not name.startswith("tessera")}
    reaching = {name: value for name, value in peers.items() if value is not None}
    best_peer = max(reaching, key=reaching.get) if reaching else None
    out: dict[str, Any] = {
        "tessera_qps_at_recall_95": qps("tessera"),
        "best_peer": best_peer,
        "best_peer_qps_at_recall_95": reaching.get(best_peer) if best_peer else None,
        "peers_below_recall_95": sorted(set(peers) - set(reaching)),
        "tessera_grpc_qps_at_recall_95": qps("tessera-grpc"),
    }
    if out["tessera_qps_at_recall_95"] and best_peer:
        out["ratio"] = out["tessera_qps_at_recall_95"] / reaching[best_peer]
        out["tessera_at_least_best_peer"] = out["ratio"] >= 1.0
    for peer in ("milvus-lite", "milvus-lite-2.5.1-ivf", "qdrant-local"):
        if out["tessera_grpc_qps_at_recall_95"] and qps(peer):
            out[f"grpc_ratio_vs_{peer}"] = out["tessera_grpc_qps_at_recall_95"] / qps(peer)
    # At the recall bar, each side's fastest configuration over a server: for Milvus Lite 2.5.1 that is FLAT
    # wherever its IVF_FLAT stays under the bar. 8 clients were measured at those same operating points.
    ours_best = max((qps(n) or 0.0, n) for n in ("tessera-grpc", "tessera-grpc-ivf", "tessera-grpc-flat"))
    theirs_best = max((qps(n) or 0.0, n) for n in ("milvus-lite-2.5.1-ivf", "milvus-lite-2.5.1-flat"))
    if ours_best[0] and theirs_best[0]:
        ours_row, theirs_row = ok[ours_best[1]], ok[theirs_best[1]]
        out["at_recall_95_vs_milvus_lite_2.5.1"] = {
            "tessera": f"{ours_best[1]} {ours_row['knob']}={ours_row['knob_at_op']}",
            "milvus": f"{theirs_best[1]} {theirs_row['knob']}={theirs_row['knob_at_op']}",
            "tessera_qps_1c": ours_best[0],
            "milvus_qps_1c": theirs_best[0],
            "ratio_1c": ours_best[0] / theirs_best[0],
            "tessera_qps_8c": ours_row.get("qps_8c"),
            "milvus_qps_8c": theirs_row.get("qps_8c"),
            "ratio_8c": ours_row["qps_8c"] / theirs_row["qps_8c"]
            if ours_row.get("qps_8c") and theirs_row.get("qps_8c")
            else None,
        }
    # Like for like with Milvus's C++ engine: the index types its local mode has, both over a server.
    for kind, (ours, theirs) in LIKE_FOR_LIKE.items():
        if ours in ok and theirs in ok:
            out[f"{kind}_vs_milvus_lite_2.5.1"] = like_for_like(ok[ours], ok[theirs])
    return out


LIKE_FOR_LIKE = {
    "ivf": ("tessera-grpc-ivf", "milvus-lite-2.5.1-ivf"),  # IVF<nlist>,Flat against IVF_FLAT, same nlist/nprobe sweep
    "flat": ("tessera-grpc-flat", "milvus-lite-2.5.1-flat"),  # exact search against FLAT
}


def like_for_like(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """Tessera against Milvus Lite 2.5.1 at equal recall@10, 1 and 8 clients.

    One client: Milvus Lite at the recall of its operating point (fastest at recall >= the bar, else
    its most accurate) and at its fastest curve point with that recall; Tessera at its fastest curve
    point with at least that recall. Eight clients were measured at each one's own operating point;
    Tessera's is at recall >= the bar, so where Milvus Lite stays below it the eight-client ratio
    gives Tessera the harder recall.
    """
    recall = theirs["recall_at_10"]
    matched = [p for p in ours["curve"] if p["recall_at_10"] >= recall - RECALL_TIE]
    theirs_best = max((p for p in theirs["curve"] if p["recall_at_10"] >= recall), key=lambda p: p["qps"])
    out: dict[str, Any] = {"milvus_knob": theirs_best["knob_value"], "milvus_recall_at_10": recall}
    if matched:
        best = max(matched, key=lambda p: p["qps"])
        out.update(
            tessera_knob_1c=best["knob_value"],
            tessera_recall_at_10_1c=best["recall_at_10"],
            tessera_qps_1c=best["qps"],
            milvus_qps_1c=theirs_best["qps"],
            ratio_1c=best["qps"] / theirs_best["qps"],
        )
    if ours.get("qps_8c") and theirs.get("qps_8c") and ours["recall_at_10"] >= recall - RECALL_TIE:
        out.update(
            tessera_knob_8c=ours["knob_at_op"],
            tessera_recall_at_10_8c=ours["recall_at_10"],
            tessera_qps_8c=ours["qps_8c"],
            milvus_qps_8c=theirs["qps_8c"],
            ratio_8c=ours["qps_8c"] / theirs["qps_8c"],
        )
    return out


def merge_systems(earlier: dict[str, Any], fresh: dict[str, Any]) -> dict[str, Any]:
    """`fresh` re-ran some systems of `earlier`'s dataset: keep the others' rows, each with its own commit."""
    if earlier["n"] != fresh["n"] or earlier["hnsw_ef_construction"] != fresh["hnsw_ef_construction"]:
        raise SystemExit(f"{fresh['dataset']}: the earlier results used other settings; re-run every system")
    redone = {r["system"] for r in fresh["systems"]}
    kept = [
        {"commit": earlier.get("commit", "?"), "measured_at": earlier.get("measured_at", "?"), **r}
        for r in earlier["systems"]
        if r["system"] not in redone
    ]
    order = {name: i for i, name in enumerate(SYSTEMS)}
    rows = sorted([*kept, *fresh["systems"]], key=lambda r: order.get(r["system"], len(order)))
    merged = {**earlier, "systems": rows, "summary": summarise(rows)}
    merged["reruns"] = [
        *earlier.get("reruns", []),
        {"systems": sorted(redone), "commit": fresh["commit"], "measured_at": fresh["measured_at"]},
    ]
    return merged


def run_dataset(name: str, systems: list[str], settings: Settings) -> dict[str, Any]:
    xb, xq, what = load_dataset(name, settings.queries)
    with tempfile.TemporaryDirectory(prefix="tessera-peers-") as tmp:
        data_dir = Path(tmp)
        np.save(data_dir / "xb.npy", xb)
        np.save(data_dir / "xq.npy", xq)
        np.save(data_dir / "truth.npy", ground_truth(xb, xq))
        rows = []
        for system in (bar := tqdm(systems, desc=name, unit="system")):
            bar.set_postfix_str(system)
            row = measure(system, data_dir, settings)
            row["commit"], row["measured_at"] = git_commit(), now_utc()
            rows.append(row)
            shown = row.get("qps_at_recall_95") or row.get("error", "")[:60]
            tqdm.write(f"  {name} {system}: {row['status']} {shown}")
    return {
        "dataset": name,
        "data": what,
        "n": len(xb),
        "dim": xb.shape[1],
        "queries": len(xq),
        "commit": git_commit(),
        "measured_at": now_utc(),
        "hnsw_m": M,
        "hnsw_ef_construction": settings.ef_construction,
        "systems": rows,
        "summary": summarise(rows),
    }


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = results["datasets"]
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.8), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for row in dataset["systems"]:
            if row["status"] != "ok":
                continue
            curve = sorted(row["curve"], key=lambda p: p["recall_at_10"])
            style = {"linewidth": 2.5} if row["system"].startswith("tessera") else {"linewidth": 1.2}
            # One colour per system across panels, whichever systems a panel lacks.
            style["color"] = f"C{list(SYSTEMS).index(row['system']) % 10}" if row["system"] in SYSTEMS else None
            ax.plot(
                [p["recall_at_10"] for p in curve],
                [p["qps"] for p in curve],
                marker="o",
                markersize=3 if len(curve) > 1 else 7,  # a system without a knob is one point
                label=row["system"],
                **style,
            )
        ax.axvline(RECALL_BAR, color="grey", linestyle=":", linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel("recall@10")
        ax.set_ylabel("queries/s (1 client, 1 query per call)")
        ax.set_title(f"{dataset['dataset']}: {dataset['n']:,} x {dataset['dim']}-d")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _num(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    """The README's tables, from a results file: one per dataset, then the comparisons."""
    lines = []
    for dataset in results["datasets"]:
        lines += [
            f"**{dataset['dataset']}**: {dataset['n']:,} vectors, {dataset['queries']:,} held-out queries; "
            f"HNSW M={dataset['hnsw_m']}, efConstruction={dataset['hnsw_ef_construction']}; "
            f"commit {dataset.get('commit', '?')}, {dataset.get('measured_at', '?')}."
            + "".join(
                f" Re-run: {', '.join(r['systems'])} at commit {r['commit']}, {r['measured_at']}."
                for r in dataset.get("reruns", [])
            ),
            "",
            "| system | ingest vec/s | searchable after s | peak RSS MB | disk MB | knob at op. point | recall@10 "
            "| QPS at recall ≥ 0.95 | p50 / p99 ms, 1 client | QPS, 8 clients | p50 / p99 ms, 8 clients |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for row in dataset["systems"]:
            if row["status"] != "ok":
                lines.append(f"| {row['system']} | failed: `{row['error'].replace('|', '/')}` |" + " |" * 9)
                continue
            lines.append(
                f"| {row['system']} | {_num(row['ingest_vectors_per_s'])} | {_num(row['build_s'], 1)} "
                f"| {_num(row['peak_rss_mb'])} | {_num(row['disk_mb'])} | {row['knob']}={row['knob_at_op']} "
                f"| {row['recall_at_10']:.3f} | {_num(row['qps_at_recall_95'])} "
                f"| {row['p50_ms_1c']:.2f} / {row['p99_ms_1c']:.2f} | {_num(row.get('qps_8c'))} "
                f"| {_num(row.get('p50_ms_8c'), 2)} / {_num(row.get('p99_ms_8c'), 2)} |"
            )
        summary = dataset["summary"]
        lines += ["", f"Summary: `{json.dumps(summary)}`", ""]
    return "\n".join([*lines, *headline_tables(results["datasets"])])


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"**{value:.2f}×**"


def headline_tables(datasets: list[dict[str, Any]]) -> list[str]:
    """The comparisons the README leads with: in-process against the best peer and raw FAISS, then
    over gRPC against Milvus's C++ engine (Milvus Lite 2.5.1) like for like, then against the rest."""
    lines = [
        "In-process, QPS at recall@10 ≥ 0.95, one client:",
        "",
        "| dataset | Tessera in-process | best peer | Tessera / best peer | raw FAISS | Tessera / raw FAISS |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for dataset in datasets:
        s, rows = dataset["summary"], {r["system"]: r for r in dataset["systems"] if r["status"] == "ok"}
        faiss_qps = rows.get("faiss", {}).get("qps_at_recall_95")
        ours = s.get("tessera_qps_at_recall_95")
        lines.append(
            f"| {dataset['dataset']} | {_num(ours)} | {s.get('best_peer') or '–'} "
            f"{_num(s.get('best_peer_qps_at_recall_95'))} | {_ratio(s.get('ratio'))} | {_num(faiss_qps)} "
            f"| {_ratio(ours / faiss_qps if ours and faiss_qps else None)} |"
        )
    lines += [
        "",
        "Over a server, against Milvus's C++ engine at recall@10 ≥ 0.95: each side's fastest configuration "
        "(any index it has) at that recall; 8 clients at the same operating points:",
        "",
        "| dataset | Tessera over gRPC | Milvus Lite 2.5.1 | QPS 1 client, Tessera / Milvus | ratio "
        "| QPS 8 clients, Tessera / Milvus | ratio |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for dataset in datasets:
        v = dataset["summary"].get("at_recall_95_vs_milvus_lite_2.5.1")
        if v:
            lines.append(
                f"| {dataset['dataset']} | {v['tessera']} | {v['milvus']} "
                f"| {_num(v['tessera_qps_1c'])} / {_num(v['milvus_qps_1c'])} | {_ratio(v['ratio_1c'])} "
                f"| {_num(v['tessera_qps_8c'])} / {_num(v['milvus_qps_8c'])} | {_ratio(v['ratio_8c'])} |"
            )
    lines += [
        "",
        "Over a server, against Milvus's C++ engine (Milvus Lite 2.5.1) at equal recall@10: Tessera's curve point "
        "with at least Milvus's recall at its operating point (1 client); each at its own operating point (8 clients):",
        "",
        "| dataset | index (Tessera / Milvus Lite 2.5.1) | Milvus recall@10 | Tessera recall@10 "
        "| QPS 1 client, Tessera / Milvus | ratio | QPS 8 clients, Tessera / Milvus | ratio |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    names = {"ivf": "`IVF<nlist>,Flat` / `IVF_FLAT`", "flat": "exact / `FLAT`"}
    for dataset in datasets:
        for kind, name in names.items():
            v = dataset["summary"].get(f"{kind}_vs_milvus_lite_2.5.1")
            if not v:
                continue
            lines.append(
                f"| {dataset['dataset']} | {name} ({v.get('tessera_knob_1c', '–')} / {v['milvus_knob']}) "
                f"| {v['milvus_recall_at_10']:.4f} | {_num(v.get('tessera_recall_at_10_1c'), 4)} "
                f"| {_num(v.get('tessera_qps_1c'))} / {_num(v.get('milvus_qps_1c'))} | {_ratio(v.get('ratio_1c'))} "
                f"| {_num(v.get('tessera_qps_8c'))} / {_num(v.get('milvus_qps_8c'))} | {_ratio(v.get('ratio_8c'))} |"
            )
    lines += [
        "",
        "Over a server with HNSW, QPS at recall@10 ≥ 0.95, one client (Milvus Lite 3.x is a pure-Python engine "
        "over FAISS, Qdrant local a numpy scan):",
        "",
        "| dataset | Tessera over gRPC | Milvus Lite 3.x | gRPC / Milvus Lite 3.x | Qdrant local "
        "| gRPC / Qdrant local |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for dataset in datasets:
        s, rows = dataset["summary"], {r["system"]: r for r in dataset["systems"] if r["status"] == "ok"}
        lines.append(
            f"| {dataset['dataset']} | {_num(s.get('tessera_grpc_qps_at_recall_95'))} "
            f"| {_num(rows.get('milvus-lite', {}).get('qps_at_recall_95'))} "
            f"| {_ratio(s.get('grpc_ratio_vs_milvus-lite'))} "
            f"| {_num(rows.get('qdrant-local', {}).get('qps_at_recall_95'))} "
            f"| {_ratio(s.get('grpc_ratio_vs_qdrant-local'))} |"
        )
    return lines


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.peers",
        description="Tessera (in-process and over gRPC) against raw FAISS, hnswlib, Milvus Lite, Chroma, "
        "Qdrant local and LanceDB on the same vectors: ingest, build, RSS, disk, recall@10 vs QPS, latency.",
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=list(DATASETS),
        help=f"any of {', '.join(DATASETS)}, or synthetic-<N>k (default: all three)",
    )
    parser.add_argument(
        "--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS), help="systems to run (default: all)"
    )
    parser.add_argument("--queries", type=int, default=N_QUERIES, help="held-out queries per dataset")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds one system may take on one dataset")
    parser.add_argument(
        "--point-seconds",
        type=float,
        default=POINT_SECONDS,
        help="a curve point stops after this many seconds even if queries are left",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"{SMOKE_DATASET}, {SMOKE.queries} queries, every other knob value, short points: "
        "checks every system runs (< 2 min)",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: benchmarks/results/peers.json)")
    parser.add_argument("--plot", type=Path, default=None, help="PNG path (default: next to the JSON)")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other datasets already in --out; with --systems, also the other systems' rows",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="redraw the plot and print the Markdown tables of --out (or the default results), then exit",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--knob-step", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument(
        "--ef-construction",
        type=int,
        default=EF_CONSTRUCTION,
        help=f"build beam of every HNSW graph (default {EF_CONSTRUCTION})",
    )
    args = parser.parse_args(argv)

    if args.report:
        out = args.out or RESULTS / "peers.json"
        results = json.loads(out.read_text())
        plot(results, args.plot or out.with_suffix(".png"))
        print(markdown(results))
        return 0
    if args.worker:
        out = args.data_dir / f"{args.worker}.json"
        worker = Settings(
            point_seconds=args.point_seconds, knob_step=args.knob_step, ef_construction=args.ef_construction
        )
        run_worker(args.worker, args.data_dir, out, worker)
        return 0
    if args.smoke:
        args.datasets, settings = [SMOKE_DATASET], SMOKE
    else:
        settings = Settings(
            queries=args.queries,
            timeout_s=args.timeout,
            point_seconds=args.point_seconds,
            ef_construction=args.ef_construction,
        )
    out = args.out or RESULTS / ("peers_smoke.json" if args.smoke else "peers.json")
    earlier = json.loads(out.read_text())["datasets"] if args.merge and out.exists() else []
    results: dict[str, Any] = {
        "benchmark": "peers",
        "machine": machine(),
        "k": K,
        "recall_bar": RECALL_BAR,
        "clients_concurrent": CLIENTS,
        "qps_is": "one query per call; curve and qps_at_recall_95 with 1 client, qps_8c with 8 client threads",
        "qps_at_recall_95_is": "the highest QPS among a system's curve points with recall_at_10 >= 0.95",
        "peak_rss_mb_is": "peak RSS of the system's whole process tree (data, index and any server process)",
        # Every earlier dataset stays until its fresh one replaces it: an interrupted run loses none.
        "datasets": list(earlier),
    }
    previous = {d["dataset"]: d for d in earlier}
    partial = args.merge and set(args.systems) != set(SYSTEMS)
    for name in args.datasets:
        fresh = run_dataset(name, args.systems, settings)
        done = merge_systems(previous[name], fresh) if partial and name in previous else fresh
        results["datasets"] = [d for d in results["datasets"] if d["dataset"] != name] + [done]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")  # partial results survive a later failure
    order = {name: i for i, name in enumerate([*DATASETS, SMOKE_DATASET])}
    results["datasets"].sort(key=lambda d: order.get(d["dataset"], len(order)))
    out.write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.plot or out.with_suffix(".png"))
    print(f"wrote {out} and {(args.plot or out.with_suffix('.png'))}")
    for dataset in results["datasets"]:
        print(dataset["dataset"], json.dumps(dataset["summary"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
