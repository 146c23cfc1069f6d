"""Corpora on real FAISS and real files: durability, restarts, torn logs, concurrency, index types."""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from tessera.index.catalog import Catalog, CorpusExistsError, CorpusNotFoundError
from tessera.index.config import IndexConfig, auto_factory
from tessera.index.corpus import Corpus, CorpusError
from tessera.index.exact import exact_topk
from tessera.index.filters import FilterError
from tessera.index.items import Item, ItemError

REPO = Path(__file__).resolve().parents[1]
DIM = 32


def unit_rows(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def items_for(vectors: np.ndarray, start: int = 0) -> list[Item]:
    return [
        Item(
            id=f"item-{start + i}",
            vector=v,
            text=f"text {start + i}",
            metadata={
                "n": start + i,
                "parity": "even" if (start + i) % 2 == 0 else "odd",
                "tags": [f"t{(start + i) % 5}"],
            },
        )
        for i, v in enumerate(vectors)
    ]


def new_corpus(path: Path, factory: str = "Flat", **config: object) -> Corpus:
    return Corpus.create(
        path, name="c", space="test@1", modality="text", dim=DIM, index=IndexConfig(factory=factory, **config)
    )


WRITER = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    sys.path.insert(0, {repo!r})
    from tessera.index.corpus import Corpus
    from tessera.index.config import IndexConfig
    from tessera.index.items import Item
    x = np.random.default_rng(0).standard_normal((10_000, {dim})).astype(np.float32)
    c = Corpus.create({path!r}, name="c", space="test@1", modality="text", dim={dim},
                      index=IndexConfig(factory="Flat"))
    for s in range(0, 10_000, 1_000):
        c.upsert([Item(id=f"item-{{i}}", vector=x[i], metadata={{"n": i}}) for i in range(s, s + 1_000)])
    if {snapshot_midway}:
        pass
    print("acknowledged", flush=True)
    os._exit(0)  # no close(), no snapshot: the restart must come from the log alone
    """
)


@pytest.mark.parametrize("snapshot_first", [False, True])
def test_ten_thousand_items_survive_a_process_restart(tmp_path: Path, snapshot_first: bool) -> None:
    path = tmp_path / "c"
    script = WRITER.format(repo=str(REPO), dim=DIM, path=str(path), snapshot_midway=snapshot_first)
    if snapshot_first:
        script = script.replace("    pass\n", "    pass\n").replace(
            "if True:\n    pass", "if True:\n    c.snapshot()\n    c.upsert([Item(id='late', vector=x[0])])"
        )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "acknowledged" in out.stdout
    expected = np.random.default_rng(0).standard_normal((10_000, DIM)).astype(np.float32)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    with Corpus.open(path) as corpus:
        assert len(corpus) == 10_000 + (1 if snapshot_first else 0)
        got = corpus.get([f"item-{i}" for i in range(10_000)])
        assert [g.id for g in got] == [f"item-{i}" for i in range(10_000)]
        np.testing.assert_allclose(np.stack([g.vector for g in got]), expected, atol=1e-6)
        assert got[1234].metadata == {"n": 1234}
        assert corpus.recovery["replayed"] == (1 if snapshot_first else 10)
        hit = corpus.search(expected[4321], 1)[0][0]
        assert hit.id == "item-4321" and hit.score == pytest.approx(1.0, abs=1e-5)


def test_torn_log_tail_is_dropped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    vectors = unit_rows(300)
    corpus = new_corpus(tmp_path / "c")
    for s in range(0, 300, 100):
        corpus.upsert(items_for(vectors[s : s + 100], s))
    corpus.wal.close()  # simulate a crash: no snapshot
    with open(tmp_path / "c" / "wal.log", "ab") as log:
        log.write(b"\x40\x00\x00\x00garbage from a write that never finished")
    with caplog.at_level(logging.WARNING, logger="tessera.index.corpus"):
        reopened = Corpus.open(tmp_path / "c")
    assert "torn record" in caplog.text
    assert reopened.recovery["torn_bytes"] > 0 and reopened.recovery["replayed"] == 3
    assert len(reopened) == 300
    reopened.upsert(items_for(unit_rows(1, seed=9), 300))  # the log is writable again after the cut
    reopened.close()
    assert len(Corpus.open(tmp_path / "c")) == 301


def test_upsert_replaces_delete_by_ids_and_filter_get(tmp_path: Path) -> None:
    vectors = unit_rows(100)
    corpus = new_corpus(tmp_path / "c")
    corpus.upsert(items_for(vectors))
    corpus.upsert([Item(id="item-3", vector=vectors[50], metadata={"n": -3, "parity": "odd"})])
    assert len(corpus) == 100
    assert corpus.get(["item-3"])[0].metadata == {"n": -3, "parity": "odd"}
    assert corpus.search(vectors[50], 2)[0][0].id in {"item-3", "item-50"}
    assert corpus.search(vectors[3], 1)[0][0].id != "item-3"  # the old vector is gone
    assert corpus.delete(ids=["item-1", "item-1", "nope"]).count == 1
    deleted = corpus.delete(filter={"parity": {"eq": "even"}}).count
    assert deleted == 50
    assert len(corpus) == 49
    assert all(h.metadata["parity"] == "odd" for h in corpus.search(vectors[:5], 20)[0])
    assert corpus.get(["item-0", "item-5"])[0].id == "item-5"
    corpus.close()
    again = Corpus.open(tmp_path / "c")
    assert len(again) == 49 and again.get(["item-3"])[0].metadata["n"] == -3


def test_bad_writes_are_refused_and_nothing_is_lost(tmp_path: Path) -> None:
    corpus = new_corpus(tmp_path / "c")
    corpus.upsert(items_for(unit_rows(10)))
    bad_vector = np.full(DIM, np.nan, dtype=np.float32)
    cases = [
        ([Item(id="x", vector=np.ones(DIM + 1))], "dimension 33"),
        ([Item(id="x", vector=bad_vector)], "NaN"),
        ([Item(id="x", vector=np.zeros(DIM))], "all zeros"),
        ([Item(id="", vector=np.ones(DIM))], "non-empty"),
        ([Item(id="x", vector=np.ones(DIM)), Item(id="x", vector=np.ones(DIM))], "twice"),
        ([Item(id="x", vector=np.ones(DIM), metadata={"n": "a string"})], "holds int64"),
        ([Item(id="x", vector=np.ones(DIM), metadata={"deep": {"a": 1}})], "JSON scalars"),
        ([Item(id="x", vector=np.ones(DIM), metadata={"f": float("nan")})], "finite"),
    ]
    for items, message in cases:
        with pytest.raises(ItemError, match=message):
            corpus.upsert(items)
    with pytest.raises(FilterError, match=r"filter\.n"):
        corpus.delete(filter={"n": {"gtt": 3}})
    with pytest.raises(ItemError, match="stores 32-d"):
        corpus.search(np.ones(5), 3)
    assert len(corpus) == 10
    corpus.close()
    assert len(Corpus.open(tmp_path / "c")) == 10


def test_filtered_exact_search_equals_numpy_brute_force(tmp_path: Path) -> None:
    vectors, queries = unit_rows(3000, seed=1), unit_rows(20, seed=2)
    corpus = new_corpus(tmp_path / "c")
    corpus.upsert(items_for(vectors))
    corpus.delete(ids=[f"item-{i}" for i in range(0, 3000, 7)])
    spec = {"or": [{"tags": {"in": ["t1", "t2"]}}, {"n": {"range": {"lt": 100}}}], "not": {"parity": {"eq": "odd"}}}
    n = np.arange(3000)
    keep = (np.isin(n % 5, [1, 2]) | (n < 100)) & (n % 2 == 0) & (n % 7 != 0)
    for k in (1, 10, 50):
        hits = corpus.search(queries, k, filter=spec)
        scores = queries @ vectors.T
        scores[:, ~keep] = -np.inf
        truth = np.argsort(-scores, axis=1)[:, :k]
        for q in range(len(queries)):
            assert [h.id for h in hits[q]] == [f"item-{i}" for i in truth[q]]
            np.testing.assert_allclose([h.score for h in hits[q]], scores[q, truth[q]], atol=1e-5)


@pytest.mark.parametrize("factory", ["HNSW32", "IVF16,Flat", "IVF16,PQ8x4", "SQ8"])
def test_ann_indexes_filters_deletes_and_restart(tmp_path: Path, factory: str) -> None:
    vectors = unit_rows(4000, seed=3)
    corpus = new_corpus(tmp_path / "c", factory, nprobe=16, ef_search=64)
    corpus.upsert(items_for(vectors))
    corpus.wait_idle()
    assert corpus.describe()["index"]["searching"] == factory  # trained and built in the background
    corpus.delete(ids=[f"item-{i}" for i in range(0, 4000, 2)])  # half: tombstones for HNSW
    hits = corpus.search(vectors[:50], 10, filter={"tags": {"eq": "t1"}})
    for row in hits:
        assert row and all(h.metadata["tags"] == ["t1"] and h.metadata["parity"] == "odd" for h in row)
        assert all(a.score >= b.score for a, b in itertools.pairwise(row))  # exact cosines, sorted
    top1 = [corpus.search(vectors[i], 1, nprobe=16)[0][0].id for i in range(1, 200, 2)]
    assert np.mean([t == f"item-{i}" for t, i in zip(top1, range(1, 200, 2), strict=True)]) >= 0.9
    assert not any(corpus.search(vectors[i], 5)[0][0].id == f"item-{i}" for i in range(0, 100, 2))
    corpus.close()
    reopened = Corpus.open(tmp_path / "c")
    assert reopened.describe()["index"]["searching"] == factory  # the index file came back, not rebuilt
    assert len(reopened) == 2000
    assert reopened.search(vectors[7], 1)[0][0].id == "item-7"


def test_hnsw_tombstones_trigger_a_rebuild(tmp_path: Path) -> None:
    vectors = unit_rows(2000, seed=4)
    corpus = new_corpus(tmp_path / "c", "HNSW32", rebuild_tombstone_ratio=0.3)
    corpus.upsert(items_for(vectors))
    corpus.wait_idle()
    corpus.delete(ids=[f"item-{i}" for i in range(500)])
    assert corpus.describe()["index"]["tombstones"] == 500
    corpus.delete(ids=[f"item-{i}" for i in range(500, 700)])  # 700 > 0.3 * 2000: rebuild in the background
    corpus.wait_idle()
    assert corpus.describe()["index"]["tombstones"] == 0
    assert corpus.ann is not None and corpus.ann.ntotal == 1300
    corpus.rebuild()
    assert corpus.search(vectors[1999], 1)[0][0].id == "item-1999"


def test_untrained_ivf_searches_exactly_until_it_can_train(tmp_path: Path) -> None:
    corpus = new_corpus(tmp_path / "c", "IVF64,Flat")
    corpus.upsert(items_for(unit_rows(500, seed=5)))
    corpus.wait_idle()
    assert corpus.describe()["index"]["searching"] == "exact"  # 500 < 39 * 64 advised training points
    corpus.rebuild()  # an explicit rebuild trains on what there is (>= 64)
    assert corpus.describe()["index"]["searching"] == "IVF64,Flat"
    tiny = new_corpus(tmp_path / "tiny", "IVF64,Flat")
    tiny.upsert(items_for(unit_rows(10, seed=6)))
    with pytest.raises(CorpusError, match="needs at least 64"):
        tiny.rebuild()


def test_auto_index_is_exact_when_small_and_ann_when_large(tmp_path: Path) -> None:
    assert auto_factory(99_999) == "Flat"
    assert auto_factory(1_000_000).startswith("IVF4096")
    corpus = new_corpus(tmp_path / "c", "auto", ann_threshold=2000)
    corpus.upsert(items_for(unit_rows(1500, seed=7)))
    corpus.wait_idle()
    assert corpus.describe()["index"]["searching"] == "exact"
    corpus.upsert(items_for(unit_rows(1500, seed=8), 1500))
    corpus.wait_idle()
    assert corpus.describe()["index"]["built"].startswith("IVF")


def test_bad_factory_string_is_refused_at_create(tmp_path: Path) -> None:
    from tessera.index.spec import IndexSpecError

    with pytest.raises(IndexSpecError, match="IVFbogus"):
        new_corpus(tmp_path / "c", "IVFbogus")


def test_read_only_open_memory_maps_and_refuses_writes(tmp_path: Path) -> None:
    vectors = unit_rows(1000, seed=9)
    corpus = new_corpus(tmp_path / "c", "HNSW32")
    corpus.upsert(items_for(vectors))
    corpus.close()
    ro = Corpus.open(tmp_path / "c", read_only=True)
    assert not ro.store.vectors.flags.writeable  # pages of vectors.arrow, not a copy
    assert ro.search(vectors[10], 1)[0][0].id == "item-10"
    with pytest.raises(CorpusError, match="read-only"):
        ro.upsert(items_for(vectors[:1]))


def test_gpu_is_reported_not_assumed() -> None:
    import faiss

    from tessera.index.ann import AnnIndex

    ann = AnnIndex("Flat", DIM)
    moved = ann.to_gpu()
    assert moved == (faiss.get_num_gpus() > 0)
    if not moved:
        assert ann.gpu_note == "faiss sees no GPU"


def test_concurrent_upserts_and_searches_end_consistent(tmp_path: Path) -> None:
    corpus = new_corpus(tmp_path / "c", "HNSW32")
    vectors = unit_rows(4000, seed=10)
    errors: list[BaseException] = []
    seen_ids: set[str] = set()

    def writer(w: int) -> None:
        try:
            for s in range(w * 1000, (w + 1) * 1000, 100):
                corpus.upsert(items_for(vectors[s : s + 100], s))
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            for i in range(200):
                for hit in corpus.search(vectors[i * 7 % 4000], 5, filter={"parity": {"eq": "odd"}})[0]:
                    assert hit.metadata["parity"] == "odd"
                    seen_ids.add(hit.id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)] + [
        threading.Thread(target=reader) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    corpus.wait_idle()
    assert not errors, errors
    assert len(corpus) == 4000 and corpus.describe()["count"] == 4000
    assert len(corpus.get([f"item-{i}" for i in range(4000)])) == 4000
    assert seen_ids <= {f"item-{i}" for i in range(4000)}
    corpus.close()
    assert len(Corpus.open(tmp_path / "c")) == 4000


def test_exact_topk_matches_faiss_flat_and_pads() -> None:
    import faiss

    x, q = unit_rows(5000, 64, seed=11), unit_rows(40, 64, seed=12)
    flat = faiss.IndexFlatIP(64)
    flat.add(x)
    want_d, want_i = flat.search(q, 10)
    got_d, got_i = exact_topk(x, q, 10)
    assert (got_i == want_i).mean() > 0.999
    np.testing.assert_allclose(got_d, want_d, atol=1e-5)
    allowed = np.zeros(5000, dtype=bool)
    allowed[[3, 9]] = True
    d, i = exact_topk(x, q[:1], 5, allowed)
    assert sorted(i[0, :2]) == [3, 9] and (i[0, 2:] == -1).all() and np.isinf(d[0, 2:]).all()


def test_exact_topk_split_across_threads_finds_what_one_scan_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    """With BLAS on the callers' threads (a server), a large scan is cut into parts on a pool of threads;
    the parts' merge must give the one-scan answer, filters and padding included."""
    from tessera.index import blas, exact

    x, q = unit_rows(5001, 64, seed=21), unit_rows(7, 64, seed=22)
    allowed = np.random.default_rng(3).random(5001) < 0.7
    want = [exact_topk(x, q, 10), exact_topk(x, q, 10, allowed), exact_topk(x[:6], q, 10)]
    monkeypatch.setattr(blas, "_per_call", True)
    monkeypatch.setattr(exact, "PARALLEL_MIN_WORK", 1)
    monkeypatch.setattr(exact, "usable_cores", lambda: 3)  # three parts even on a one-core machine
    monkeypatch.setattr(exact, "_pool", None)
    assert exact._scan_workers(7, 5001, 64) == 3
    got = [exact_topk(x, q, 10), exact_topk(x, q, 10, allowed), exact_topk(x[:6], q, 10)]
    for (want_d, want_i), (got_d, got_i) in zip(want, got, strict=True):
        np.testing.assert_array_equal(got_i, want_i)
        np.testing.assert_allclose(got_d, want_d, atol=1e-6)
    assert (got[2][1][:, 6:] == -1).all()  # six rows, k 10: padded as FAISS pads
    assert exact._pool is not None and exact._pool._max_workers == 3


def test_serving_engine_runs_numpy_blas_on_the_callers_threads(tmp_path: Path) -> None:
    """A serving process's Engine (`tessera serve` asks for it) sets numpy's BLAS to one thread per call;
    FAISS's is left as it was, and an Engine in a user's own process leaves numpy's alone."""
    code = (
        "import sys, numpy, faiss\n"
        "from threadpoolctl import threadpool_info\n"
        "from tessera.index import blas\n"
        "from tessera.engine import Engine\n"
        "before = {i['filepath']: i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'}\n"
        "Engine(sys.argv[1] + '/own')\n"
        "assert not blas.per_call()\n"
        "assert before == {i['filepath']: i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'}\n"
        "Engine(sys.argv[1] + '/serving', blas_on_caller_threads=True)\n"
        "after = {i['filepath']: i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'}\n"
        "assert blas.per_call()\n"
        "for path, n in after.items():\n"
        "    print(path, before[path], n)\n"
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2"}  # two threads before, whatever the machine has
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    rows = [line.rsplit(" ", 2) for line in result.stdout.splitlines()]
    numpy_rows = [r for r in rows if "numpy" in r[0]]
    assert numpy_rows and all(r[1] == "2" and r[2] == "1" for r in numpy_rows)
    assert all(r[2] == "2" for r in rows if "faiss" in r[0])


def test_catalog_create_list_describe_drop(tmp_path: Path) -> None:
    with Catalog(tmp_path) as catalog:
        catalog.create("texts", space="s@1", modality="text", dim=DIM)
        catalog.create("pics", space="s@1", modality="image", dim=DIM, index={"factory": "HNSW32"})
        with pytest.raises(CorpusExistsError):
            catalog.create("texts", space="s@1", modality="text", dim=DIM)
        with pytest.raises(ValueError, match="not allowed"):
            catalog.create("../escape", space="s@1", modality="text", dim=DIM)
        with pytest.raises(ValueError, match="unknown index settings"):
            catalog.create("x", space="s@1", modality="text", dim=DIM, index={"fatcory": "Flat"})
        catalog.get("texts").upsert(items_for(unit_rows(10)))
        assert catalog.names() == ["pics", "texts"]
        info = catalog.describe("texts")
        assert info["count"] == 10 and info["dim"] == DIM and info["bytes_on_disk"] > 0
        assert info["index"]["searching"] == "exact" and catalog.describe("pics")["index"]["factory"] == "HNSW32"
        catalog.drop("pics")
        with pytest.raises(CorpusNotFoundError, match="texts"):
            catalog.get("pics")
    with Catalog(tmp_path) as again:
        assert again.names() == ["texts"] and len(again.get("texts")) == 10


def test_trained_index_is_retrained_once_the_corpus_doubles(tmp_path: Path) -> None:
    corpus = new_corpus(tmp_path / "c", "IVF16,Flat")
    corpus.upsert(items_for(unit_rows(1200, seed=13)))
    corpus.wait_idle()
    assert corpus.describe()["index"]["searching"] == "IVF16,Flat" and corpus.trained_on == 1200
    corpus.upsert(items_for(unit_rows(1300, seed=14), 1200))  # 2,500 >= 2 x 1,200: retrain in the background
    corpus.wait_idle()
    assert corpus.trained_on == 2500 and corpus.ann.ntotal == 2500


def test_ef_construction_sets_the_hnsw_build_beam_and_survives_reopening(tmp_path: Path) -> None:
    import faiss

    config = IndexConfig(factory="HNSW16", ef_construction=77, use_gpu=False)
    corpus = Corpus.create(tmp_path / "c", name="c", space="s", modality="vector", dim=8, index=config)
    vectors = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    corpus.upsert([Item(id=str(i), vector=v) for i, v in enumerate(vectors)])
    corpus.rebuild()
    assert faiss.downcast_index(corpus.ann.index).hnsw.efConstruction == 77
    corpus.close()
    reopened = Corpus.open(tmp_path / "c")
    assert reopened.config.ef_construction == 77
    reopened.rebuild()
    assert faiss.downcast_index(reopened.ann.index).hnsw.efConstruction == 77
    reopened.close()
    with pytest.raises(ValueError, match="ef_construction must be a positive integer"):
        IndexConfig.from_json({"factory": "HNSW16", "ef_construction": 0})
    with pytest.raises(ValueError, match="ef_construction is 5000; the most this server accepts is 4096"):
        IndexConfig.from_json({"factory": "HNSW16", "ef_construction": 5000})


def test_per_query_knobs_are_bounded_and_sweeping_them_keeps_a_bounded_cache(tmp_path: Path) -> None:
    config = IndexConfig(factory="HNSW16", use_gpu=False)
    corpus = Corpus.create(tmp_path / "c", name="c", space="s", modality="vector", dim=8, index=config)
    vectors = np.random.default_rng(1).standard_normal((300, 8)).astype(np.float32)
    corpus.upsert([Item(id=str(i), vector=v) for i, v in enumerate(vectors)])
    corpus.rebuild()
    for knob, value, message in (
        ("ef_search", 40_000, "ef_search is 40000; the most this server accepts is 32768"),
        ("ef_search", 0, "ef_search must be a positive integer"),
        ("nprobe", 70_000, "nprobe is 70000"),
        ("ef_search", True, "ef_search must be a positive integer"),
    ):
        with pytest.raises(ValueError, match=message):
            corpus.search(vectors[0], 5, **{knob: value})
    for ef in np.arange(10, 310):  # a caller sweeping the beam width (numpy integers are fine)
        assert corpus.search(vectors[0], 5, ef_search=ef)[0][0].id == "0"
    assert len(corpus.ann._params_cache) <= 64
    corpus.close()
    # A numpy integer in a config is kept as a plain int, so the manifest stays JSON.
    numpy_config = IndexConfig(factory="HNSW16", ef_search=np.int64(48), use_gpu=False)
    numpy_config.validate()
    assert numpy_config.ef_search == 48 and type(numpy_config.ef_search) is int


def test_media_bytes_are_read_only_when_asked_for(tmp_path: Path) -> None:
    """Hits, ids-only reads and deletes by filter never copy the stored media; `get` does unless told not to."""
    from tests.conftest import MEDIA

    clips = {p.name: p.read_bytes() for p in sorted(MEDIA.glob("*.mp4"))}
    assert len(clips) >= 3, f"expected the real clips in {MEDIA}"
    config = IndexConfig(factory="HNSW16", use_gpu=False)
    corpus = Corpus.create(tmp_path / "c", name="c", space="s", modality="video", dim=DIM, index=config)
    vectors = unit_rows(len(clips) * 20, seed=21)
    names = list(clips)
    corpus.upsert(
        [
            Item(id=f"v{i}", vector=v, data=clips[names[i % len(names)]], metadata={"clip": names[i % len(names)]})
            for i, v in enumerate(vectors)
        ]
    )
    corpus.rebuild()
    (hits,) = corpus.search(vectors[0], 5)
    assert hits[0].id == "v0" and hits[0].metadata == {"clip": names[0]}
    full, light = corpus.get(["v1"]), corpus.get(["v1"], with_data=False)
    assert full[0].data == clips[names[1]] and light[0].data is None
    assert light[0].metadata == full[0].metadata and np.array_equal(light[0].vector, full[0].vector)
    assert corpus.delete(filter={"clip": {"eq": names[0]}}).count == 20
    assert len(corpus) == len(vectors) - 20 and not corpus.get(["v0"])
    corpus.close()


def test_payload_rows_come_from_the_right_chunk_and_chunks_stay_few(tmp_path: Path) -> None:
    corpus = Corpus.create(tmp_path / "c", name="c", space="s", modality="text", dim=DIM)
    vectors = unit_rows(2100, seed=23)
    expected: dict[str, tuple[str, dict]] = {}
    for batch in range(300):  # 300 small writes, the kind a streaming ingest makes
        items = []
        for j in range(7):
            n = batch * 7 + j
            item_id = f"i{n % 1500}"  # the last 600 replace earlier ids
            metadata = {"n": n, **({"late": f"x{n}"} if batch >= 150 else {})}
            items.append(Item(id=item_id, vector=vectors[n], text=f"passage {n}", metadata=metadata))
            expected[item_id] = (f"passage {n}", metadata)
        corpus.upsert(items)
    assert len(corpus) == 1500
    assert len(corpus.store._chunks) <= 12  # log2(2100 / 7) + 2, not 300
    asked = [f"i{k}" for k in np.random.default_rng(3).permutation(1500)[:400]]
    for item in corpus.get(asked, with_vectors=False):
        assert (item.text, item.metadata) == expected[item.id]
    assert [item.id for item in corpus.get(asked)] == asked
    for row, hits in enumerate(corpus.search(vectors[2090:2100], 5)):
        assert hits[0].id == f"i{(2090 + row) % 1500}"
        for hit in hits:
            assert (hit.text, hit.metadata) == expected[hit.id]
    corpus.close()


def test_chunks_holding_media_stop_merging_at_the_byte_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tessera.index.store

    monkeypatch.setattr(tessera.index.store, "MERGE_BYTES", 1 << 20)
    corpus = Corpus.create(tmp_path / "c", name="c", space="s", modality="image", dim=DIM)
    vectors = unit_rows(64, seed=29)
    blob = bytes(range(256)) * 400  # 100 KB per item
    for start in range(0, 64, 4):
        corpus.upsert([Item(id=str(i), vector=vectors[i], data=blob) for i in range(start, start + 4)])
    chunks = corpus.store._chunks
    assert all(c.nbytes <= 1 << 20 for c in chunks) and len(chunks) >= 6  # 6.4 MB in chunks of at most 1 MB
    assert [item.id for item in corpus.get(["63", "0", "31"])] == ["63", "0", "31"]
    assert corpus.get(["31"])[0].data == blob
    corpus.close()
