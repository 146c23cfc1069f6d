"""The encoder contract and the registry of encoder types.

An encoder turns raw content of one modality into L2-normalised vectors of the
space's dimension, in two steps: `prepare` (decode and CPU-side preprocessing of
one item, safe to run in worker processes) and `encode` (one batch on the
encoder's device). Encoder types register under the name used in `space.json`,
the way open_clip and sentence-transformers register model configs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from ..inference import OnnxGraph, weights_digest
from ..modality import Modality

ENCODER_TYPES: dict[str, type[Encoder]] = {}


def register(kind: str) -> Callable[[type[Encoder]], type[Encoder]]:
    def decorator(cls: type[Encoder]) -> type[Encoder]:
        cls.kind = kind
        ENCODER_TYPES[kind] = cls
        return cls

    return decorator


class Encoder(ABC):
    kind: ClassVar[str] = ""
    modality: Modality
    dim: int
    # Items whose cost grows with a length (tokens) are sorted by it before
    # batching, so batches pad little; None means order does not matter.
    sort_by_length: ClassVar[bool] = False
    default_batch_size: ClassVar[int] = 64
    # With sort_by_length: the most padded length (count x longest `length`) one model batch may hold.
    padded_budget: int | None = None
    # ... and how much shorter than the batch's longest an item may be (None: any).
    padding_slack: int | None = None

    @abstractmethod
    def prepare(self, content: Any) -> Any:
        """Decode one raw item and preprocess it; raises DecodeError for bad input."""

    @abstractmethod
    def encode(self, batch: list[Any]) -> torch.Tensor:
        """Embed prepared items: an (n, dim) tensor of unit-norm rows."""

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """The JSON description `from_spec` rebuilds this encoder from."""

    @classmethod
    @abstractmethod
    def from_spec(cls, spec: Mapping[str, Any], context: BuildContext) -> Encoder:
        """Build the encoder described by `spec` (weights are loaded afterwards)."""

    def weights_module(self) -> nn.Module | None:
        """The module whose weights a saved space must store (None: nothing to store)."""
        return None

    def to(self, device: torch.device) -> Encoder:
        module = self.weights_module()
        if module is not None:
            module.to(device)
        return self

    def length(self, prepared: Any) -> int:
        return 0

    def lengths(self, prepared: list[Any]) -> list[int]:
        """`length` of each item; encoders that can measure many at once faster override it."""
        return [self.length(p) for p in prepared]

    def use_onnx(self) -> bool:
        """Run the model forward through ONNX Runtime from now on, on the CPU, with the current weights.

        The graph is exported (or read from the cache) on the first `encode`; preprocessing
        is unchanged. Returns False for encoders that stay on torch.
        """
        return False

    @property
    def inference(self) -> str:
        """What runs this encoder's model forward: "onnx", "torch", or "none" (no model)."""
        return "torch"


class BuildContext:
    """What an encoder may need while a space is built: dimension, device, sibling encoders."""

    def __init__(self, dim: int, device: torch.device, built: Mapping[Modality, Encoder]) -> None:
        self.dim = dim
        self.device = device
        self.built = built


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.normalize(x.float(), dim=-1)


def build_encoder(modality: Modality, spec: Mapping[str, Any], context: BuildContext) -> Encoder:
    kind = spec.get("type")
    if kind not in ENCODER_TYPES:
        known = ", ".join(sorted(ENCODER_TYPES))
        raise ValueError(f"unknown encoder type {kind!r} for {modality}; known types: {known}")
    encoder = ENCODER_TYPES[kind].from_spec(spec, context)
    if encoder.modality != modality:
        raise ValueError(f"encoder type {kind!r} embeds {encoder.modality}, not {modality}")
    return encoder


class TowerEncoder(Encoder):
    """A trainable encoder: one `tower` module, built from the keyword arguments named in `config_keys`.

    `spec()` writes those arguments and `from_spec` passes them back, so the
    constructor's defaults are the only defaults.
    """

    config_keys: ClassVar[tuple[str, ...]] = ()
    tower: nn.Module
    device: torch.device
    _onnx: OnnxGraph | None = None

    def spec(self) -> dict[str, Any]:
        return {"type": self.kind, **{key: getattr(self, key) for key in self.config_keys}}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], context: BuildContext) -> Encoder:
        unknown = set(spec) - {"type", *cls.config_keys}
        if unknown:
            raise ValueError(f"{cls.kind} encoder: unknown settings {sorted(unknown)}; known: {list(cls.config_keys)}")
        config = {key: spec[key] for key in cls.config_keys if key in spec}
        return cls(dim=context.dim, device=context.device, **config)  # type: ignore[call-arg]

    def encode(self, batch: list[Any]) -> torch.Tensor:
        if self._onnx is not None and not self.tower.training:
            return torch.from_numpy(self._onnx.run(self.onnx_inputs(batch).numpy()))
        return self.tower(torch.stack(batch).to(self.device))

    def onnx_part(self) -> tuple[nn.Module, torch.Tensor] | None:
        """The part of the tower ONNX Runtime runs, and an example input for it (None: stay on torch)."""
        return None

    def onnx_inputs(self, batch: list[Any]) -> torch.Tensor:
        """What the exported part takes: by default the stacked prepared items."""
        return torch.stack(batch)

    def use_onnx(self) -> bool:
        part = self.onnx_part()
        if part is None or self.device.type != "cpu":
            return False
        module, example = part
        self._onnx = OnnxGraph(
            self.kind, weights_digest(self.tower), lambda: module.eval(), [example], ["input"], config=self.spec()
        )
        return True

    @property
    def inference(self) -> str:
        return "onnx" if self._onnx is not None else "torch"

    def weights_module(self) -> nn.Module:
        return self.tower

    def to(self, device: torch.device) -> Encoder:
        self.device = device
        self.tower.to(device)
        if device.type != "cpu":
            self._onnx = None  # torch is the path on CUDA
        return self
