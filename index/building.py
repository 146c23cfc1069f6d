"""When a corpus builds its ANN index, the build itself, and the record of each attempt in the manifest.

A build runs on the corpus's background thread over a copy of the live vectors, then catches up
with the writes made meanwhile under the write lock. Its state is written to the manifest before
it starts and when it ends, so a process killed mid-build (a native assertion, the OOM killer)
leaves "building" behind, which the next open reports as a failure instead of building again.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .ann import AnnIndex
from .config import AUTO, auto_factory, is_exact
from .diskspace import DiskFullError
from .errors import CorpusError
from .integrity import MANIFEST
from .snapshot import write_json_atomic

if TYPE_CHECKING:
    from .corpus import Corpus

log = logging.getLogger("tessera.index.corpus")

# The states of the last index build, as the manifest's "build" record keeps them.
BUILD_RUNNING, BUILD_DONE, BUILD_FAILED = "building", "built", "build_failed"
TRAINING_SAMPLE_MAX = 100_000
AUTO_REBUILD_GROWTH = 4  # "auto" re-sizes its ANN index after the corpus grows this many times over
# A trained index (IVF, PQ) is retrained once the corpus has doubled since training: the first
# vectors written are often not a fair sample of the rest (measured: IVF1024,PQ32 trained on the
# first half of a 100k corpus had recall@10 0.43 against 0.51, and 25% lower QPS).
RETRAIN_GROWTH = 2


@functools.lru_cache(maxsize=64)
def training_size(factory: str, dim: int) -> int:
    return AnnIndex(factory, dim).training_size()


def training_sample(n_live: int, index: AnnIndex) -> np.ndarray:
    """Sorted positions, among n_live vectors, of the ones an untrained index is trained on."""
    take = min(n_live, max(index.training_size(), TRAINING_SAMPLE_MAX))
    return np.sort(np.random.default_rng(n_live).choice(n_live, take, replace=False))


class IndexBuilds:
    """The build policy of one corpus; the corpus owns the index, the locks and the manifest."""

    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus
        self.running = False

    # ---- policy --------------------------------------------------------------------------
    def target_factory(self) -> str:
        config, count = self.corpus.config, self.corpus.store.count
        return auto_factory(count, config.ann_threshold) if config.factory == AUTO else config.factory

    def needed(self) -> bool:
        c = self.corpus
        target = self.target_factory()
        if is_exact(target):
            return False
        if self.failed(target):
            return False  # never the same failing build in a loop; `tessera corpus rebuild` tries again
        if c.ann is None:
            return c.store.count >= training_size(target, c.dim)
        if c.ann_dead and c.ann_dead > c.config.rebuild_tombstone_ratio * max(1, c.ann.ntotal):
            return True
        if c.config.factory == AUTO and c.store.count >= AUTO_REBUILD_GROWTH * max(1, c.built_count):
            return True
        return c.ann.needs_training and c.store.count >= RETRAIN_GROWTH * max(1, c.trained_on)

    def maybe_start(self) -> None:
        if not self.running and self.needed():
            self.running = True
            self.corpus.background.submit(self.build)

    # ---- the record in the manifest ------------------------------------------------------
    def failed(self, factory: str) -> bool:
        """Whether the last attempt at `factory` failed and the corpus has not since grown enough
        (RETRAIN_GROWTH times over) to make another automatic attempt a different one."""
        build = self.corpus.manifest.get("build") or {}
        if build.get("state") != BUILD_FAILED or build.get("factory") != factory:
            return False
        tried_on = build.get("vectors")
        return not isinstance(tried_on, int) or self.corpus.store.count < RETRAIN_GROWTH * max(1, tried_on)

    def record(self, state: str, factory: str, **details: Any) -> None:
        c = self.corpus
        entry = {"state": state, "factory": factory, "at": time.time(), **details}
        with c.write_mutex:
            c.manifest["build"] = entry
            if not c.read_only:
                with c.guard.writing(f"recording the index build of corpus {c.name!r}"):
                    write_json_atomic(c.path / MANIFEST, c.manifest)

    def note_interrupted(self) -> None:
        """At open: a "building" record means the last process died during that build."""
        c = self.corpus
        build = c.manifest.get("build") or {}
        if build.get("state") != BUILD_RUNNING:
            return
        reason = (
            f"the server stopped during the build of {build.get('factory')} ({build.get('vectors')} vectors): "
            "killed, out of memory or crashed"
        )
        log.warning({"event": "index_build_interrupted", "corpus": c.name, "factory": build.get("factory")})
        if c.read_only:
            c.manifest["build"] = {**build, "state": BUILD_FAILED, "reason": reason}
        else:
            self.record(BUILD_FAILED, str(build.get("factory")), reason=reason, vectors=build.get("vectors"))

    def state(self) -> str:
        """ "building", "build_failed" (the last attempt at the target failed; searches use what there is),
        "built" or "exact" (no index is wanted yet, or an untrained one is waiting for vectors)."""
        if self.running:
            return BUILD_RUNNING
        configured = str((self.corpus.manifest.get("index") or {}).get("factory"))
        if self.failed(self.target_factory()) or self.failed(configured):
            return BUILD_FAILED
        return BUILD_DONE if self.corpus.ann is not None else "exact"

    def note(self, state: str) -> str:
        if state != BUILD_FAILED:
            return ""
        build = self.corpus.manifest.get("build") or {}
        return (
            f"{build.get('reason', 'the last build failed')}. Searches are exact (or use the index built before). "
            f"It is tried again once the corpus has grown {RETRAIN_GROWTH}x, or now with "
            f"`tessera corpus rebuild {self.corpus.name}` while no server has the data directory open"
        )

    # ---- the build -----------------------------------------------------------------------
    def build(self, force: bool = False) -> None:
        """Build the target index (background, or `force` for an explicit rebuild, which raises)."""
        c = self.corpus
        factory, tried_on = "?", 0
        try:
            with c.rw.read():
                factory = self.target_factory()
                if is_exact(factory):
                    c.ann = None
                    return
                live = c.store.live_slots()
                n_at_start = c.store.n_slots
            index = AnnIndex(factory, c.dim, ef_construction=c.config.ef_construction)
            if not index.is_trained and len(live) < (index.min_training_size() if force else index.training_size()):
                if not force:
                    return
                raise CorpusError(
                    f"{factory} needs at least {index.min_training_size()} vectors to train (FAISS advises "
                    f"{index.training_size()}) and corpus {c.name!r} has {len(live)}; "
                    "searches stay exact until it has enough"
                )
            tried_on = len(live)
            self.record(BUILD_RUNNING, factory, vectors=tried_on)
            with c.rw.read():
                vectors = c.store.vectors[live]
            log.info({"event": "index_build_started", "corpus": c.name, "factory": factory, "vectors": len(live)})
            trained_on = 0
            if not index.is_trained:
                index.train(vectors[training_sample(len(live), index)])
                trained_on = len(live)
            index.add(vectors, live)
            del vectors
            with c.write_mutex, c.rw.write():
                # Catch up with writes made while building: new slots in, retired ones out.
                new = np.arange(n_at_start, c.store.n_slots)
                new = new[c.store.alive[new]]
                index.add(c.store.vectors[new], new)
                gone = live[~c.store.alive[live]]
                dead = 0
                if index.supports_remove():
                    index.remove(gone)
                else:
                    dead = len(gone)
                if c.config.use_gpu:
                    index.to_gpu()
                c.ann, c.ann_dead, c.built_count, c.trained_on = index, dead, c.store.count, trained_on
            log.info({"event": "index_built", "corpus": c.name, "factory": factory, "vectors": len(live) + len(new)})
            self.record(BUILD_DONE, factory, vectors=len(live) + len(new))
        except Exception as exc:
            self._failed(exc, factory, tried_on)
            if force:
                raise
            return  # a background build's failure is recorded and reported by describe(), not raised
        finally:
            self.running = False
        if not c.closed:
            self.maybe_start()  # writes made during the build may already call for the next one

    def _failed(self, exc: Exception, factory: str, tried_on: int) -> None:
        c = self.corpus
        started = (c.manifest.get("build") or {}).get("state") == BUILD_RUNNING
        if not started or isinstance(exc, DiskFullError):
            log.warning({"event": "index_build_skipped", "corpus": c.name, "factory": factory, "reason": str(exc)})
            return
        reason = f"{type(exc).__name__}: {str(exc)[:300]}"
        if "Error in " in reason or ".cpp" in reason:  # FAISS's C++ internals stay in the server log
            reason = f"FAISS could not build {factory} ({type(exc).__name__}; the server log has the details)"
        log.exception("corpus %s: index build of %s failed; searches stay exact", c.name, factory)
        try:
            self.record(BUILD_FAILED, factory, reason=reason, vectors=tried_on)
        except DiskFullError:
            c.manifest["build"] = {"state": BUILD_FAILED, "factory": factory, "reason": reason, "vectors": tried_on}
