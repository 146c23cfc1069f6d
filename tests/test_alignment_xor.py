"""Symile learns a 3-way XOR that pairwise CLIP cannot (benchmarks/alignment_xor.py), and the recorded
8-variable run shows the same.

a, b ~ Bernoulli(0.5) and c = a XOR b: a is independent of b and of c, so only the triple tells it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import tessera.embedder.encoders  # noqa: F401  (installs the torchvision shim before transformers)
from benchmarks.alignment_xor import TrainConfig, main, run_xor

REPO = Path(__file__).resolve().parents[1]
RECORDED = REPO / "benchmarks" / "results" / "alignment_xor.json"
SEEDS = range(6)
STEPS = 100  # Symile solves the 3-variable XOR within ~50 steps
DIM = 16


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # These tensors are tiny: extra threads only add overhead, and on busy cores they slow runs many times over.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_symile_predicts_a_from_b_and_c() -> None:
    accuracies = [run_xor(3, "symile", STEPS, DIM, seed) for seed in SEEDS]
    assert min(accuracies) >= 0.9, accuracies


def test_symile_with_every_combination_as_negatives_predicts_a() -> None:
    # O(n^2) negatives: 64^2 combinations per anchor keeps the step cheap.
    assert run_xor(3, "symile_n_squared", STEPS, DIM, seed=0, config=TrainConfig(batch_size=64)) >= 0.9


def test_pairwise_clip_stays_at_chance() -> None:
    accuracies = [run_xor(3, "clip", STEPS, DIM, seed) for seed in SEEDS]
    # CLIP's score is additive over b and c, and its leftover margin after training is noise. An additive
    # threshold can match at most 3 of XOR's 4 cells, so one run may read 0.25 or 0.75; the mean is chance.
    assert sum(accuracies) / len(accuracies) <= 0.6, accuracies
    assert max(accuracies) <= 0.8, accuracies


def test_command_line_writes_readable_json(tmp_path: Path) -> None:
    out = tmp_path / "xor.json"
    args = ["--variables", "3", "--steps", "20", "--seeds", "0", "--batch-size", "32", "--eval-samples", "256"]
    assert main([*args, "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["benchmark"] == "alignment_xor" and data["variables"] == 3 and data["chance"] == 0.5
    for loss in ("symile", "symile_n_squared", "clip", "gram"):
        assert 0.0 <= data[f"{loss}_accuracy_min"] <= data[f"{loss}_accuracy"] <= 1.0
        assert data["per_seed"][0][f"{loss}_accuracy"] == data[f"{loss}_accuracy"]
    assert data["command"].startswith("python -m benchmarks.alignment_xor --variables 3")


def test_recorded_eight_variable_run_separates_symile_from_clip() -> None:
    recorded = json.loads(RECORDED.read_text())
    assert recorded["benchmark"] == "alignment_xor" and recorded["variables"] == 8
    assert len(recorded["seeds"]) >= 3 and len(recorded["per_seed"]) == len(recorded["seeds"])
    assert recorded["symile_accuracy"] >= 0.9 and recorded["symile_accuracy_min"] >= 0.9
    assert recorded["clip_accuracy"] <= 0.6
