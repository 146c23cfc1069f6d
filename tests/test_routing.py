"""Routing and fusion across corpora of one space, on real FAISS corpora with a built-in modality gap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tessera.index.catalog import Catalog, CorpusNotFoundError
from tessera.index.items import Item
from tessera.index.routing import Query, QueryPart, Router, RoutingError, gram_volume

DIM = 48
CLASSES = 8


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture()
def gapped(tmp_path: Path):
    """Text and image corpora whose vectors share a class direction but sit in modality-specific cones.

    Few texts per class (5) and many images (25): a text query's raw top-20 fills
    up with texts of other classes before it reaches relevant images.
    """
    rng = np.random.default_rng(0)
    classes = unit(rng.standard_normal((CLASSES, DIM)))
    offsets = {"text": unit(rng.standard_normal(DIM)) * 1.5, "image": unit(rng.standard_normal(DIM)) * 1.5}
    catalog = Catalog(tmp_path)
    for modality, count in (("text", 40), ("image", 200)):
        corpus = catalog.create(f"{modality}s", space="s@1", modality=modality, dim=DIM)
        items = []
        for i in range(count):
            label = i % CLASSES
            v = unit(classes[label] + offsets[modality] + 0.15 * rng.standard_normal(DIM))
            items.append(Item(id=f"{modality}-{i}", vector=v, metadata={"label": label}))
        corpus.upsert(items)
    other = catalog.create("elsewhere", space="other@1", modality="text", dim=DIM)
    other.upsert([Item(id="x", vector=unit(rng.standard_normal(DIM)))])
    yield catalog, classes, offsets
    catalog.close()


def text_query(classes: np.ndarray, offsets: dict, label: int, **kw: object) -> Query:
    return Query(parts=[QueryPart("text", unit(classes[label] + offsets["text"]))], space="s@1", top_k=20, **kw)


def test_routing_picks_the_space_and_says_what_it_skipped(gapped) -> None:
    catalog, classes, offsets = gapped
    router = Router(catalog)
    result = router.search(text_query(classes, offsets, 0))
    assert sorted(result.searched) == ["images", "texts"]
    assert result.skipped == [{"corpus": "elsewhere", "reason": "in space other@1, query is s@1"}]
    only_images = router.search(text_query(classes, offsets, 0, target_modalities=["image"]))
    assert only_images.searched == ["images"] and {h.corpus for h in only_images.hits} == {"images"}
    named = router.search(text_query(classes, offsets, 0, corpora=["texts", "elsewhere"]))
    assert named.searched == ["texts"] and named.skipped[0]["corpus"] == "elsewhere"
    with pytest.raises(CorpusNotFoundError):
        router.search(text_query(classes, offsets, 0, corpora=["missing"]))
    with pytest.raises(RoutingError, match="fusion"):
        router.search(text_query(classes, offsets, 0, fusion="magic"))


def test_calibration_undoes_the_modality_gap(gapped) -> None:
    catalog, classes, offsets = gapped
    router = Router(catalog)
    shares, precision = {}, {}
    for fusion in ("raw", "calibrated", "pair", "rrf"):
        images, relevant = 0, 0
        for label in range(CLASSES):
            hits = router.search(text_query(classes, offsets, label, fusion=fusion)).hits
            images += sum(h.modality == "image" for h in hits)
            relevant += sum(h.metadata["label"] == label for h in hits)
            for h in hits:  # every hit says where it came from and both of its scores
                assert h.corpus in ("texts", "images") and np.isfinite(h.raw_score) and np.isfinite(h.calibrated_score)
        shares[fusion] = images / (CLASSES * 20)
        precision[fusion] = relevant / (CLASSES * 20)
    assert shares["raw"] < 0.1  # the gap: a text query's raw top-20 is nearly all text
    assert precision["calibrated"] > precision["raw"] + 0.2
    assert precision["pair"] > precision["raw"] + 0.2
    assert shares["calibrated"] > 0.5 and shares["pair"] > 0.5  # 15 of a class's 30 relevant items are images
    assert shares["rrf"] == pytest.approx(0.5)


def test_filters_apply_across_corpora(gapped) -> None:
    catalog, classes, offsets = gapped
    hits = Router(catalog).search(text_query(classes, offsets, 1, filter={"label": {"in": [2, 3]}})).hits
    assert hits and all(h.metadata["label"] in (2, 3) for h in hits)


def test_symile_query_is_one_product_search(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    items = unit(rng.standard_normal((300, DIM)))
    with Catalog(tmp_path) as catalog:
        corpus = catalog.create("audio", space="sym@1", modality="audio", dim=DIM, similarity="mip")
        corpus.upsert([Item(id=str(i), vector=v) for i, v in enumerate(items)])
        a, b = unit(rng.standard_normal(DIM)), unit(rng.standard_normal(DIM))
        query = Query(parts=[QueryPart("text", a), QueryPart("image", b)], space="sym@1", top_k=10)
        hits = Router(catalog).search(query).hits
        mip = items @ (a * b)
        assert [h.id for h in hits] == [str(i) for i in np.argsort(-mip)[:10]]
        np.testing.assert_allclose([h.raw_score for h in hits], np.sort(mip)[::-1][:10], atol=1e-6)


def test_gram_query_reranks_by_exact_volume(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    items = unit(rng.standard_normal((150, DIM)))
    with Catalog(tmp_path) as catalog:
        corpus = catalog.create("video", space="gram@1", modality="video", dim=DIM, similarity="gram")
        corpus.upsert([Item(id=str(i), vector=v) for i, v in enumerate(items)])
        a, b = unit(rng.standard_normal(DIM)), unit(rng.standard_normal(DIM))
        query = Query(parts=[QueryPart("text", a), QueryPart("audio", b)], space="gram@1", top_k=5)
        hits = Router(catalog).search(query).hits  # 5 * 10 candidates out of 150, re-ranked
        volumes = np.array([gram_volume(np.stack([a, b, v])) for v in items])
        candidates = np.argsort(-(items @ unit(a + b)))[:50]
        want = candidates[np.argsort(volumes[candidates])[:5]]
        assert [h.id for h in hits] == [str(i) for i in want]
        np.testing.assert_allclose([h.raw_score for h in hits], 1 - volumes[want], atol=1e-5)


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_gram_volume_equals_product_of_singular_values(k: int) -> None:
    v = unit(np.random.default_rng(k).standard_normal((k, 64)))
    assert gram_volume(v) == pytest.approx(np.prod(np.linalg.svd(v.astype(np.float64), compute_uv=False)), abs=1e-5)
    if k == 2:
        assert gram_volume(v) == pytest.approx(np.sqrt(1 - float(v[0] @ v[1]) ** 2), abs=1e-5)


def test_parts_that_cancel_out_are_refused_with_a_reason_not_a_nan() -> None:
    from tessera.index.routing import compose

    v = np.ones(4, dtype=np.float32)
    with pytest.raises(RoutingError, match="cancel out"):
        compose([QueryPart("vector", v, 1.0), QueryPart("vector", -v, 1.0)], "cosine")
    with pytest.raises(RoutingError, match="cancel out"):
        compose([QueryPart("vector", v, 1e-45)], "cosine")
    np.testing.assert_allclose(compose([QueryPart("vector", v, 2.0)], "cosine"), v / 2.0)


def test_a_corpus_dropped_and_made_again_is_calibrated_from_its_new_data(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    q = unit(rng.standard_normal(DIM))
    query = Query(parts=[QueryPart("text", q)], space="s@1", top_k=5)

    def make(pull: float) -> np.ndarray:
        vectors = unit(pull * q + rng.standard_normal((200, DIM)).astype(np.float32))
        corpus = catalog.create("items", space="s@1", modality="text", dim=DIM)
        corpus.upsert([Item(id=str(i), vector=v) for i, v in enumerate(vectors)])
        return vectors

    def offset(vectors: np.ndarray) -> float:  # what a top match scores: the mean of the best 10 (all 200 sampled)
        return float(np.sort(vectors @ q)[-10:].mean())

    with Catalog(tmp_path) as catalog:
        router = Router(catalog)
        old = make(3.0)  # items near the query
        for hit in router.search(query).hits:
            assert hit.calibrated_score == pytest.approx(hit.raw_score - offset(old), abs=1e-5)
        catalog.drop("items")
        new = make(-3.0)  # the same name and size, items far from the query
        assert offset(old) - offset(new) > 0.5  # statistics of the old data would be far off
        hits = router.search(query).hits
        assert len(hits) == 5
        for hit in hits:
            assert hit.calibrated_score == pytest.approx(hit.raw_score - offset(new), abs=1e-5)


def test_hits_carry_their_vectors_from_the_search_itself(gapped) -> None:
    catalog, classes, offsets = gapped
    hits = Router(catalog).search(text_query(classes, offsets, 0, with_vectors=True)).hits
    stored = {i.id: i.vector for c in catalog.corpora() for i in c.get([h.id for h in hits], with_data=False)}
    assert hits and all(np.array_equal(h.vector, stored[h.id]) for h in hits)
    assert all(h.vector is None for h in Router(catalog).search(text_query(classes, offsets, 0)).hits)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"top_k": 0}, "top_k must be a positive integer"),
        ({"top_k": "10"}, "top_k must be a positive integer"),
        ({"fusion": "magic"}, "fusion must be one of"),
        ({"parts": []}, "at least one part"),
        ({"parts": [QueryPart("text", np.ones(4, np.float32), float("nan"))]}, "finite numbers"),
        ({"target_modalities": ["smell"]}, "unknown modality"),
        ({"filter": {"year": {"between": [1, 2]}}}, "filter"),
        ({"ef_search": -1}, "ef_search must be a positive integer"),
    ],
)
def test_a_query_is_refused_when_it_is_made_with_the_reason(change: dict, message: str) -> None:
    fields = {"parts": [QueryPart("text", np.ones(4, np.float32))], "space": "s@1", **change}
    with pytest.raises(ValueError, match=message):
        Query(**fields)
