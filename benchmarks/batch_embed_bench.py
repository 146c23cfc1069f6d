"""Throughput and memory of `tessera embed`, against a raw sentence-transformers loop in the same run.

    python -m benchmarks.batch_embed_bench                     # 20k texts, FSDD, RSS at 20k and 200k rows
    python -m benchmarks.batch_embed_bench --texts 2000 --rss-rows 2000 20000   # a quick look

1. Text: the same 20,000 real sentences (docstrings of the stdlib and installed
   packages, see benchmarks/text_corpus.py) through `SentenceTransformer.encode`
   (batch 128) and through `run_embed` (Parquet in, Parquet parts out, batch 128).
   Both exclude model loading; `ratio` = tessera items/s / raw items/s.
2. Audio: the 2,500 FSDD clips through `tessera embed` with the `digits` space, with
   decode worker processes and without, against `Space.embed` on the same clips.
3. Memory: `tessera embed` as a subprocess on 20k and 200k rows; peak RSS of each
   (ru_maxrss). The rows cycle through real sentences of at most 80 characters so
   that 200k rows finish in minutes on a laptop-class CPU; what is measured is
   whether memory grows with the input, which text length does not change.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from benchmarks.provenance import git_commit, now_utc
from benchmarks.text_corpus import real_sentences
from tessera.embed_job import EmbedOptions, run_embed
from tessera.embedder import load_space
from tessera.embedder.encoders.minilm import minilm_model_dir

REPO = Path(__file__).resolve().parents[1]
FSDD = Path(os.environ.get("TESSERA_SHARED_DATA", REPO.parent / "shared" / "data")) / "fsdd" / "recordings"
RATIO_BAR = 0.90
RSS_GROWTH_BAR = 1.20
BATCH = 128

# Runs the command and reports the peak RSS of its largest process (the embed job runs text in one process).
_PEAK_RSS = (
    "import json, resource, subprocess, sys;"
    "rc = subprocess.run(sys.argv[1:]).returncode;"
    "print(json.dumps({'rc': rc, 'maxrss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))"
)


def _vectors(out: Path) -> np.ndarray:
    table = pq.read_table(out)
    return table.column("vector").combine_chunks().flatten().to_numpy().reshape(table.num_rows, -1)


def text_throughput(texts: list[str], work: Path) -> dict[str, float]:
    from sentence_transformers import SentenceTransformer

    source = work / "texts.parquet"
    pq.write_table(pa.table({"text": texts}), source)
    model = SentenceTransformer(str(minilm_model_dir()), device="cpu", local_files_only=True)
    model.encode(texts[:256], batch_size=BATCH)  # warm-up, as for tessera below
    load_space("minilm", device="cpu").embed("text", texts[:256])
    print(f"raw sentence-transformers encode, {len(texts):,} texts ...", flush=True)
    started = time.perf_counter()
    raw = model.encode(texts, batch_size=BATCH, normalize_embeddings=True, show_progress_bar=True)
    raw_seconds = time.perf_counter() - started
    print(f"tessera embed, {len(texts):,} texts ...", flush=True)
    summary = run_embed(EmbedOptions(source, work / "texts-out", batch_size=BATCH, device="cpu"), progress=True)
    ours = _vectors(work / "texts-out")
    return {
        "text_n": len(texts),
        "raw_seconds": round(raw_seconds, 2),
        "raw_items_per_s": round(len(texts) / raw_seconds, 1),
        "tessera_seconds": round(summary.embed_seconds, 2),
        "tessera_items_per_s": round(summary.items_per_s, 1),
        "tessera_seconds_with_loading": round(summary.seconds, 2),
        "ratio": round(summary.items_per_s / (len(texts) / raw_seconds), 4),
        "min_cosine_vs_raw": round(float((ours * raw).sum(axis=1).min()), 6),
    }


def audio_throughput(work: Path) -> dict[str, float]:
    clips = sorted(FSDD.glob("*.wav"))
    space = load_space("digits", device="cpu")
    started = time.perf_counter()
    space.embed("audio", [p.read_bytes() for p in clips])
    baseline = len(clips) / (time.perf_counter() - started)
    out: dict[str, float] = {"fsdd_n": len(clips), "fsdd_space_embed_items_per_s": round(baseline, 1)}
    # The default (auto) decodes in-process on <= 2 cores, so one decode process is also measured.
    for key, workers in (("fsdd_items_per_s", None), ("fsdd_items_per_s_1_worker", 1)):
        summary = run_embed(
            EmbedOptions(FSDD, work / key, space="digits", workers=workers, device="cpu"), progress=True
        )
        out[key] = round(summary.items_per_s, 1)
    out["fsdd_ratio"] = round(out["fsdd_items_per_s"] / baseline, 4)
    return out


def peak_rss(rows: int, pool: list[str], work: Path) -> dict[str, float]:
    source = work / f"rss-{rows}.parquet"
    writer = pq.ParquetWriter(source, pa.schema([("text", pa.string())]))
    for start in range(0, rows, 50_000):
        count = min(50_000, rows - start)
        writer.write_table(pa.table({"text": [pool[(start + i) % len(pool)] for i in range(count)]}))
    writer.close()
    command = [sys.executable, "-m", "tessera.cli", "embed", str(source), str(work / f"rss-{rows}-out")]
    command += ["--batch-size", str(BATCH), "--device", "cpu"]
    print(f"tessera embed subprocess, {rows:,} rows ...", flush=True)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", _PEAK_RSS, *command], capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - started
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if report["rc"] != 0:
        raise RuntimeError(f"tessera embed failed on {rows} rows: {result.stderr[-2000:]}")
    return {"rows": rows, "peak_rss_mb": round(report["maxrss_kb"] / 1024, 1), "items_per_s": round(rows / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=20_000, help="texts for the throughput comparison")
    parser.add_argument("--rss-rows", type=int, nargs=2, default=[20_000, 200_000], help="two row counts to compare")
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=["text", "audio", "rss"],
        default=["text", "audio", "rss"],
        help="what to measure; results of parts not run are kept from the existing --out file",
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "batch_embed_bench.json")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    results: dict[str, object] = json.loads(args.out.read_text()) if args.out.exists() else {}
    results |= {
        "benchmark": "batch_embed_bench",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "device": "cpu",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "batch_size": BATCH,
        "baseline": "sentence_transformers.SentenceTransformer.encode (same model, same batch size)",
        "text_source": "real sentences: docstrings of the Python stdlib and installed packages",
        "inference": load_space("minilm", device="cpu").inference["text"],  # what `tessera embed` runs
    }
    with tempfile.TemporaryDirectory(prefix="batch-embed-bench-") as tmp:
        work = Path(tmp)
        pool = real_sentences(max(args.texts, 60_000), include_site_packages=True)
        if "text" in args.parts:
            results.update(text_throughput(pool[: args.texts], work))
            results["ratio_bar"] = RATIO_BAR
            results["ratio_ok"] = results["ratio"] >= RATIO_BAR
        if "audio" in args.parts:
            results.update(audio_throughput(work))
        if "rss" in args.parts:
            short = [s for s in pool if len(s) <= 80]
            small, large = (peak_rss(rows, short, work) for rows in args.rss_rows)
            results.update(
                {
                    "rss_rows_small": small["rows"],
                    "rss_rows_large": large["rows"],
                    "rss_peak_mb_small": small["peak_rss_mb"],
                    "rss_peak_mb_large": large["peak_rss_mb"],
                    "rss_items_per_s_small": small["items_per_s"],
                    "rss_items_per_s_large": large["items_per_s"],
                    "rss_growth": round(large["peak_rss_mb"] / small["peak_rss_mb"], 4),
                    "rss_growth_bar": RSS_GROWTH_BAR,
                    "rss_text_max_chars": 80,
                }
            )
            results["rss_flat"] = results["rss_growth"] <= RSS_GROWTH_BAR
    results |= {"loadavg_at_end": list(os.getloadavg()), "commit": git_commit(), "measured_at": now_utc()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
