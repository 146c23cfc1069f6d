"""LangChain's own standard integration suites, run against a real Tessera server on 127.0.0.1."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_tests.integration_tests import RetrieversIntegrationTests, VectorStoreIntegrationTests

from tessera.background import ServerThread
from tessera.client import Client
from tessera.integrations.langchain import TesseraRetriever, TesseraVectorStore

RETRIEVER_CORPUS = "retriever-passages"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    thread = ServerThread(tmp_path_factory.mktemp("langchain")).start()
    yield thread
    thread.stop()


class TestTesseraVectorStore(VectorStoreIntegrationTests):
    @pytest.fixture()
    def vectorstore(self, server: ServerThread) -> Iterator[TesseraVectorStore]:  # type: ignore[override]
        name = f"lc-{uuid.uuid4().hex[:12]}"
        store = TesseraVectorStore(name, address=server.address, embedding=self.get_embeddings())
        try:
            yield store
        finally:
            store.client.drop_corpus(name)
            store.client.close()


class TestTesseraRetriever(RetrieversIntegrationTests):
    address = ""

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _passages(cls, server: ServerThread) -> None:
        sentences = resources.files("services").joinpath("samples/sentences.txt").read_text().splitlines()
        with Client(server.address) as client:
            client.create_corpus(RETRIEVER_CORPUS, space="minilm", modality="text")
            client.upsert(RETRIEVER_CORPUS, [{"id": f"s{i}", "text": t} for i, t in enumerate(sentences) if t])
        cls.address = server.address

    @property
    def retriever_constructor(self) -> type[TesseraRetriever]:
        return TesseraRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"address": type(self).address, "corpora": [RETRIEVER_CORPUS], "space": "minilm"}

    @property
    def retriever_query_example(self) -> str:
        return "how does approximate nearest-neighbour search avoid scanning everything?"


def test_vector_store_with_server_side_embedding_filters_and_scores(server: ServerThread) -> None:
    store = TesseraVectorStore.from_texts(
        ["FAISS searches vectors quickly.", "Bread rises in a warm oven.", "HNSW graphs link near neighbours."],
        metadatas=[{"topic": "search"}, {"topic": "food"}, {"topic": "search"}],
        ids=["a", "b", "c"],
        corpus="served",
        address=server.address,
    )
    assert store.space == "minilm" and store.modality == "text"
    hits = store.similarity_search_with_score("nearest neighbour graph index", k=3)
    assert hits[0][0].id == "c"
    assert hits[0][1] >= hits[1][1] >= hits[2][1]  # cosine, best first
    only_food = store.similarity_search("nearest neighbour graph index", k=3, filter={"topic": {"eq": "food"}})
    assert [d.id for d in only_food] == ["b"] and only_food[0].metadata == {"topic": "food"}
    relevance = store.similarity_search_with_relevance_scores("bread", k=1)
    assert relevance[0][0].id == "b" and 0.0 <= relevance[0][1] <= 1.0
    assert store.as_retriever(search_kwargs={"k": 2}).invoke("bread")[0].id == "b"


def test_retriever_metadata_names_corpus_modality_scores_and_uri(server: ServerThread, tmp_path: Path) -> None:
    with Client(server.address) as client:
        client.create_corpus("meta-images", space="digits", modality="image")
        client.create_corpus("meta-text", space="digits", modality="text")
        seven = resources.files("services").joinpath("samples/digits/7.png")
        image = {"id": "7.png", "data": seven.read_bytes(), "uri": "samples/digits/7.png"}
        client.upsert("meta-images", [image], modality="image")
        client.upsert("meta-text", [{"id": "t7", "text": "the number seven", "metadata": {"lang": "en"}}])
    retriever = TesseraRetriever(address=server.address, space="digits", corpora=["meta-images", "meta-text"], k=2)
    docs = retriever.invoke("a handwritten seven")
    by_corpus = {d.metadata["corpus"]: d for d in docs}
    image, text = by_corpus["meta-images"], by_corpus["meta-text"]
    assert image.metadata["modality"] == "image" and image.metadata["uri"] == "samples/digits/7.png"
    assert text.metadata["modality"] == "text" and text.metadata["lang"] == "en" and text.page_content
    for doc in docs:
        assert {"tessera_id", "raw_score", "calibrated_score"} <= set(doc.metadata)
    assert isinstance(docs[0], Document)
