"""The corpus behaviour both backends share: a local FAISS corpus and a Milvus one (a real
`milvus-lite server` on 127.0.0.1, reached over Milvus's gRPC protocol by pymilvus) give the same
answers to the same calls: exact search, every filter operator, get, delete, upsert, routing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.milvus_server import MilvusLiteServer
from tessera.index.catalog import Catalog, CorpusExistsError, CorpusNotFoundError
from tessera.index.filters import FilterError
from tessera.index.items import Item, ItemError
from tessera.index.milvus_store import MilvusStore, collection_name, corpus_name
from tessera.index.routing import Query, QueryPart, Router

BACKENDS = ("local", "milvus")
DIM = 32
N = 300


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def milvus(tmp_path_factory: pytest.TempPathFactory):
    with MilvusLiteServer(tmp_path_factory.mktemp("milvus") / "data") as server:
        yield server


@pytest.fixture()
def catalog(tmp_path: Path, milvus: MilvusLiteServer):
    with Catalog(tmp_path / "data", milvus=MilvusStore(milvus.uri)) as catalog:
        yield catalog
        for name in catalog.names():  # the Milvus server outlives the test: leave it empty
            catalog.drop(name)


def records(n: int = N, seed: int = 0) -> list[Item]:
    """Items whose metadata exercises every operator: strings, ints, floats, bools, lists, nulls, missing keys."""
    rng = np.random.default_rng(seed)
    vectors = unit(rng.standard_normal((n, DIM)))
    genres = ["jazz", "rock", "folk", "pop"]
    out = []
    for i in range(n):
        metadata: dict = {"genre": genres[i % 4], "year": 1950 + (i * 7) % 75, "score": round(float(rng.random()), 4)}
        metadata["tags"] = [t for j, t in enumerate(("live", "remaster", "demo", "mono")) if (i >> j) & 1]
        if i % 5:
            metadata["lang"] = "en" if i % 2 else "fr"
        if i % 3 == 0:
            metadata["explicit"] = bool(i % 2)
        if i % 11 == 0:
            metadata["genre"] = None  # a null: matches nothing but ne and exists false
        out.append(
            Item(id=f"item-{i}", vector=vectors[i], text=f"text {i}", uri=f"file:///m/{i}.wav", metadata=metadata)
        )
    return out


def make(catalog: Catalog, backend: str, name: str = "docs", index: str = "Flat", items: list[Item] | None = None):
    corpus = catalog.create(name, space="s@1", modality="text", dim=DIM, index=index, backend=backend)
    corpus.upsert(records() if items is None else items)
    return corpus


FILTERS = {
    "eq": ({"genre": {"eq": "jazz"}}, lambda m: m.get("genre") == "jazz"),
    "eq int": ({"year": {"eq": 1957}}, lambda m: m["year"] == 1957),
    "eq bool": ({"explicit": {"eq": True}}, lambda m: m.get("explicit") is True),
    "ne (missing and null match)": ({"genre": {"ne": "rock"}}, lambda m: m.get("genre") != "rock"),
    "in": ({"genre": {"in": ["rock", "folk"]}}, lambda m: m.get("genre") in ("rock", "folk")),
    "range": ({"year": {"range": {"gte": 1990, "lt": 2000}}}, lambda m: 1990 <= m["year"] < 2000),
    "range float": ({"score": {"range": {"gt": 0.25, "lte": 0.5}}}, lambda m: 0.25 < m["score"] <= 0.5),
    "range string": ({"lang": {"range": {"gte": "f", "lt": "g"}}}, lambda m: "f" <= m.get("lang", "") < "g"),
    "exists": ({"lang": {"exists": True}}, lambda m: "lang" in m),
    "exists false": ({"lang": {"exists": False}}, lambda m: "lang" not in m),
    "exists over null": ({"genre": {"exists": True}}, lambda m: m.get("genre") is not None),
    "list eq": ({"tags": {"eq": "live"}}, lambda m: "live" in m["tags"]),
    "list in": ({"tags": {"in": ["demo", "mono"]}}, lambda m: bool({"demo", "mono"} & set(m["tags"]))),
    "not": ({"not": {"lang": {"eq": "fr"}}}, lambda m: m.get("lang") != "fr"),
    "and/or/not": (
        {
            "or": [
                {"genre": {"eq": "pop"}},
                {"and": [{"score": {"range": {"gt": 0.9}}}, {"not": {"tags": {"eq": "demo"}}}]},
            ]
        },
        lambda m: m.get("genre") == "pop" or (m["score"] > 0.9 and "demo" not in m["tags"]),
    ),
    "implicit and": (
        {"genre": {"eq": "rock"}, "year": {"range": {"lte": 1980}}},
        lambda m: m.get("genre") == "rock" and m["year"] <= 1980,
    ),
    "missing field": ({"nope": {"eq": 1}}, lambda m: False),
}


def test_collection_names_round_trip_and_refuse_what_milvus_cannot_hold() -> None:
    for name in ("docs", "a-b.c_d", "x__y", "9lives", "a_h"):
        collection = collection_name(name)
        assert collection.startswith("tessera_") and corpus_name(collection) == name
        assert all(ch.isalnum() or ch == "_" for ch in collection)
    assert corpus_name("someone_elses") is None and corpus_name("tessera_bad_z") is None
    with pytest.raises(ValueError, match="too long for the milvus backend"):
        collection_name("a" + "-" * 127)


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_filter_operator_selects_what_python_says(catalog: Catalog, backend: str) -> None:
    items = records()
    corpus = make(catalog, backend, items=items)
    query = items[0].vector
    for name, (spec, expected) in FILTERS.items():
        want = {item.id for item in items if expected(item.metadata)}
        hits = corpus.search(query, k=N, filter=spec)[0]
        assert {h.id for h in hits} == want, (backend, name)
        assert all(expected(h.metadata) for h in hits), (backend, name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_malformed_filters_fail_alike_and_milvus_refuses_what_it_cannot_say(catalog: Catalog, backend: str) -> None:
    corpus = make(catalog, backend)
    query = records()[0].vector
    with pytest.raises(FilterError, match=r"filter\.and\[1\]\.year: unknown operator 'gtt'"):
        corpus.search(query, k=5, filter={"and": [{"genre": {"eq": "x"}}, {"year": {"gtt": 3}}]})
    with pytest.raises(FilterError, match="in takes a non-empty list"):
        corpus.search(query, k=5, filter={"genre": {"in": []}})
    range_over_list = {"tags": {"range": {"gt": "a"}}}
    if backend == "milvus":
        with pytest.raises(FilterError, match=r"filter\.tags: range over \"tags\", a field that holds lists"):
            corpus.search(query, k=5, filter=range_over_list)
    else:
        assert corpus.search(query, k=5, filter=range_over_list)[0]


def test_exact_search_gives_the_same_ids_in_the_same_order_on_both_backends(catalog: Catalog) -> None:
    local, milvus = make(catalog, "local", "here"), make(catalog, "milvus", "there")
    queries = unit(np.random.default_rng(5).standard_normal((20, DIM)))
    for spec in (None, {"genre": {"in": ["jazz", "pop"]}}):
        a, b = local.search(queries, k=10, filter=spec), milvus.search(queries, k=10, filter=spec)
        for hits_a, hits_b in zip(a, b, strict=True):
            assert [h.id for h in hits_a] == [h.id for h in hits_b]
            np.testing.assert_allclose([h.score for h in hits_a], [h.score for h in hits_b], atol=1e-5)
            assert [h.metadata for h in hits_a] == [h.metadata for h in hits_b]
            assert [(h.text, h.uri) for h in hits_a] == [(h.text, h.uri) for h in hits_b]
    with_vectors = milvus.search(queries[:2], k=3, with_vectors=True)
    for row, query in zip(with_vectors, queries[:2], strict=True):
        for hit in row:
            assert hit.vector is not None and hit.score == pytest.approx(float(hit.vector @ query), abs=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_get_upsert_and_delete_by_ids_and_filter(catalog: Catalog, backend: str) -> None:
    items = records()
    corpus = make(catalog, backend, items=items)
    assert len(corpus) == N
    got = corpus.get(["item-7", "missing", "item-3"])
    assert [i.id for i in got] == ["item-7", "item-3"]  # the order asked; unknown ids left out
    np.testing.assert_allclose(got[0].vector, items[7].vector, atol=1e-6)
    assert got[0].metadata == {k: v for k, v in items[7].metadata.items() if v is not None}
    assert (got[1].text, got[1].uri) == ("text 3", "file:///m/3.wav")
    # Upsert replaces by id: a new vector and new metadata, the count unchanged.
    moved = unit(np.ones(DIM))
    assert corpus.upsert([Item(id="item-7", vector=moved, metadata={"genre": "moved"})]).count == 1
    assert len(corpus) == N and corpus.get(["item-7"])[0].metadata == {"genre": "moved"}
    assert corpus.search(moved, k=1)[0][0].id == "item-7"
    # Delete by ids counts only what was there; by filter counts what matched.
    assert corpus.delete(ids=["item-1", "item-2", "nope", "item-1"]).count == 2
    jazz = {i.id for i in items if i.metadata.get("genre") == "jazz"} - {"item-1", "item-2"}
    assert corpus.delete(filter={"genre": {"eq": "jazz"}}).count == len(jazz)
    assert len(corpus) == N - 2 - len(jazz)
    assert not corpus.get(["item-1", "item-2", *jazz])
    left = {h.id for h in corpus.search(items[0].vector, k=N)[0]}
    assert not left & ({"item-1", "item-2"} | jazz) and len(left) == N - 2 - len(jazz)
    with pytest.raises(ValueError, match="an empty filter would delete everything"):
        corpus.delete(filter={})
    with pytest.raises(ItemError, match="dimension 3"):
        corpus.upsert([Item(id="bad", vector=[1.0, 0.0, 0.0])])
    with pytest.raises(ItemError, match="mixes types"):
        corpus.upsert(
            [Item(id="m1", vector=moved, metadata={"x": 1}), Item(id="m2", vector=moved, metadata={"x": "a"})]
        )
    assert len(corpus) == N - 2 - len(jazz)  # refused batches wrote nothing


@pytest.mark.parametrize("backend", BACKENDS)
def test_ids_shaped_like_expressions_are_only_ids(catalog: Catalog, backend: str) -> None:
    corpus = make(catalog, backend)
    odd = ['it\'s "quoted" \\ back', "x'] or id != '", 'y"] or id != "', "ünï ☃"]
    vectors = unit(np.random.default_rng(3).standard_normal((len(odd), DIM)))
    corpus.upsert([Item(id=i, vector=v) for i, v in zip(odd, vectors, strict=True)])
    assert [i.id for i in corpus.get(odd)] == odd
    assert corpus.search(vectors[1], k=1)[0][0].id == odd[1]
    # Deleting ids that look like expressions deletes those ids, nothing else.
    assert corpus.delete(ids=["nope'] or id != '", 'nope"] or id != "']).count == 0
    assert corpus.delete(ids=odd[1:3]).count == 2
    assert len(corpus) == N + 2 and [i.id for i in corpus.get(odd)] == [odd[0], odd[3]]


def test_milvus_index_specs_map_or_are_refused_by_name(catalog: Catalog) -> None:
    for spec, milvus_type in (("HNSW16", "HNSW"), ("IVF8,Flat", "IVF_FLAT"), ("Flat", "FLAT")):
        corpus = make(catalog, "milvus", f"c-{milvus_type.lower()}", index=spec)
        info = corpus.describe()
        assert info["backend"] == "milvus" and info["index"]["searching"] == milvus_type, info
        hits = corpus.search(records()[4].vector, k=5)[0]
        assert hits[0].id == "item-4" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    for spec in ("OPQ8,IVF16,PQ8", "HNSW32_SQ8", "IVF16_HNSW32,Flat", "PCA16,Flat"):
        with pytest.raises(ValueError, match="has no Milvus equivalent"):
            catalog.create("refused", space="s@1", modality="text", dim=DIM, index=spec, backend="milvus")
    assert "refused" not in catalog.names()
    with pytest.raises(ValueError, match="unknown backend 'faiss'"):
        catalog.create("x", space="s@1", modality="text", dim=DIM, backend="faiss")


def test_one_name_is_one_corpus_across_backends_and_replicas_see_each_other(
    catalog: Catalog, milvus: MilvusLiteServer, tmp_path: Path
) -> None:
    make(catalog, "milvus", "shared.corpus-1")
    make(catalog, "local", "mine")
    with pytest.raises(CorpusExistsError):
        catalog.create("shared.corpus-1", space="s@1", modality="text", dim=DIM, backend="local")
    with pytest.raises(CorpusExistsError):
        catalog.create("mine", space="s@1", modality="text", dim=DIM, backend="milvus")
    # A second catalog on its own data directory and the same Milvus: a replica.
    with Catalog(tmp_path / "replica", milvus=MilvusStore(milvus.uri)) as replica:
        assert replica.names() == ["shared.corpus-1"]
        theirs = replica.get("shared.corpus-1")
        assert len(theirs) == N and theirs.describe()["backend"] == "milvus"
        catalog.get("shared.corpus-1").upsert([Item(id="new", vector=unit(np.ones(DIM)))])
        assert replica.get("shared.corpus-1").get(["new"])[0].id == "new"  # a write through one, read through the other
        catalog.drop("shared.corpus-1")
        with pytest.raises(CorpusNotFoundError):
            theirs.search(unit(np.ones(DIM)), k=1)
        assert replica.names() == []


@pytest.mark.parametrize("similarity", ["mip", "gram"])
def test_composite_queries_rank_alike_on_both_backends(catalog: Catalog, tmp_path: Path, similarity: str) -> None:
    """Symile's MIP is one inner-product search of the parts' product; GRAM re-ranks candidates by volume
    with the vectors Milvus returns. Both give the local backend's ids, order and scores."""
    items = records(200, seed=9)
    catalog.create(
        "m", space=f"{similarity}@1", modality="text", dim=DIM, similarity=similarity, backend="milvus"
    ).upsert(items)
    rng = np.random.default_rng(4)
    with Catalog(tmp_path / "local-only") as local:
        local.create("m", space=f"{similarity}@1", modality="text", dim=DIM, similarity=similarity).upsert(items)
        for _ in range(5):
            a, b = unit(rng.standard_normal(DIM)), unit(rng.standard_normal(DIM))
            query = Query(parts=[QueryPart("audio", a), QueryPart("image", b)], space=f"{similarity}@1", top_k=10)
            over_milvus, alone = Router(catalog).search(query).hits, Router(local).search(query).hits
            assert [h.id for h in over_milvus] == [h.id for h in alone]
            np.testing.assert_allclose([h.raw_score for h in over_milvus], [h.raw_score for h in alone], atol=1e-5)


def test_routing_with_calibrated_fusion_across_a_local_and_a_milvus_corpus(catalog: Catalog, tmp_path: Path) -> None:
    """The modality-gap fixture of test_routing.py, texts local and images in Milvus, against the same all local."""
    rng = np.random.default_rng(0)
    classes = unit(rng.standard_normal((8, DIM)))
    offsets = {m: unit(rng.standard_normal(DIM)) * 1.5 for m in ("text", "image")}
    corpora = {}
    for modality, count in (("text", 40), ("image", 200)):
        items = []
        for i in range(count):
            v = unit(classes[i % 8] + offsets[modality] + 0.15 * rng.standard_normal(DIM))
            items.append(Item(id=f"{modality}-{i}", vector=v, metadata={"label": i % 8}))
        corpora[modality] = items
    catalog.create("texts", space="g@1", modality="text", dim=DIM, backend="local").upsert(corpora["text"])
    catalog.create("images", space="g@1", modality="image", dim=DIM, backend="milvus").upsert(corpora["image"])
    with Catalog(tmp_path / "all-local") as reference:
        reference.create("texts", space="g@1", modality="text", dim=DIM).upsert(corpora["text"])
        reference.create("images", space="g@1", modality="image", dim=DIM).upsert(corpora["image"])
        precision = {}
        for fusion in ("raw", "calibrated", "pair"):
            relevant = 0
            for label in range(8):
                query = Query(
                    parts=[QueryPart("text", unit(classes[label] + offsets["text"]))],
                    space="g@1",
                    top_k=20,
                    fusion=fusion,
                )
                mixed, alone = Router(catalog).search(query), Router(reference).search(query)
                assert sorted(mixed.searched) == ["images", "texts"]
                assert [h.id for h in mixed.hits] == [h.id for h in alone.hits], (fusion, label)
                np.testing.assert_allclose(
                    [h.score for h in mixed.hits], [h.score for h in alone.hits], atol=1e-5, err_msg=fusion
                )
                relevant += sum(h.metadata["label"] == label for h in mixed.hits)
            precision[fusion] = relevant / (8 * 20)
    assert precision["calibrated"] > precision["raw"] + 0.2 and precision["pair"] > precision["raw"] + 0.2
