"""Encoder speed: Tessera's inference paths against the raw models, same run.

1. Text batch throughput: `space.embed("text", ...)` through ONNX Runtime (the CPU
   default; see embedder/inference.py) against sentence-transformers' own
   `SentenceTransformer.encode` on the packaged all-MiniLM-L6-v2 model, same
   sentences, each side batching its own way (encode: fixed batches of its default 32,
   sorted by length; Tessera: length-sorted batches within a padded-token budget). A
   third side, the same Tessera batching on torch, splits the gain into batching and
   ONNX Runtime. The sides run alternately for several rounds, rotating who goes first,
   so drift in machine load hits all; each keeps its best round. A sweep of encode's
   batch size on the first 2,000 sentences shows whether 32 is its best. On CUDA
   Tessera runs torch.
2. Single-query latency: one 8-word query, one call at a time, the two sides
   interleaved call by call; medians.
3. The `digits` space's CNN towers (image and log-mel audio): ONNX Runtime against the
   same space on torch, on prepared batches (decoding excluded, the log-mel front end
   included on both sides), with the cosine between the two paths' vectors.

    python -m benchmarks.embed_throughput            # 10,000 sentences, writes benchmarks/results/embed_throughput.json
    python -m benchmarks.embed_throughput --n 500    # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.provenance import git_commit, now_utc
from benchmarks.text_corpus import real_sentences
from tessera.embedder import load_space
from tessera.embedder.device import default_device
from tessera.embedder.encoders.minilm import load_sentence_transformer
from tessera.embedder.inference import usable_cores

RESULTS = Path(__file__).resolve().parent / "results" / "embed_throughput.json"
FSDD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fsdd" / "recordings"
QUERY = "how to read a file line by line"  # 8 words


def _timed(fn) -> tuple[float, np.ndarray]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def alternate(sides: dict[str, Any], rounds: int, label: str) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Seconds per round of each side (order rotated every round), and each side's last output."""
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    outputs: dict[str, Any] = {}
    names = list(sides)
    for i in range(rounds):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            elapsed, outputs[name] = _timed(sides[name])
            seconds[name].append(elapsed)
        print(f"{label} round {i + 1}: " + ", ".join(f"{n} {seconds[n][-1]:.2f}s" for n in names), file=sys.stderr)
    return seconds, outputs


def single_query(raw_model: Any, space: Any, calls: int) -> dict[str, float]:
    """Median latency of one query, raw `encode` against `space.embed`, interleaved call by call."""
    for _ in range(5):
        raw_model.encode([QUERY], normalize_embeddings=True)
        space.embed("text", [QUERY])
    raw_ms, ours_ms = [], []
    for _ in range(calls):
        raw_ms.append(_timed(lambda: raw_model.encode([QUERY], normalize_embeddings=True))[0] * 1e3)
        ours_ms.append(_timed(lambda: space.embed("text", [QUERY]))[0] * 1e3)
    raw, ours = statistics.median(raw_ms), statistics.median(ours_ms)
    return {
        "single_query_words": len(QUERY.split()),
        "single_query_calls": calls,
        "single_raw_ms": round(raw, 3),
        "single_tessera_ms": round(ours, 3),
        "single_speedup": round(raw / ours, 4),
    }


def towers(n: int, batch_size: int, rounds: int) -> dict[str, float]:
    """The digits image and audio encoders, ONNX Runtime against torch, on prepared batches."""
    fast, slow = load_space("digits", device="cpu"), load_space("digits", device="cpu", inference="torch")
    from tessera.quickstart import samples_dir

    pngs = [(samples_dir() / "digits" / f"{d}.png").read_bytes() for d in range(10)]
    clips = [p.read_bytes() for p in sorted(FSDD.glob("*.wav"))[:n]] if FSDD.is_dir() else []
    if not clips:  # no shared data here: the packaged spoken samples
        clips = [p.read_bytes() for p in sorted((samples_dir() / "spoken").glob("*.wav"))]
    out: dict[str, float] = {}
    for modality, raw in (("image", pngs), ("audio", clips)):
        prepared = [fast.prepare(modality, raw[i % len(raw)]) for i in range(n)]
        batches = [prepared[i : i + batch_size] for i in range(0, n, batch_size)]

        def run(space: Any, batches: list[list[Any]] = batches, modality: str = modality) -> np.ndarray:
            return np.concatenate([space.embed_prepared(modality, b) for b in batches])

        run(fast)
        run(slow)
        seconds, vectors = alternate({"torch": lambda: run(slow), "onnx": lambda: run(fast)}, rounds, modality)
        torch_rate, onnx_rate = n / min(seconds["torch"]), n / min(seconds["onnx"])
        cosine = np.sum(vectors["onnx"] * vectors["torch"], axis=1)
        out |= {
            f"{modality}_n": n,
            f"{modality}_torch_items_per_s": round(torch_rate, 1),
            f"{modality}_onnx_items_per_s": round(onnx_rate, 1),
            f"{modality}_speed_ratio": round(onnx_rate / torch_rate, 4),
            f"{modality}_min_cosine_onnx_vs_torch": round(float(cosine.min()), 7),
        }
    return out


RAW_DEFAULT_BATCH = 32  # SentenceTransformer.encode's own default batch size
SWEEP_BATCHES = (16, 32, 64, 128)


def raw_sweep(raw_model: Any, sentences: list[str]) -> dict[str, float]:
    """Raw `encode` at several batch sizes on the same sentences: is the baseline at its best?"""
    out: dict[str, float] = {"raw_sweep_n": len(sentences)}
    for batch in SWEEP_BATCHES:
        seconds, _ = _timed(lambda batch=batch: raw_model.encode(sentences, batch_size=batch, convert_to_numpy=True))
        out[f"raw_sweep_b{batch}_items_per_s"] = round(len(sentences) / seconds, 1)
    return out


def run(
    n: int, batch_size: int | None, rounds: int, device: str | None, single_calls: int, tower_n: int, sweep_n: int
) -> dict[str, object]:
    target = torch.device(device) if device else default_device()
    sentences = real_sentences(n)
    space = load_space("minilm", device=target)  # ONNX Runtime on the CPU, torch on CUDA
    torch_space = load_space("minilm", device=target, inference="torch")  # the same batching, torch forward
    raw_model = load_sentence_transformer(str(target))  # the very model object the torch path wraps
    raw_batch = batch_size or RAW_DEFAULT_BATCH

    def raw() -> np.ndarray:
        return raw_model.encode(sentences, batch_size=raw_batch, normalize_embeddings=True, convert_to_numpy=True)

    sides: dict[str, Any] = {"raw": raw, "tessera": lambda: space.embed("text", sentences, batch_size=batch_size)}
    if space.inference["text"] != "torch":
        sides["tessera_torch"] = lambda: torch_space.embed("text", sentences, batch_size=batch_size)
    warm = sentences[:256]
    raw_model.encode(warm, batch_size=raw_batch)
    space.embed("text", warm)
    torch_space.embed("text", warm)
    seconds, vectors = alternate(sides, rounds, "text")
    cosine = np.sum(vectors["raw"] * vectors["tessera"], axis=1)
    rate = {name: n / min(times) for name, times in seconds.items()}
    result: dict[str, object] = {
        "benchmark": "embed_throughput",
        "space": space.id,
        "inference": space.inference["text"],
        "n": n,
        "raw_batch_size": raw_batch,
        "tessera_batching": f"length-sorted, at most {batch_size or space.encoder('text').default_batch_size} items "
        f"and {space.encoder('text').padded_budget} padded tokens per model batch",
        "rounds": rounds,
        "device": str(target),
        "device_name": torch.cuda.get_device_name(target) if target.type == "cuda" else platform.processor() or "cpu",
        "cores": usable_cores(),
        "loadavg_at_start": list(os.getloadavg()),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "onnxruntime": _ort_version(),
        "baseline": f"sentence_transformers.SentenceTransformer.encode, batch_size={raw_batch}",
        "raw_items_per_s": round(rate["raw"], 1),
        "tessera_items_per_s": round(rate["tessera"], 1),
        "ratio": round(rate["tessera"] / rate["raw"], 4),
        "min_cosine_vs_raw": round(float(cosine.min()), 7),
        **{f"{name}_seconds": [round(t, 3) for t in times] for name, times in seconds.items()},
    }
    if "tessera_torch" in rate:  # what the batching alone gives, and what ONNX Runtime adds on top
        result["tessera_torch_items_per_s"] = round(rate["tessera_torch"], 1)
        result["batching_ratio"] = round(rate["tessera_torch"] / rate["raw"], 4)
        result["onnx_over_torch_ratio"] = round(rate["tessera"] / rate["tessera_torch"], 4)
    result |= single_query(raw_model, space, single_calls)
    if sweep_n > 0:
        result |= raw_sweep(raw_model, sentences[:sweep_n])
    if target.type == "cpu" and tower_n > 0:
        result |= towers(tower_n, 64, rounds)
    result |= {"loadavg_at_end": list(os.getloadavg()), "commit": git_commit(), "measured_at": now_utc()}
    return result


def _ort_version() -> str:
    try:
        import onnxruntime
    except ImportError:
        return "not installed"
    return onnxruntime.__version__


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="sentences to embed (default: %(default)s)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="raw encode's batch size and Tessera's cap on items per model batch (default: each side's own: 32 / 128)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds (default: %(default)s)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA if available)")
    parser.add_argument("--single-calls", type=int, default=200, help="single-query calls per side")
    parser.add_argument("--tower-n", type=int, default=2000, help="items per CNN tower run; 0 skips")
    parser.add_argument("--sweep-n", type=int, default=2000, help="sentences for the raw batch-size sweep; 0 skips")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON file to write (default: %(default)s)")
    args = parser.parse_args()
    result = run(args.n, args.batch_size, args.rounds, args.device, args.single_calls, args.tower_n, args.sweep_n)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
