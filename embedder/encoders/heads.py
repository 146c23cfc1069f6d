"""Projection heads: backbone features -> the space's dimension."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ProjectionHead(nn.Module):
    """Linear, or a two-layer MLP with GELU when `hidden` > 0 (as in CLIP-style heads)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.hidden, self.dropout = in_dim, out_dim, hidden, dropout
        if hidden > 0:
            self.net: nn.Module = nn.Sequential(
                nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim)
            )
        else:
            self.net = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def config(self) -> dict[str, Any]:
        return {"in_dim": self.in_dim, "out_dim": self.out_dim, "hidden": self.hidden, "dropout": self.dropout}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ProjectionHead:
        return cls(**config)
