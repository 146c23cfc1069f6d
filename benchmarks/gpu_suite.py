"""Every GPU path in one command, for the few minutes a GPU machine is lent: one JSON of figures and bars.

    python -m benchmarks.gpu_suite              # one GPU (H200): writes benchmarks/results/gpu_suite.json, < 8 min
    python -m benchmarks.gpu_suite --dry-run    # the same code paths at tiny sizes on the CPU (CI, ~1 min)

Parts, each with its own time budget and seconds in the JSON (`--parts` runs a subset and keeps
the other parts already in --out); faiss, the longest, runs last, so a run cut short keeps the rest:
1. faiss: Tessera corpora (use_gpu on, so built indexes move to the GPU) against raw FAISS GPU
   indexes in the same run: Flat, IVF4096,Flat and IVF4096,PQ32 over 1M x 384 clustered
   vectors (benchmarks/index_bench.py's), nprobe 32: build seconds, single-query and
   batch-of-1,024 QPS, recall@10 against exact search on the CPU, ratio = raw QPS / Tessera
   QPS (bar <= 1.10) and, for exact search, the same ids as the CPU path.
2. encoders: MiniLM text and OpenCLIP ViT-B-32 (random init) text and image, throughput on the
   GPU and the CPU, vectors equal (min cosine >= 0.999).
3. micro_batching: service_bench's embed part (32 concurrent single-text Embed calls against
   `tessera serve`, batching on against off; bar >= 4x) with its in-process model ceiling.
4. batch_embed: `tessera embed` (run_embed: Parquet in, parts out) on 100,000 texts against raw
   `SentenceTransformer.encode` of the same model in the same run (bar >= 0.90).
The dry run uses the CPU everywhere (CUDA hidden), faiss CPU indexes as the "raw" side, 5,000
vectors with nlist 16, a few dozen texts, and writes benchmarks/.cache/gpu_suite_dry_run.json
(ignored by git) unless --out says otherwise. Nothing is installed at run time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.provenance import git_commit, now_utc

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "gpu_suite.json"
DRY_RUN_OUT = REPO / "benchmarks" / ".cache" / "gpu_suite_dry_run.json"
PARTS = ("encoders", "micro_batching", "batch_embed", "faiss")  # the longest last: a timeout costs least
K = 10
TOTAL_BAR_S = 480.0  # the whole suite on one H200
OVERHEAD_BAR = 1.10  # raw QPS / Tessera QPS
SAME_IDS_BAR = 0.999  # share of exact-search queries whose top-10 ids match the CPU path's
COSINE_BAR = 0.999
BATCHING_BAR = 4.0
TIE = 1e-4  # hits whose cosines differ by less than this are tied: either order is exact


@dataclass(frozen=True)
class Sizes:
    n_vectors: int
    nlist: int
    pq: str  # the compressed index's codes: PQ32 (8 bits); the dry run's PQ8x4 trains in seconds on 2 cores
    queries: int  # the batch searched at once; single-query QPS replays these one at a time
    qps_seconds: float  # length of each single-query QPS window
    batch_rounds: int  # batch searches per side, best counts
    encoder_n: int  # items per encoder on the accelerator
    encoder_cpu_n: int  # of those, embedded on the CPU too (speed and cosine)
    embed_calls: int  # single-text Embed calls per server run
    texts: int  # batch_embed texts
    text_pool: int  # distinct real sentences the texts cycle through
    budgets_s: tuple[tuple[str, float], ...]


FULL = Sizes(
    n_vectors=1_000_000,
    nlist=4096,
    pq="PQ32",
    queries=1024,
    qps_seconds=2.0,
    batch_rounds=3,
    encoder_n=2048,
    encoder_cpu_n=256,
    embed_calls=2000,
    texts=100_000,
    text_pool=10_000,
    budgets_s=(("faiss", 270.0), ("encoders", 45.0), ("micro_batching", 75.0), ("batch_embed", 60.0)),
)
DRY = Sizes(
    n_vectors=5_000,
    nlist=16,
    pq="PQ8x4",
    queries=128,
    qps_seconds=0.2,
    batch_rounds=2,
    encoder_n=8,
    encoder_cpu_n=8,
    embed_calls=32,
    texts=64,
    text_pool=64,
    budgets_s=(("faiss", 40.0), ("encoders", 30.0), ("micro_batching", 45.0), ("batch_embed", 20.0)),
)


def bar(value: float, limit: float, op: str) -> dict[str, Any]:
    met = value <= limit if op == "<=" else value >= limit
    return {"value": value, "bar": limit, "op": op, "met": bool(met)}


# ---- 1. FAISS: Tessera corpora against raw FAISS GPU indexes ---------------------------------
def same_ids_share(
    found: np.ndarray, ref_ids: np.ndarray, ref_scores: np.ndarray, xb: np.ndarray, q: np.ndarray
) -> float:
    """Share of queries whose top-k ids equal the reference's, up to ties at the k-th score."""
    same = 0
    for row, (got, want) in enumerate(zip(found, ref_ids, strict=True)):
        differ = np.array(sorted(set(got.tolist()) ^ set(want.tolist())), dtype=np.int64)
        tied = (differ >= 0).all() and (abs(xb[differ] @ q[row] - ref_scores[row, -1]) < TIE).all()
        if not len(differ) or tied:
            same += 1
    return same / len(found)


def single_qps(search: Any, queries: np.ndarray, seconds: float) -> float:
    """One query per call, replaying the queries until `seconds` have passed (at least 10 calls)."""
    search(queries[:1])  # warm-up
    calls, start = 0, time.perf_counter()
    while calls < 10 or time.perf_counter() - start < seconds:
        i = calls % len(queries)
        search(queries[i : i + 1])
        calls += 1
    return calls / (time.perf_counter() - start)


def build_raw(factory: str, xb: np.ndarray, train: np.ndarray, gpu_res: Any) -> tuple[Any, dict[str, Any]]:
    """The factory's index, trained and filled where it searches: the GPU (`gpu_res`), or the CPU in the dry run."""
    import faiss

    start = time.perf_counter()
    index = faiss.index_factory(xb.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    trained_on = "gpu" if gpu_res is not None else "cpu"
    if gpu_res is not None:
        try:
            index = faiss.index_cpu_to_gpu(gpu_res, 0, index)  # untrained: k-means runs on the GPU
        except RuntimeError:
            index.train(train)
            index, trained_on = faiss.index_cpu_to_gpu(gpu_res, 0, index), "cpu, then moved to the GPU"
    if not index.is_trained:
        index.train(train)
    index.add(xb)
    return index, {"raw_build_s": time.perf_counter() - start, "raw_trained_on": trained_on}


def build_tessera(catalog: Any, factory: str, xb: np.ndarray, step: int) -> tuple[Any, dict[str, Any]]:
    """A corpus of `xb` (ids "0".. in order, so slot i is id i) with its index built; ingest and build seconds."""
    from tessera.index.config import IndexConfig
    from tessera.index.items import Item

    start = time.perf_counter()
    corpus = catalog.create(
        "gpu-" + factory.replace(",", "-").lower(),
        space=f"vectors:{xb.shape[1]}",
        modality="vector",
        dim=xb.shape[1],
        index=IndexConfig(factory=factory, use_gpu=True),
    )
    for s in range(0, len(xb), step):
        corpus.upsert([Item(id=str(i), vector=xb[i]) for i in range(s, min(s + step, len(xb)))])
    ingest_s = time.perf_counter() - start
    corpus.wait_idle()
    if factory != "Flat" and corpus.describe()["index"]["built"] is None:
        corpus.rebuild()  # fewer vectors than FAISS advises for training (the dry run's PQ): build anyway
    index = corpus.describe()["index"]
    return corpus, {
        "tessera_upsert_batch": step,
        "tessera_build_s": time.perf_counter() - start,
        "tessera_ingest_s": ingest_s,
        "tessera_searching": index["searching"],
        "tessera_on_gpu": index["gpu"],
        "tessera_gpu_note": index["gpu_note"],
    }


def tessera_search(corpus: Any, factory: str, nprobe: int, probe: np.ndarray) -> tuple[Any, dict[str, Any]]:
    """The corpus's own search with FAISS's scores (rescore=False, as the raw side), nprobe per query.

    FAISS's GPU IVF indexes accept only SearchParametersIVF. Should the corpus's per-query nprobe
    be refused there, the refusal is recorded and nprobe is set on the corpus's GPU index instead
    (reaching one level in: `corpus.ann` is its AnnIndex), so the figures still come back.
    """
    knobs = {"nprobe": nprobe} if factory.startswith("IVF") else {}
    via: dict[str, Any] = {"tessera_nprobe_via": "search(nprobe=...)" if knobs else "", "tessera_error": None}
    try:
        # The public search re-scores compressed hits by exact cosine: the same hits, maybe in another order.
        ids = {h.id for h in corpus.search(probe[0], K, with_payload=False, **knobs)[0]}
        slots = corpus.search_slots(probe[:1], K, rescore=False, **knobs)[1][0]
        assert ids == {str(s) for s in slots}, "search and search_slots disagree"
    except RuntimeError as exc:
        if not knobs:
            raise
        import faiss

        space = faiss.GpuParameterSpace() if hasattr(faiss, "GpuParameterSpace") else faiss.ParameterSpace()
        space.set_index_parameter(corpus.ann.index, "nprobe", nprobe)
        knobs = {}
        via = {"tessera_nprobe_via": "set on the corpus's GPU index (workaround)", "tessera_error": str(exc)[-300:]}

    def search(q: np.ndarray) -> np.ndarray:
        return corpus.search_slots(q, K, rescore=False, **knobs)[1]

    search(probe[:1])
    return search, via


def faiss_row(
    catalog: Any, factory: str, xb: np.ndarray, queries: np.ndarray, reference: Any, sizes: Sizes, gpu_res: Any
) -> dict:
    """One index type, raw and through a corpus, in the same run."""
    from benchmarks.index_bench import IVF_NPROBE, best_of, raw_params, recall

    ref_scores, truth, train = reference
    row: dict[str, Any] = {"factory": factory, "n": len(xb), "dim": xb.shape[1], "queries": len(queries)}
    if factory.startswith("IVF"):
        row["nprobe"] = IVF_NPROBE
    raw, built = build_raw(factory, xb, train, gpu_res)
    row.update(built, raw_on_gpu=gpu_res is not None)
    params = raw_params(factory)

    def raw_one(q: np.ndarray) -> np.ndarray:
        return raw.search(q, K, params=params)[1]

    # Under the log's 1 GiB-per-record limit, and the first upsert past half the corpus: one index training.
    corpus, built = build_tessera(catalog, factory, xb, step=min(len(xb), 600_000))
    try:
        row.update(built)
        ours_one, via = tessera_search(corpus, factory, IVF_NPROBE, queries)
        row.update(via)
        row["raw_qps_single"] = single_qps(raw_one, queries, sizes.qps_seconds)
        row["qps_single"] = single_qps(ours_one, queries, sizes.qps_seconds)
        row["raw_qps_batch"] = len(queries) / best_of(lambda: raw_one(queries), sizes.batch_rounds)
        row["qps_batch"] = len(queries) / best_of(lambda: ours_one(queries), sizes.batch_rounds)
        raw_found, found = raw_one(queries), ours_one(queries)
    finally:
        catalog.drop(corpus.name)  # no final snapshot of a corpus about to be deleted
    row["raw_recall_at_10"] = recall(raw_found, truth)
    row["recall_at_10"] = recall(found, truth)
    row["ratio_single"] = row["raw_qps_single"] / row["qps_single"]
    row["ratio_batch"] = row["raw_qps_batch"] / row["qps_batch"]
    row["ratio_single_bar"] = bar(row["ratio_single"], OVERHEAD_BAR, "<=")
    row["ratio_batch_bar"] = bar(row["ratio_batch"], OVERHEAD_BAR, "<=")
    if factory == "Flat":
        row["raw_same_ids_as_cpu"] = same_ids_share(raw_found, truth, ref_scores, xb, queries)
        row["same_ids_as_cpu"] = same_ids_share(found, truth, ref_scores, xb, queries)
        worst = min(row["same_ids_as_cpu"], row["raw_same_ids_as_cpu"])
        row["same_ids_bar"] = bar(worst, SAME_IDS_BAR, ">=")
        row["same_ids"] = row["same_ids_bar"]["met"]
    return row


def part_faiss(sizes: Sizes, gpu: bool, budget_s: float) -> dict[str, Any]:
    import faiss

    from benchmarks.index_bench import clustered_vectors
    from tessera.index.catalog import Catalog

    started = time.perf_counter()
    xb, queries = clustered_vectors(sizes.n_vectors, sizes.queries)
    data_s = time.perf_counter() - started
    cpu_flat = faiss.IndexFlatIP(xb.shape[1])  # the CPU path of exact search: truth for recall, ids for "same ids"
    cpu_flat.add(xb)
    ref_scores, truth = cpu_flat.search(queries, K)
    del cpu_flat
    take = min(len(xb), max(100_000, 39 * sizes.nlist))  # the corpus's training sample size, for the raw side too
    train = xb[np.sort(np.random.default_rng(0).choice(len(xb), take, replace=False))]
    reference_s = time.perf_counter() - started - data_s
    gpu_res = faiss.StandardGpuResources() if gpu else None  # one for every raw index, alive as long as they are
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="gpu-suite-") as tmp, Catalog(tmp) as catalog:
        for factory in ("Flat", f"IVF{sizes.nlist},Flat", f"IVF{sizes.nlist},{sizes.pq}"):
            row_start = time.perf_counter()
            # The last row's time is the estimate for this one: skip what would end past the budget.
            if row_start - started + (rows[-1].get("seconds", 0) if rows else 0) > budget_s:
                rows.append({"factory": factory, "skipped": f"it would end past the part's {budget_s:.0f} s budget"})
                continue
            try:
                row = faiss_row(catalog, factory, xb, queries, (ref_scores, truth, train), sizes, gpu_res)
            except Exception as exc:  # one index's failure must not cost the others' figures
                traceback.print_exc()
                row = {"factory": factory, "error": f"{type(exc).__name__}: {exc}"[:500]}
            row["seconds"] = time.perf_counter() - row_start
            rows.append(row)
            print(json.dumps(row, default=float), flush=True)
    return {
        "data": "clustered-synthetic (benchmarks/index_bench.py)",
        "data_s": data_s,
        "reference_s": reference_s,
        "k": K,
        "raw": "faiss GPU index (moved to the GPU before training)" if gpu else "faiss CPU index (dry run)",
        "reference": "faiss.IndexFlatIP on the CPU: recall@10 truth and the ids exact search must match",
        "ratio_is": "raw QPS / Tessera QPS, FAISS's own scores on both sides (rescore=False)",
        "faiss": faiss.__version__,
        "faiss_gpus": faiss.get_num_gpus(),
        "rows": rows,
    }


# ---- 2. Encoders on the accelerator against the CPU ------------------------------------------
def part_encoders(sizes: Sizes, device: str) -> dict[str, Any]:
    import torch
    from PIL import Image

    from benchmarks.text_corpus import real_sentences
    from tessera.embedder import load_space

    texts = list(np.resize(np.array(real_sentences(sizes.encoder_n + 7)[7:], dtype=object), sizes.encoder_n))
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)) for _ in range(sizes.encoder_n)]
    rows = []
    for space_name, modality, inputs in (
        ("minilm", "text", texts),
        ("openclip:ViT-B-32/random", "text", texts),
        ("openclip:ViT-B-32/random", "image", images),
    ):
        row: dict[str, Any] = {
            "space": space_name,
            "modality": modality,
            "n": len(inputs),
            "cpu_n": sizes.encoder_cpu_n,
        }
        try:
            rates, vectors = {}, {}
            for side, where, items in (("device", device, inputs), ("cpu", "cpu", inputs[: sizes.encoder_cpu_n])):
                space = load_space(space_name, device=where)
                space.embed(modality, items[:2])  # warm-up: kernels, tokenizer, allocator
                start = time.perf_counter()
                vectors[side] = space.embed(modality, items)  # returns host arrays: the device work is done
                rates[side] = len(items) / (time.perf_counter() - start)
            cosine = (vectors["device"][: sizes.encoder_cpu_n] * vectors["cpu"]).sum(axis=1)
            row.update(
                {
                    "items_per_s": rates["device"],
                    "cpu_items_per_s": rates["cpu"],
                    "speedup_vs_cpu": rates["device"] / rates["cpu"],
                    "min_cosine_vs_cpu": float(cosine.min()),
                }
            )
            row["cosine_bar"] = bar(row["min_cosine_vs_cpu"], COSINE_BAR, ">=")
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"[:500]
            traceback.print_exc()
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {
        "device": device,
        "cpu_threads": torch.get_num_threads(),
        "image_input": "224x224 RGB noise (PIL)",
        "rows": rows,
    }


# ---- 3. Micro-batching in `tessera serve` ----------------------------------------------------
def part_micro_batching(sizes: Sizes) -> dict[str, Any]:
    from benchmarks.service_bench import bench_embed

    out = bench_embed(sizes.embed_calls, max_wait_ms=5.0)  # servers and the ceiling use TESSERA_DEVICE / CUDA
    return {
        "concurrent_calls": 32,
        "calls": sizes.embed_calls,
        "space": "minilm",
        **out,
        "ratio_bar": bar(out["ratio"], BATCHING_BAR, ">="),
    }


# ---- 4. Batch embedding: `tessera embed` against raw encode ----------------------------------
def part_batch_embed(sizes: Sizes, device: str) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from benchmarks.batch_embed_bench import BATCH, RATIO_BAR, _vectors
    from benchmarks.text_corpus import real_sentences
    from tessera.embed_job import EmbedOptions, run_embed
    from tessera.embedder import load_space
    from tessera.embedder.encoders.minilm import load_sentence_transformer

    pool = real_sentences(sizes.text_pool + 7)[7:]  # skip the over-length and non-English extras
    texts = [pool[i % len(pool)] for i in range(sizes.texts)]
    with tempfile.TemporaryDirectory(prefix="gpu-suite-embed-") as tmp:
        work = Path(tmp)
        pq.write_table(pa.table({"text": texts}), work / "texts.parquet")
        model = load_sentence_transformer(device)  # the very model object the space wraps
        warm = texts[: max(8, min(256, len(texts) // 8))]
        model.encode(warm, batch_size=BATCH)  # warm-up, as for tessera below
        load_space("minilm", device=device).embed("text", warm)
        start = time.perf_counter()
        raw = model.encode(texts, batch_size=BATCH, normalize_embeddings=True, convert_to_numpy=True)
        raw_s = time.perf_counter() - start
        options = EmbedOptions(work / "texts.parquet", work / "out", batch_size=BATCH, device=device)
        summary = run_embed(options, progress=False)
        ours = _vectors(work / "out")
    raw_rate = len(texts) / raw_s
    return {
        "texts": len(texts),
        "distinct_texts": len(pool),
        "batch_size": BATCH,
        "device": device,
        "raw_items_per_s": raw_rate,
        "tessera_items_per_s": summary.items_per_s,
        "tessera_seconds_with_loading": summary.seconds,
        "ratio": summary.items_per_s / raw_rate,
        "min_cosine_vs_raw": float((ours * raw).sum(axis=1).min()),
        "ratio_bar": bar(summary.items_per_s / raw_rate, RATIO_BAR, ">="),
        "baseline": "SentenceTransformer.encode, the same model object, same batch size",
    }


# ---- the suite -------------------------------------------------------------------------------
def collect_bars(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every bar in the parts, flattened: {part, row, name, value, bar, op, met}."""
    out = []
    for part, body in results["parts"].items():
        for row in body.get("rows", [body]):
            label = row.get("factory") or (f"{row['space']}:{row['modality']}" if "rows" in body else "")
            for key, value in row.items():
                if key.endswith("_bar") and isinstance(value, dict):
                    out.append({"part": part, "row": label, "name": key[: -len("_bar")], **value})
    if not results["dry_run"]:
        out.append({"part": "suite", "row": "", "name": "seconds", **bar(results["seconds"], TOTAL_BAR_S, "<=")})
    return out


def machine() -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available()
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": cuda,
        "device_name": torch.cuda.get_device_name(0) if cuda else None,
    }


def run(parts: list[str], dry_run: bool, out: Path) -> dict[str, Any]:
    sizes = DRY if dry_run else FULL
    device = "cpu" if dry_run else "cuda"
    budgets = dict(sizes.budgets_s)
    import tessera.embedder.encoders  # noqa: F401  (installs the torchvision shim before transformers)

    earlier = json.loads(out.read_text()) if out.exists() else {}
    kept = {k: v for k, v in earlier.get("parts", {}).items() if k not in parts and earlier.get("dry_run") == dry_run}
    results: dict[str, Any] = {
        "benchmark": "gpu_suite",
        "dry_run": dry_run,
        "device": device,
        "machine": machine(),
        "sizes": asdict(sizes),
        "commit": git_commit(),
        "measured_at": now_utc(),
        "parts": kept,
    }
    suite_start = time.perf_counter()
    runners = {
        "faiss": lambda: part_faiss(sizes, gpu=not dry_run, budget_s=budgets["faiss"]),
        "encoders": lambda: part_encoders(sizes, device),
        "micro_batching": lambda: part_micro_batching(sizes),
        "batch_embed": lambda: part_batch_embed(sizes, device),
    }
    for part in parts:
        print(f"--- {part} (budget {budgets[part]:.0f} s)", flush=True)
        start = time.perf_counter()
        try:
            body = runners[part]()
            body["error"] = None
        except Exception as exc:  # the other parts still run, and the file says what broke
            traceback.print_exc()
            body = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        seconds = time.perf_counter() - start
        results["parts"][part] = {
            **body,
            "seconds": seconds,
            "budget_s": budgets[part],
            "within_budget": seconds <= budgets[part],
            "commit": results["commit"],
            "measured_at": now_utc(),
        }
        results["seconds"] = time.perf_counter() - suite_start
        results["bars"] = collect_bars(results)
        out.parent.mkdir(parents=True, exist_ok=True)
        # After every part: a run cut short keeps what it measured.
        out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (CUDA hidden), for CI")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="parts to run (default: all)")
    parser.add_argument(
        "--out",
        type=Path,
        help=f"JSON to write (default: {RESULTS.relative_to(REPO)}; dry run: {DRY_RUN_OUT.relative_to(REPO)})",
    )
    args = parser.parse_args(argv)
    if args.dry_run:
        # Before torch or faiss is imported: the dry run is the CPU path even on a GPU machine.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        os.environ["TESSERA_DEVICE"] = "cpu"
    else:
        import faiss
        import torch

        missing = [] if torch.cuda.is_available() else ["torch sees no CUDA device"]
        if faiss.get_num_gpus() == 0:
            missing.append('faiss sees no GPU (the GPU install: pip install -e ".[gpu,dev]")')
        if missing:
            print("gpu_suite: " + "; ".join(missing) + ". On a machine without a GPU run --dry-run.", file=sys.stderr)
            return 2
    out = args.out or (DRY_RUN_OUT if args.dry_run else RESULTS)
    results = run(args.parts, args.dry_run, out)
    failed = [p for p, body in results["parts"].items() if body.get("error")]
    failed += [
        f"{p}/{r.get('factory') or r.get('space', '') + ':' + r.get('modality', '')}"
        for p, b in results["parts"].items()
        for r in b.get("rows", [])
        if r.get("error")
    ]
    unmet = [f"{b['part']}/{b['row']}/{b['name']}" for b in results["bars"] if not b["met"]]
    print(f"wrote {out} in {results['seconds']:.1f} s; errors: {failed or 'none'}; bars not met: {unmet or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
