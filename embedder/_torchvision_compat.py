"""Let torchvision's pure-Python parts import next to the CPU build of torch.

PyPI's torchvision wheels are CUDA builds. Next to the CPU torch wheel Tessera
pins, their C++ ops library cannot load (it links libtorch_cuda), and
torchvision 0.28 then fails at import because it registers fake kernels for
`torchvision::nms` and `torchvision::qnms` without checking that the ops exist.
open_clip needs only torchvision's transforms, so when the library cannot load
we declare those two op schemas (no kernels) and the import goes through.
Detection ops stay unavailable; Tessera does not use them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_library: torch.library.Library | None = None


def _ops_library_loads() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return True  # not installed: nothing to patch, the import error will say so
    candidates = list(Path(spec.origin).parent.glob("_C*.so")) + list(Path(spec.origin).parent.glob("_C*.pyd"))
    if not candidates:
        return False
    try:
        torch.ops.load_library(str(candidates[0]))
    except (OSError, RuntimeError):
        return False
    return True


def ensure_torchvision_importable() -> None:
    global _library
    if _library is not None or _ops_library_loads():
        return
    _library = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        _library.define(schema)
