"""Text embedding throughput: `space.embed("text", ...)` against the raw model's `encode`, same run.

The raw baseline is sentence-transformers' own `SentenceTransformer.encode` on
the packaged all-MiniLM-L6-v2 model, with the same batch size and device. The
two run alternately for several rounds, swapping who goes first, so drift in
machine load hits both; the ratio uses each side's best round.

    python -m benchmarks.embed_throughput            # 10,000 sentences, writes benchmarks/results/embed_throughput.json
    python -m benchmarks.embed_throughput --n 500    # a quick look
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.text_corpus import real_sentences
from tessera.embedder import load_space
from tessera.embedder.device import default_device
from tessera.embedder.encoders.minilm import load_sentence_transformer

RESULTS = Path(__file__).resolve().parent / "results" / "embed_throughput.json"


def _timed(fn) -> tuple[float, np.ndarray]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def run(n: int, batch_size: int, rounds: int, device: str | None) -> dict[str, object]:
    target = torch.device(device) if device else default_device()
    sentences = real_sentences(n)
    space = load_space("minilm", device=target)
    raw_model = load_sentence_transformer(str(target))  # the very model object the space wraps

    def raw() -> np.ndarray:
        return raw_model.encode(sentences, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)

    def ours() -> np.ndarray:
        return space.embed("text", sentences, batch_size=batch_size)

    warm = sentences[: 2 * batch_size]
    raw_model.encode(warm, batch_size=batch_size)
    space.embed("text", warm, batch_size=batch_size)

    raw_seconds: list[float] = []
    ours_seconds: list[float] = []
    for i in range(rounds):
        # Swap who goes first each round, so warm-up and clock drift favour neither side.
        order = [("raw", raw), ("tessera", ours)] if i % 2 == 0 else [("tessera", ours), ("raw", raw)]
        for name, fn in order:
            seconds, vectors = _timed(fn)
            if name == "raw":
                raw_seconds.append(seconds)
                raw_vectors = vectors
            else:
                ours_seconds.append(seconds)
                our_vectors = vectors
        print(f"round {i + 1}: raw {n / raw_seconds[-1]:.1f}/s, tessera {n / ours_seconds[-1]:.1f}/s", file=sys.stderr)

    cosine = np.sum(raw_vectors * our_vectors, axis=1)
    raw_rate, our_rate = n / min(raw_seconds), n / min(ours_seconds)
    return {
        "benchmark": "embed_throughput",
        "space": space.id,
        "n": n,
        "batch_size": batch_size,
        "rounds": rounds,
        "device": str(target),
        "device_name": torch.cuda.get_device_name(target) if target.type == "cuda" else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "baseline": "sentence_transformers.SentenceTransformer.encode",
        "raw_items_per_s": round(raw_rate, 1),
        "tessera_items_per_s": round(our_rate, 1),
        "ratio": round(our_rate / raw_rate, 4),
        "raw_seconds": [round(s, 3) for s in raw_seconds],
        "tessera_seconds": [round(s, 3) for s in ours_seconds],
        "min_cosine_vs_raw": round(float(cosine.min()), 6),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="sentences to embed (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size for both sides (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds (default: %(default)s)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA if available)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON file to write (default: %(default)s)")
    args = parser.parse_args()
    result = run(args.n, args.batch_size, args.rounds, args.device)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
