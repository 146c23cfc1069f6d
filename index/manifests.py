"""A corpus's manifest: what a new one records, and reading an existing one (checked, in a format this reads)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from tessera.embedder.modality import Modality
from tessera.embedder.similarity import Similarity

from .ann import AnnIndex
from .building import BUILD_FAILED
from .config import AUTO, EXACT, IndexConfig, is_exact
from .errors import CorpusError
from .integrity import MANIFEST, CorpusDamagedError, FileDamage, known_fields, looks_like_corpus, read_manifest
from .spec import parse_factory

FORMAT = 1


def new(
    name: str, space: str, modality: Modality | str, dim: int, similarity: Similarity | str, config: IndexConfig
) -> dict[str, Any]:
    """The manifest of a new corpus, after checking its index spec against the dimension."""
    config.validate()
    if config.factory != AUTO:
        parse_factory(config.factory, dim)  # the rules that need the dimension (PQ's m dividing it, ...)
        if not is_exact(config.factory):
            AnnIndex(config.factory, dim)  # fail now, not at the first write, on what FAISS still refuses
    return {
        **identity(name, space, modality, dim, similarity, config),
        "snapshot": None,
        "snapshot_seqno": 0,
        "built_factory": None,
    }


def identity(
    name: str, space: str, modality: Modality | str, dim: int, similarity: Similarity | str, config: IndexConfig
) -> dict[str, Any]:
    """What every backend's manifest records about a new corpus: its name, a new uid, space, modality,
    dim, similarity, index settings and when it was made."""
    return {
        "format": FORMAT,
        "name": name,
        "uid": uuid.uuid4().hex,
        "space": space,
        "modality": Modality.parse(modality).value,
        "dim": dim,
        "similarity": Similarity.parse(similarity).value,
        "index": config.to_json(),
        "created_at": time.time(),
    }


def index_config(manifest: dict[str, Any]) -> IndexConfig:
    """The corpus's index config. One created before the index grammar (index/spec.py) with a spec it now
    refuses, such as HNSW0 (whose build aborts the process), opens exact, its build recorded as failed with why."""
    try:
        return IndexConfig.from_json(manifest.get("index"))
    except ValueError as exc:
        manifest["build"] = {
            "state": BUILD_FAILED,
            "factory": str((manifest.get("index") or {}).get("factory")),
            "reason": f"its index spec is refused: {exc}",
        }
        return IndexConfig(EXACT)


def read(path: Path) -> dict[str, Any]:
    """The manifest of the corpus at `path`; CorpusDamagedError when it is damaged, CorpusError when absent."""
    if not (path / MANIFEST).exists() and not looks_like_corpus(path):
        raise CorpusError(f"no corpus named {path.name!r} (no {MANIFEST})")
    try:
        manifest = read_manifest(path)
    except FileDamage as damage:
        raise CorpusDamagedError(path.name, damage, known_fields(path)) from None
    if manifest.get("format") != FORMAT:
        raise CorpusError(f"corpus {path.name!r} has format {manifest.get('format')}; this Tessera reads {FORMAT}")
    return manifest
