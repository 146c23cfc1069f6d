"""The index-spec grammar (index/spec.py): what it accepts FAISS builds; what it refuses names the part."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest

from tessera.index.catalog import Catalog
from tessera.index.corpus import BUILD_FAILED, Corpus
from tessera.index.items import Item
from tessera.index.spec import IndexSpecError, parse_factory

ACCEPTED = [
    "Flat",
    "IDMap,Flat",
    "HNSW4",
    "HNSW32",
    "HNSW256",
    "HNSW32_Flat",
    "HNSW32_SQ8",
    "HNSW16_PQ8",
    "IVF1,Flat",
    "IVF1024,Flat",
    "IVF256,SQ8",
    "IVF256,SQfp16",
    "IVF256,PQ16",
    "IVF256,PQ16x10",
    "IVF256,PQ16x4fs",
    "IVF256,PQ16x4fsr",
    "IVF64_HNSW32,Flat",
    "OPQ16_64,IVF256,PQ16",
    "PCA32,Flat",
    "PCAR32,HNSW32",
    "L2norm,HNSW32",
    "PQ16",
    "SQ8",
]

REFUSED = {
    "HNSW0": "HNSW needs M between 4 and 256, got 0",
    "HNSW1": "HNSW needs M between 4 and 256",
    "HNSW100000": "HNSW needs M between 4 and 256",
    "IVF0,Flat": "('IVF0'): IVF needs a number of lists between 1 and",
    "IVF999999999,Flat": "('IVF999999999'): IVF needs a number of lists",
    "IVF16": "IVF takes one encoding",
    "IVF16,Flat,junk": "IVF takes one encoding",
    "IVF16,PQ7": "('PQ7'): PQ's sub-quantizers must divide the dimension 64",
    "IVF16,PQ8x99": "PQ needs bits per code between 1 and 12, got 99",
    "IVF16,PQ8x0": "PQ needs bits per code",
    "PQ0": "PQ needs at least 1 sub-quantizer",
    "OPQ7_64,IVF16,PQ8": "not a multiple of M 7",
    "PCA100,Flat": "PCA's output dimension must be between 1 and 64",
    "NSG32": "not an index Tessera knows",
    "LSH": "not an index Tessera knows",
    "IVF16(IVF4,Flat),Flat": "unexpected after the index",
    "HNSW32,Flat": "nothing follows an HNSW index",
    "HNSW32_junk": "after 'HNSW32_' comes",
    "Flat,,Flat": "an empty component",
    "RFlat": "refine stage is not offered",
    "IVF16,Flat,RFlat": "refine stage is not offered",
    "OPQ8_64,L2norm": "no index after the transforms",
    "HNSW 32": "no spaces",
    "HNSW32\n": "no spaces",
    "HNSW\x0032": "no spaces",
    "ＨNSW32": "no spaces",
    "": "the factory string is empty",
    "HNSW32,Refine(SQ8)": "re-scores every hit by exact cosine",
}


@pytest.mark.parametrize("factory", ACCEPTED)
def test_accepted_specs_build_in_faiss(factory: str) -> None:
    parse_factory(factory, 64)
    index = faiss.index_factory(64, factory, faiss.METRIC_INNER_PRODUCT)
    assert index.d == 64


@pytest.mark.parametrize(("factory", "message"), REFUSED.items())
def test_refused_specs_name_the_part(factory: str, message: str) -> None:
    with pytest.raises(IndexSpecError) as caught:
        parse_factory(factory, 64)
    assert message in str(caught.value)
    assert ".cpp" not in str(caught.value) and "Error in" not in str(caught.value)


def test_long_specs_are_quoted_cut_short() -> None:
    with pytest.raises(IndexSpecError) as caught:
        parse_factory("IVF" + "9" * 10_000 + ",Flat", 64)
    assert len(str(caught.value)) < 200 and "10008 chars" in str(caught.value)


def test_nlist_is_bounded_by_centroid_memory() -> None:
    parse_factory("IVF65536,Flat", 384)
    with pytest.raises(IndexSpecError, match="between 1 and 699050"):
        parse_factory("IVF700000,Flat", 384)


@pytest.mark.parametrize("factory", ["HNSW0", "IVF0,Flat", "IVF999999999,Flat", "IVF16,PQ7", "bogus"])
def test_catalog_refuses_at_create_and_writes_nothing(tmp_path: Path, factory: str) -> None:
    with Catalog(tmp_path) as catalog:
        with pytest.raises(ValueError, match="index"):
            catalog.create("c", space="raw:64", modality="vector", dim=64, index=factory)
        assert catalog.names() == []


def test_a_corpus_made_before_the_grammar_opens_exact_and_says_why(tmp_path: Path) -> None:
    """A manifest carrying HNSW0 (accepted before index/spec.py; its build aborted the process)."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(1200, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    corpus = Corpus.create(tmp_path / "old", name="old", space="raw:16", modality="vector", dim=16)
    corpus.upsert([Item(id=str(i), vector=v) for i, v in enumerate(vectors)])
    corpus.close()
    manifest_path = tmp_path / "old" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["index"]["factory"] = "HNSW0"
    manifest.pop("checksum", None)  # as a manifest written before manifests carried their own digest
    manifest_path.write_text(json.dumps(manifest))

    reopened = Corpus.open(tmp_path / "old")
    reopened.wait_idle()
    described = reopened.describe()["index"]
    assert described["searching"] == "exact" and described["state"] == BUILD_FAILED
    assert "HNSW needs M between 4 and 256" in described["last_build"]["reason"]
    assert reopened.search(vectors[7], 1)[0][0].id == "7"
    reopened.close()
