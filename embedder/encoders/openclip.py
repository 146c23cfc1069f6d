"""Image and text encoders from OpenCLIP, sharing one model per (arch, weights).

Weights come from a pretrained tag (downloaded into the user's cache on first
use, on the user's machine), a local checkpoint path, or random initialisation
(`random`) for tests and training from scratch.

On the CPU (ONNX Runtime, see `embedder/inference.py`) each tower's forward, with
its normalisation, runs as an exported graph; image preprocessing and the tokeniser
stay OpenCLIP's own.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..decode import decode_image, decode_text
from ..errors import WeightsUnavailableError
from ..inference import OnnxGraph, weights_digest
from ..modality import Modality
from .base import BuildContext, Encoder, register

RANDOM_INIT = "random"


def _import_open_clip() -> Any:
    import open_clip  # embedder/__init__ made torchvision importable first

    return open_clip


@functools.lru_cache(maxsize=2)
def load_openclip(arch: str, pretrained: str, device: str) -> tuple[Any, Any, Any]:
    """(model, image preprocess, tokenizer); raises a RuntimeError that says how to get weights."""
    open_clip = _import_open_clip()
    if arch not in open_clip.list_models():
        raise ValueError(f"unknown OpenCLIP architecture {arch!r}; `tessera spaces --all` lists them")
    weights = None if pretrained == RANDOM_INIT else pretrained
    try:
        # Random init is seeded so that every process builds the same "random" space.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=weights, device=device)
    except Exception as exc:  # torch.load of a file that is no checkpoint raises many kinds
        # `from None`: the traceback would keep the half-built model (hundreds of MB) alive.
        if weights is not None and not Path(weights).exists():
            raise WeightsUnavailableError(
                f"could not load OpenCLIP weights {arch}/{weights}: not in the local cache and not downloadable. "
                "Run once on a machine with internet to fill the cache, or pass a local checkpoint: "
                f"openclip:{arch}//path/to/checkpoint.pt"
            ) from None
        if weights is not None:
            raise WeightsUnavailableError(
                f"the checkpoint given for OpenCLIP {arch} could not be read as its weights ({type(exc).__name__})"
            ) from None
        raise
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(arch)


class _Tower(torch.nn.Module):
    """One OpenCLIP tower's unit-norm output (`encode_image` or `encode_text`), as ONNX Runtime runs it."""

    def __init__(self, model: Any, method: str) -> None:
        super().__init__()
        self.model, self.method = model, method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # With gradients off, nn.MultiheadAttention takes its fused fast path, an op the ONNX exporter
        # cannot write; with them on it runs the plain ops, which export (the graph holds no gradients).
        with torch.enable_grad():
            return getattr(self.model, self.method)(x, normalize=True).float()


class _OpenCLIPEncoder(Encoder):
    tower_method: str
    _onnx: OnnxGraph | None = None

    def __init__(self, arch: str, pretrained: str, device: torch.device) -> None:
        self.arch, self.pretrained, self.device = arch, pretrained, device
        self.model, self.preprocess_image, self.tokenizer = load_openclip(arch, pretrained, str(device))
        self.dim = int(self.model.visual.output_dim)

    def example_input(self) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self._onnx is not None:
            return torch.from_numpy(self._onnx.run(inputs.numpy()))
        return getattr(self.model, self.tower_method)(inputs.to(self.device), normalize=True).float()

    def use_onnx(self) -> bool:
        if self.device.type != "cpu":
            return False
        tower = _Tower(self.model, self.tower_method)
        self._onnx = OnnxGraph(
            self.kind,
            weights_digest(self.model),
            lambda: tower.eval(),
            [self.example_input()],
            ["input"],
            config=self.spec(),
        )
        return True

    @property
    def inference(self) -> str:
        return "onnx" if self._onnx is not None else "torch"

    def to(self, device: torch.device) -> Encoder:
        # The model is shared (load_openclip's cache, keyed by device) and stays where it was loaded.
        if device.type != "cpu":
            self._onnx = None  # torch is the path on CUDA
        return self

    def spec(self) -> dict[str, Any]:
        return {"type": self.kind, "arch": self.arch, "pretrained": self.pretrained}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], context: BuildContext) -> _OpenCLIPEncoder:
        return cls(str(spec["arch"]), str(spec.get("pretrained") or RANDOM_INIT), context.device)


@register("openclip_image")
class OpenCLIPImageEncoder(_OpenCLIPEncoder):
    modality = Modality.IMAGE
    default_batch_size = 32
    tower_method = "encode_image"

    def example_input(self) -> torch.Tensor:
        size = self.model.visual.image_size
        height, width = (size, size) if isinstance(size, int) else size
        return torch.zeros(2, 3, height, width)

    def preprocess(self, image: Any) -> torch.Tensor:
        return self.preprocess_image(image)

    def prepare(self, content: Any) -> torch.Tensor:
        return self.preprocess(decode_image(content))

    def encode(self, batch: list[torch.Tensor]) -> torch.Tensor:
        return self.forward(torch.stack(batch))


@register("openclip_text")
class OpenCLIPTextEncoder(_OpenCLIPEncoder):
    modality = Modality.TEXT
    sort_by_length = True
    default_batch_size = 128
    tower_method = "encode_text"

    def example_input(self) -> torch.Tensor:
        return self.tokenizer(["an example sentence", "and a second one"])

    def prepare(self, content: Any) -> str:
        return decode_text(content)

    def length(self, prepared: str) -> int:
        return len(prepared)

    def encode(self, batch: list[str]) -> torch.Tensor:
        return self.forward(self.tokenizer(batch))
