"""A small convolutional image encoder, trainable from scratch on modest data."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..decode import decode_image
from ..modality import Modality
from .base import TowerEncoder, l2_normalize, register
from .heads import ProjectionHead


class SmallCNN(nn.Module):
    """Conv-BN-ReLU blocks, each halving the resolution, then average pooling.

    `grid=None` pools globally; `grid=(rows, cols)` pools into a coarse grid and
    flattens it, keeping where things are (for spectrograms: when in the word a
    sound comes, which global pooling throws away).
    """

    def __init__(
        self, in_channels: int, widths: list[int], grid: tuple[int, int] | None = None, norm: str = "batch"
    ) -> None:
        super().__init__()
        if norm not in ("batch", "instance"):
            raise ValueError(f"norm must be 'batch' or 'instance', not {norm!r}")
        layers: list[nn.Module] = []
        for width in widths:
            # Instance norm normalises each input's channels on its own: a recording's (or a speaker's)
            # overall colour never reaches the next layer.
            normalise = nn.BatchNorm2d(width) if norm == "batch" else nn.InstanceNorm2d(width, affine=True)
            layers += [nn.Conv2d(in_channels, width, 3, padding=1), normalise, nn.ReLU(inplace=True)]
            layers.append(nn.MaxPool2d(2))
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.grid = tuple(grid) if grid else None
        self.out_dim = in_channels * (self.grid[0] * self.grid[1] if self.grid else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        if self.grid is None:
            return x.mean(dim=(2, 3))
        return nn.functional.adaptive_avg_pool2d(x, self.grid).flatten(1)


class ImageTower(nn.Module):
    def __init__(self, widths: list[int], channels: int, head: ProjectionHead) -> None:
        super().__init__()
        self.backbone = SmallCNN(channels, widths)
        self.head = head

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return l2_normalize(self.head(self.backbone(pixels)))


@register("cnn_image")
class CNNImageEncoder(TowerEncoder):
    config_keys = ("image_size", "grayscale", "widths", "head_hidden")
    modality = Modality.IMAGE

    def __init__(
        self,
        dim: int,
        image_size: int = 32,
        grayscale: bool = False,
        widths: list[int] | None = None,
        head_hidden: int = 0,
        device: torch.device | None = None,
    ) -> None:
        self.dim, self.image_size, self.grayscale = dim, image_size, grayscale
        self.widths, self.head_hidden = list(widths or [32, 64, 128]), head_hidden
        channels = 1 if grayscale else 3
        head = ProjectionHead(self.widths[-1], dim, head_hidden)
        self.tower = ImageTower(self.widths, channels, head).eval()
        self.device = device or torch.device("cpu")
        self.tower.to(self.device)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        image = image.convert("L" if self.grayscale else "RGB")
        image = image.resize((self.image_size, self.image_size), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
        pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(pixels))

    def prepare(self, content: Any) -> torch.Tensor:
        return self.preprocess(decode_image(content))

    def onnx_part(self) -> tuple[nn.Module, torch.Tensor]:
        channels = 1 if self.grayscale else 3
        return self.tower, torch.zeros(2, channels, self.image_size, self.image_size)
