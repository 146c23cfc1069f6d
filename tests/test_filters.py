"""The metadata filter language: semantics, exact filtered search with FAISS, and errors that name the clause."""

from __future__ import annotations

import faiss
import numpy as np
import pyarrow as pa
import pytest

from tessera.index.filters import FilterError, compile_filter, operators_used


@pytest.fixture(scope="module")
def payloads() -> pa.Table:
    rng = np.random.default_rng(7)
    n = 2000
    genres = np.array(["jazz", "rock", "folk", "pop"])
    tags = [
        list(rng.choice(["live", "remaster", "demo", "mono"], size=rng.integers(0, 3), replace=False)) for _ in range(n)
    ]
    lang = [None if i % 5 == 0 else ("en" if i % 2 else "fr") for i in range(n)]
    return pa.table(
        {
            "row_id": np.arange(n, dtype=np.int64) * 3 + 11,  # FAISS ids need not be positions
            "genre": genres[rng.integers(0, 4, n)],
            "year": rng.integers(1950, 2025, n),
            "score": rng.random(n),
            "tags": pa.array(tags, type=pa.list_(pa.string())),
            "lang": pa.array(lang, type=pa.string()),
        }
    )


def _rows(payloads: pa.Table, spec: dict) -> np.ndarray:
    return compile_filter(spec).mask(payloads)


def test_operators_match_python_semantics(payloads: pa.Table) -> None:
    rows = payloads.to_pylist()
    cases = {
        "eq": ({"genre": {"eq": "jazz"}}, lambda r: r["genre"] == "jazz"),
        "ne": ({"lang": {"ne": "en"}}, lambda r: r["lang"] != "en"),
        "in": ({"genre": {"in": ["rock", "folk"]}}, lambda r: r["genre"] in ("rock", "folk")),
        "range": ({"year": {"range": {"gte": 1990, "lt": 2000}}}, lambda r: 1990 <= r["year"] < 2000),
        "exists": ({"lang": {"exists": True}}, lambda r: r["lang"] is not None),
        "not exists": ({"lang": {"exists": False}}, lambda r: r["lang"] is None),
        "list eq": ({"tags": {"eq": "live"}}, lambda r: "live" in r["tags"]),
        "list in": ({"tags": {"in": ["demo", "mono"]}}, lambda r: bool({"demo", "mono"} & set(r["tags"]))),
        "and/or/not": (
            {
                "or": [
                    {"genre": {"eq": "pop"}},
                    {"and": [{"score": {"range": {"gt": 0.9}}}, {"not": {"lang": {"eq": "fr"}}}]},
                ]
            },
            lambda r: r["genre"] == "pop" or (r["score"] > 0.9 and r["lang"] != "fr"),
        ),
        "implicit and": (
            {"genre": {"eq": "rock"}, "year": {"range": {"lte": 1960}}},
            lambda r: r["genre"] == "rock" and r["year"] <= 1960,
        ),
        "missing field": ({"nope": {"eq": 1}}, lambda r: False),
    }
    for name, (spec, expected) in cases.items():
        got = _rows(payloads, spec)
        want = np.array([expected(r) for r in rows])
        assert (got == want).all(), name
        assert 0 <= want.sum() <= len(rows)
    assert compile_filter(None) is None and compile_filter({}) is None


def test_filtered_exact_search_equals_brute_force(payloads: pa.Table) -> None:
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((payloads.num_rows, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    row_ids = payloads.column("row_id").to_numpy()
    index = faiss.IndexIDMap(faiss.IndexFlatIP(64))
    index.add_with_ids(vectors, row_ids)
    spec = {"and": [{"genre": {"in": ["jazz", "folk"]}}, {"year": {"range": {"gte": 1980}}}]}
    mask = compile_filter(spec).mask(payloads)
    queries = rng.standard_normal((20, 64)).astype(np.float32)
    _, got = index.search(queries, 10, params=faiss.SearchParameters(sel=faiss.IDSelectorBatch(row_ids[mask])))
    scores = queries @ vectors[mask].T
    want = row_ids[mask][np.argsort(-scores, axis=1)[:, :10]]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"and": [{"genre": {"eq": "jazz"}}, {"year": {"gtt": 3}}]}, "filter.and[1].year: unknown operator 'gtt'"),
        ({"year": {"range": {"above": 3}}}, "filter.year: unknown range bound 'above'"),
        ({"genre": {"in": []}}, "filter.genre: in takes a non-empty list"),
        ({"or": {}}, "filter.or: or takes a non-empty list"),
        ({"not": "jazz"}, "filter.not: expected a non-empty JSON object"),
        ({"genre": "jazz"}, "filter.genre: expected one operator object"),
        ({"lang": {"exists": "yes"}}, "filter.lang: exists takes true or false"),
        ({"genre": {"eq": [1, 2]}}, "filter.genre: eq takes one non-null scalar"),
    ],
)
def test_malformed_filters_name_the_clause(spec: dict, message: str) -> None:
    with pytest.raises(FilterError) as info:
        compile_filter(spec)
    assert str(info.value).startswith(message)


def test_type_mismatch_names_the_clause(payloads: pa.Table) -> None:
    with pytest.raises(FilterError, match=r"filter.genre: cannot compare field 'genre' of type string"):
        compile_filter({"genre": {"range": {"gt": 3}}}).mask(payloads)


def test_deep_nesting_is_refused() -> None:
    spec: dict = {"genre": {"eq": "jazz"}}
    for _ in range(40):
        spec = {"not": spec}
    with pytest.raises(FilterError, match="deeper than 32"):
        compile_filter(spec)


@pytest.mark.parametrize(
    ("spec", "used"),
    [
        ({"year": {"range": {"gte": 1990}}}, {"range"}),
        ({"range": {"eq": "range"}}, {"eq"}),  # a field and a value named like the operator are neither
        ({"kind": {"in": ["range", "eq"]}}, {"in"}),
        (
            {"or": [{"a": {"eq": 1}}, {"not": {"b": {"range": {"lt": 2}}}}], "c": {"exists": True}},
            {"eq", "range", "exists"},
        ),
        ({"and": [{"not": {"a": {"ne": 1}}}]}, {"ne"}),
    ],
)
def test_operators_used_walks_the_structure(spec: dict, used: set[str]) -> None:
    compile_filter(spec)  # every case is a valid filter
    assert operators_used(spec) == used
