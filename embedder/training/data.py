"""The paired dataset: a Parquet manifest, one column per modality, decoded once into tensors.

A cell holds text (str), encoded bytes, or a path to a file (str, relative to the
manifest). Null cells are missing modalities. Trainable modalities are decoded
and preprocessed once by their encoder's `prepare` and kept as one stacked
tensor; frozen modalities are embedded once, as each distinct value's vector.
"""

from __future__ import annotations

import hashlib
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from ..errors import DecodeError
from ..modality import Modality
from ..space import Space
from .config import ConfigError, TrainConfig

# A cache shared between training runs in one process (a benchmark trains many times
# on the same files): key -> prepared tensor or frozen embedding.
PreparedCache = MutableMapping[tuple[str, str, str], torch.Tensor]


@dataclass
class ModalityData:
    values: torch.Tensor  # (n, ...) prepared inputs (trainable) or embeddings (frozen)
    present: torch.Tensor  # (n,) bool
    frozen: bool


@dataclass
class PairedData:
    modalities: list[Modality]
    data: dict[Modality, ModalityData]
    labels: np.ndarray | None  # (n,) int codes, or None
    label_names: list[str]
    groups: np.ndarray | None  # (n,) str

    def __len__(self) -> int:
        return len(self.data[self.modalities[0]].present)

    def subset(self, rows: np.ndarray) -> PairedData:
        index = torch.from_numpy(rows)
        return PairedData(
            self.modalities,
            {m: ModalityData(d.values[index], d.present[index], d.frozen) for m, d in self.data.items()},
            self.labels[rows] if self.labels is not None else None,
            self.label_names,
            self.groups[rows] if self.groups is not None else None,
        )


def _raw_bytes(cell: Any, modality: Modality, root: Path) -> Any:
    if modality is Modality.TEXT or isinstance(cell, bytes):
        return cell
    path = Path(cell)
    path = path if path.is_absolute() else root / path
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{modality} file {path} named in the manifest cannot be read: {exc}") from None


def _cell_key(cell: Any) -> str:
    if isinstance(cell, bytes):
        return "sha256:" + hashlib.sha256(cell).hexdigest()
    return "value:" + str(cell)


def _spec_key(space: Space, modality: Modality) -> str:
    return repr(sorted(space.encoder(modality).spec().items()))


def load_manifest(config: TrainConfig) -> dict[str, list[Any]]:
    path = config.manifest_path()
    if not path.exists():
        raise ConfigError(f"[data].manifest: no Parquet file at {path}")
    table = pq.read_table(path)
    wanted = [*config.data.columns.values(), config.data.label_column, config.data.group_column]
    missing = [c for c in wanted if c is not None and c not in table.column_names]
    if missing:
        raise ConfigError(f"{path} has no column(s) {missing}; it has {table.column_names}")
    return {c: table.column(c).to_pylist() for c in wanted if c is not None}


def load_paired_data(
    config: TrainConfig, space: Space, cache: PreparedCache | None = None, progress: bool = True
) -> PairedData:
    cache = cache if cache is not None else {}
    columns = load_manifest(config)
    root = config.manifest_path().parent
    data: dict[Modality, ModalityData] = {}
    for modality in config.modalities:
        cells = columns[config.data.columns[modality.value]]
        present = torch.tensor([c is not None for c in cells], dtype=torch.bool)
        if not bool(present.any()):
            raise ConfigError(f"column {config.data.columns[modality.value]!r} ({modality}) is empty")
        frozen = not config.trainable(modality)
        spec_key = _spec_key(space, modality)
        kind = "embedding" if frozen else "prepared"
        distinct = {_cell_key(c): c for c in cells if c is not None}
        todo = [k for k in distinct if (kind, spec_key, k) not in cache]
        if todo:
            desc = f"{'embed' if frozen else 'decode'} {modality}"
            raws = [_raw_bytes(distinct[k], modality, root) for k in tqdm(todo, desc=desc, disable=not progress)]
            if frozen:
                vectors = space.embed(modality, raws)
                for key, vector in zip(todo, vectors, strict=True):
                    cache[(kind, spec_key, key)] = torch.from_numpy(vector)
            else:
                for key, raw in zip(todo, raws, strict=True):
                    try:
                        cache[(kind, spec_key, key)] = space.prepare(modality, raw, item=str(distinct[key])[:80])
                    except DecodeError as exc:
                        raise ConfigError(f"manifest {modality} item cannot be decoded: {exc}") from None
        first = cache[(kind, spec_key, next(iter(distinct)))]
        values = torch.zeros((len(cells), *first.shape), dtype=first.dtype)
        for i, cell in enumerate(cells):
            if cell is not None:
                values[i] = cache[(kind, spec_key, _cell_key(cell))]
        data[modality] = ModalityData(values, present, frozen)
    labels, names = None, []
    if config.data.label_column:
        raw_labels = [str(v) for v in columns[config.data.label_column]]
        names = sorted(set(raw_labels))
        code = {name: i for i, name in enumerate(names)}
        labels = np.array([code[v] for v in raw_labels], dtype=np.int64)
    groups = np.array([str(v) for v in columns[config.data.group_column]]) if config.data.group_column else None
    return PairedData(config.modalities, data, labels, names, groups)


def split(data: PairedData, config: TrainConfig) -> tuple[PairedData, PairedData | None]:
    """(train, eval): held-out groups, or a seeded random fraction, or no eval split."""
    n = len(data)
    if config.eval.groups:
        assert data.groups is not None
        unknown = set(config.eval.groups) - set(data.groups.tolist())
        if unknown:
            raise ConfigError(f"[eval].groups {sorted(unknown)} never occur in column {config.data.group_column!r}")
        held = np.isin(data.groups, config.eval.groups)
    elif config.eval.fraction > 0:
        rng = np.random.default_rng(config.training.seed)
        held = np.zeros(n, dtype=bool)
        held[rng.permutation(n)[: max(1, round(config.eval.fraction * n))]] = True
    else:
        return data, None
    if held.all():
        raise ConfigError("the eval split holds every row; nothing is left to train on")
    return data.subset(np.flatnonzero(~held)), data.subset(np.flatnonzero(held))


def epoch_pairing(data: PairedData, rng: np.random.Generator, shuffle_within_label: bool) -> dict[Modality, np.ndarray]:
    """Row index per modality for this epoch's tuples; re-paired within labels when asked."""
    n = len(data)
    rows = {m: np.arange(n) for m in data.modalities}
    if not shuffle_within_label or data.labels is None:
        return rows
    for modality in data.modalities[1:]:  # the first modality stays put; the others are re-drawn per label
        index = rows[modality]
        for label in np.unique(data.labels):
            same = np.flatnonzero(data.labels == label)
            index[same] = same[rng.permutation(len(same))]
    return rows
