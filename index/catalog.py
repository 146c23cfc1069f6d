"""The corpora under one data directory: create, open, list, describe and drop them by name."""

from __future__ import annotations

import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any

from tessera.embedder.modality import Modality

from . import dirlock
from .config import IndexConfig
from .corpus import MANIFEST, Corpus
from .diskspace import DiskGuard

CORPORA = "corpora"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class CorpusNotFoundError(LookupError):
    pass


class CorpusExistsError(FileExistsError):
    pass


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(
            f"corpus name {name!r} is not allowed: use 1-64 letters, digits, '_', '-' or '.', starting with a letter "
            "or digit"
        )
    return name


class Catalog:
    """Opens corpora on first use and keeps them open; `close()` snapshots and closes them all.

    `min_free_bytes` (`tessera serve --min-free-mb`) refuses upserts, new corpora and snapshots
    with DiskFullError once the data directory's filesystem has less than that free, before it
    is completely full; 0 refuses only when a write actually fails for space.
    """

    def __init__(self, root: str | os.PathLike[str], *, read_only: bool = False, min_free_bytes: int = 0) -> None:
        self.root = Path(root)
        self.read_only = read_only
        self._dir = self.root / CORPORA
        self._dir.mkdir(parents=True, exist_ok=True)
        self.guard = DiskGuard(self.root, min_free_bytes)
        self._open: dict[str, Corpus] = {}
        self._lock = threading.Lock()
        # A read-only catalog writes nothing, so it needs no exclusive hold on the directory.
        self._dir_lock = None if read_only else dirlock.acquire(self.root)
        if not read_only:
            for doomed in self._dir.glob(".dropped-*"):  # a drop that a crash interrupted
                shutil.rmtree(doomed, ignore_errors=True)

    def names(self) -> list[str]:
        return sorted(p.name for p in self._dir.iterdir() if (p / MANIFEST).exists())

    def __contains__(self, name: object) -> bool:
        # Only valid names can exist; checking first keeps paths like "../x" or 300-byte names off the filesystem.
        return isinstance(name, str) and bool(NAME_PATTERN.match(name)) and (self._dir / name / MANIFEST).exists()

    def create(
        self,
        name: str,
        *,
        space: str,
        modality: Modality | str,
        dim: int,
        similarity: str = "cosine",
        index: IndexConfig | dict[str, Any] | str | None = None,
    ) -> Corpus:
        check_name(name)
        config = index if isinstance(index, IndexConfig) else IndexConfig.from_json(index)
        modality = Modality.parse(modality)
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        with self._lock:
            if name in self:
                raise CorpusExistsError(f"corpus {name!r} already exists; drop it first or pick another name")
            corpus = Corpus.create(
                self._dir / name,
                name=name,
                space=space,
                modality=modality.value,
                dim=dim,
                similarity=similarity,
                index=config,
                guard=self.guard,
            )
            self._open[name] = corpus
            return corpus

    def get(self, name: str) -> Corpus:
        with self._lock:
            corpus = self._open.get(name)
            if corpus is None:
                if name not in self:
                    have = ", ".join(self.names()) or "none yet"
                    raise CorpusNotFoundError(f"no corpus named {name!r}; corpora here: {have}")
                corpus = Corpus.open(self._dir / name, read_only=self.read_only, guard=self.guard)
                self._open[name] = corpus
            return corpus

    def corpora(self) -> list[Corpus]:
        return [self.get(name) for name in self.names()]

    def describe(self, name: str) -> dict[str, Any]:
        return self.get(name).describe()

    def drop(self, name: str) -> None:
        with self._lock:
            if name not in self:
                raise CorpusNotFoundError(f"no corpus named {name!r}")
            corpus = self._open.pop(name, None)
            if corpus is not None:
                corpus.wait_idle()
                corpus.wal.close()
                corpus._closed = True
            # Rename first so a crash mid-delete never leaves a half corpus that still looks valid.
            doomed = self._dir / f".dropped-{name}-{os.getpid()}"
            os.replace(self._dir / name, doomed)
            shutil.rmtree(doomed)

    def close(self) -> None:
        with self._lock:
            for corpus in self._open.values():
                corpus.close()
            self._open.clear()
            if self._dir_lock is not None:
                dirlock.release(self._dir_lock)
                self._dir_lock = None

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
