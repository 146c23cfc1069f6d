"""Training checkpoints: written atomically after each epoch, resumed when the config matches.

A checkpoint directory holds `weights.safetensors` (trainable towers and the
temperature), `optimizer.pt` (optimizer and schedule state, tensors and plain
Python only, read back with `weights_only=True`) and `state.json` (epochs done,
the config fingerprint, the metrics so far).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

STATE_FILE = "state.json"
WEIGHTS_FILE = "weights.safetensors"
OPTIMIZER_FILE = "optimizer.pt"


@dataclass
class Checkpoint:
    epochs_done: int
    fingerprint: str
    history: list[dict[str, Any]]
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]


def save_checkpoint(directory: Path, checkpoint: Checkpoint) -> None:
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in checkpoint.weights.items()}, str(staging / WEIGHTS_FILE)
        )
        torch.save(checkpoint.optimizer, staging / OPTIMIZER_FILE)
        state = {
            "epochs_done": checkpoint.epochs_done,
            "fingerprint": checkpoint.fingerprint,
            "history": checkpoint.history,
        }
        (staging / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
        # Swap in one rename; a crash leaves the old checkpoint or the new one, never half of each.
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
            os.replace(staging, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def load_checkpoint(directory: Path) -> Checkpoint | None:
    state_file = directory / STATE_FILE
    if not state_file.exists():
        old = directory.with_name(f".{directory.name}.old")
        if (old / STATE_FILE).exists():  # a crash between the two renames
            os.replace(old, directory)
        else:
            return None
    state = json.loads(state_file.read_text())
    return Checkpoint(
        epochs_done=int(state["epochs_done"]),
        fingerprint=str(state["fingerprint"]),
        history=list(state["history"]),
        weights=load_file(str(directory / WEIGHTS_FILE)),
        optimizer=torch.load(directory / OPTIMIZER_FILE, weights_only=True),
    )
