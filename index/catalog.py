"""The corpora under one data directory: create, open, list, describe and drop them by name."""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from tessera.embedder.modality import Modality
from tessera.embedder.quoting import quote
from tessera.embedder.similarity import Similarity

from . import dirlock
from .config import IndexConfig
from .corpus import Corpus
from .diskspace import DiskGuard
from .errors import CorpusNotFoundError
from .integrity import MANIFEST, CorpusDamagedError, looks_like_corpus
from .milvus_corpus import MilvusCorpus
from .milvus_store import MilvusStore, MilvusUnavailableError

log = logging.getLogger(__name__)

CORPORA = "corpora"
BACKENDS = ("local", "milvus")
# A Milvus corpus is re-read from Milvus at most this often: another replica may have dropped or
# re-made it, and one describe call per second per corpus is nothing next to the searches.
MILVUS_RECHECK_S = 1.0
# The one grammar for corpus names, in every entry point (gRPC, CLI, Python). Matched in full: `$` would
# let "notes\n" through, and make a directory with a newline in its name.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
MAX_NAME_CHARS = 128


class CorpusExistsError(FileExistsError):
    pass


def is_valid_name(name: object) -> bool:
    return isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None


def check_name(name: str) -> str:
    if not is_valid_name(name):
        raise ValueError(
            f"corpus name {quote(name)} is not allowed: use 1-{MAX_NAME_CHARS} letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    return name


class Catalog:
    """Opens corpora on first use and keeps them open; `close()` snapshots and closes them all.

    `min_free_bytes` (`tessera serve --min-free-mb`) refuses upserts, new corpora and snapshots
    with DiskFullError once the data directory's filesystem has less than that free, before it
    is completely full; 0 refuses only when a write actually fails for space.

    `milvus` (`tessera serve --milvus-uri`) adds the corpora of a Milvus server beside the local
    ones: they are listed, opened and dropped here like local ones, and new corpora go there
    unless they ask for `backend="local"`. One name is one corpus across both.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        read_only: bool = False,
        min_free_bytes: int = 0,
        milvus: MilvusStore | None = None,
    ) -> None:
        self.root = Path(root)
        self.read_only = read_only
        self.milvus = milvus
        self._dir = self.root / CORPORA
        self._dir.mkdir(parents=True, exist_ok=True)
        self.guard = DiskGuard(self.root, min_free_bytes)
        self._open: dict[str, Corpus | MilvusCorpus] = {}
        self._checked: dict[str, float] = {}  # when each open Milvus corpus was last confirmed in Milvus
        self._damaged: dict[str, CorpusDamagedError] = {}
        self._lock = threading.Lock()
        # A read-only catalog writes nothing, so it needs no exclusive hold on the directory.
        self._dir_lock = None if read_only else dirlock.acquire(self.root)
        if not read_only:
            for doomed in self._dir.glob(".dropped-*"):  # a drop that a crash interrupted
                shutil.rmtree(doomed, ignore_errors=True)

    @property
    def default_backend(self) -> str:
        return "milvus" if self.milvus is not None else "local"

    def names(self) -> list[str]:
        """Every corpus, damaged ones included: a directory whose manifest is gone but whose log or
        snapshots remain is listed (and reported damaged), not silently left out."""
        local = {p.name for p in self._dir.iterdir() if is_valid_name(p.name) and looks_like_corpus(p)}
        return sorted(local | set(self.milvus.names() if self.milvus else ()))

    def _exists_locally(self, name: str) -> bool:
        return name in self or (is_valid_name(name) and looks_like_corpus(self._dir / name))

    def _exists(self, name: str) -> bool:
        return self._exists_locally(name) or (self.milvus is not None and is_valid_name(name) and self.milvus.has(name))

    def __contains__(self, name: object) -> bool:
        # Only valid names can exist; checking first keeps paths like "../x" or 300-byte names off the filesystem.
        return is_valid_name(name) and (self._dir / name / MANIFEST).exists()

    def create(
        self,
        name: str,
        *,
        space: str,
        modality: Modality | str,
        dim: int,
        similarity: Similarity | str = Similarity.COSINE,
        index: IndexConfig | dict[str, Any] | str | None = None,
        backend: str | None = None,
    ) -> Corpus | MilvusCorpus:
        check_name(name)
        backend = self._backend(backend)
        config = index if isinstance(index, IndexConfig) else IndexConfig.from_json(index)
        modality = Modality.parse(modality)
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        with self._lock:
            if self._exists(name):  # a damaged corpus too: its files are not to be overwritten
                raise CorpusExistsError(f"corpus {name!r} already exists; drop it first or pick another name")
            corpus: Corpus | MilvusCorpus
            if backend == "milvus":
                assert self.milvus is not None
                try:
                    corpus = MilvusCorpus.create(
                        self.milvus,
                        name=name,
                        space=space,
                        modality=modality,
                        dim=dim,
                        similarity=similarity,
                        index=config,
                    )
                except ConnectionError:
                    if self.milvus.has(name):  # another replica made it between our check and our create
                        raise CorpusExistsError(
                            f"corpus {name!r} already exists; drop it first or pick another name"
                        ) from None
                    raise
                self._checked[name] = time.monotonic()
            else:
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

    def _backend(self, backend: str | None) -> str:
        backend = backend or self.default_backend
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {quote(backend)}; use local or milvus")
        if backend == "milvus" and self.milvus is None:
            raise ValueError("backend 'milvus' needs a Milvus server: start tessera serve with --milvus-uri")
        return backend

    def get(self, name: str) -> Corpus | MilvusCorpus:
        """The open corpus; CorpusDamagedError (DATA_LOSS) for one whose files are damaged, every time."""
        with self._lock:
            corpus = self._open.get(name)
            if isinstance(corpus, MilvusCorpus) and time.monotonic() - self._checked.get(name, 0.0) > MILVUS_RECHECK_S:
                corpus = self._recheck(corpus)
            if corpus is None:
                damaged = self._damaged.get(name)
                if damaged is not None:
                    raise damaged
                if self.milvus is not None and not self._exists_locally(name) and is_valid_name(name):
                    if self.milvus.has(name):
                        corpus = self._open[name] = MilvusCorpus.open(self.milvus, name)
                        self._checked[name] = time.monotonic()
                        return corpus
                if not self._exists_locally(name):
                    have = ", ".join(self.names()) or "none yet"
                    raise CorpusNotFoundError(f"no corpus named {quote(name)}; corpora here: {have}")
                try:
                    corpus = Corpus.open(self._dir / name, read_only=self.read_only, guard=self.guard)
                except CorpusDamagedError as exc:
                    # Isolated: nothing of it was loaded, and nothing on disk was changed.
                    self._damaged[name] = exc
                    log.error({"event": "corpus_damaged", "corpus": name, "file": exc.file, "reason": exc.problem})
                    raise
                self._open[name] = corpus
            return corpus

    def _recheck(self, corpus: MilvusCorpus) -> MilvusCorpus | None:
        """The Milvus corpus as Milvus has it now: None if another replica dropped it, a fresh one if it was
        made again (a new uid: its calibration and settings are its own). One describe call when it is there."""
        assert self.milvus is not None
        name = corpus.name
        self._checked[name] = time.monotonic()
        try:
            manifest = self.milvus.manifest(name)
        except MilvusUnavailableError:
            if self.milvus.has(name):  # there, so Milvus itself failed: the caller hears about it
                raise
            del self._open[name]
            return None
        if manifest.get("uid") != corpus.uid:
            corpus = self._open[name] = MilvusCorpus(self.milvus, manifest)
        return corpus

    def corpora(self) -> list[Corpus | MilvusCorpus]:
        """The corpora that load; damaged ones are left out (see `damaged`)."""
        out = []
        for name in self.names():
            try:
                out.append(self.get(name))
            except (CorpusDamagedError, CorpusNotFoundError):  # dropped by another replica since names()
                pass
        return out

    def damaged(self) -> dict[str, CorpusDamagedError]:
        """The corpora found damaged so far (on first use; `corpora()` and listings try every one).

        Without the catalog's lock, which a corpus holds while it loads: a metrics scrape must not wait.
        """
        return dict(self._damaged)

    def describe(self, name: str) -> dict[str, Any]:
        """The corpus's description; for a damaged one, what its manifest still says plus `damaged` and `damage`."""
        try:
            return self.get(name).describe()
        except CorpusDamagedError as exc:
            return exc.describe()

    def rebuild(self, name: str) -> dict[str, Any]:
        """Build a corpus's index now (also after a failed or interrupted build) and snapshot it, so the
        next open loads the index instead of building it again; returns the corpus's description."""
        corpus = self.get(name)
        corpus.rebuild()
        corpus.snapshot()
        return corpus.describe()

    def drop(self, name: str) -> None:
        with self._lock:
            if not self._exists(name):
                raise CorpusNotFoundError(f"no corpus named {quote(name)}")
            self._damaged.pop(name, None)  # dropping is one way out of damage
            corpus = self._open.pop(name, None)
            if corpus is not None:
                corpus.close(snapshot=False)  # its files go next: nothing to snapshot
            if not self._exists_locally(name):
                assert self.milvus is not None
                self.milvus.drop(name)
                return
            # Rename first so a crash mid-delete never leaves a half corpus that still looks valid.
            doomed = self._dir / f".dropped-{name}-{os.getpid()}"
            os.replace(self._dir / name, doomed)
            shutil.rmtree(doomed)

    def close(self) -> None:
        with self._lock:
            for corpus in self._open.values():
                corpus.close()
            self._open.clear()
            if self.milvus is not None:
                self.milvus.close()
            if self._dir_lock is not None:
                dirlock.release(self._dir_lock)
                self._dir_lock = None

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
