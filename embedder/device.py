"""Where encoders run: CUDA when torch sees it, else the CPU."""

from __future__ import annotations

import os

import torch


def default_device() -> torch.device:
    """`TESSERA_DEVICE` wins; otherwise the first CUDA device, else the CPU."""
    chosen = os.environ.get("TESSERA_DEVICE")
    if chosen:
        return torch.device(chosen)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
