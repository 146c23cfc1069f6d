"""LangChain: a Tessera server as a `VectorStore` and as a `BaseRetriever` (extra `langchain`).

    store = TesseraVectorStore(corpus="docs", address="127.0.0.1:50051")          # server-side MiniLM
    store = TesseraVectorStore(corpus="docs", embedding=my_embeddings)             # your own embeddings
    retriever = TesseraRetriever(address="127.0.0.1:50051", corpora=["docs", "images"], k=5)

The vector store follows LangChain's contract to the letter (the standard
integration suite runs against a real server in tests/test_langchain.py): documents
come back with exactly the metadata they were stored with. The retriever is
Tessera's own view: it routes across corpora and modalities, and every document's
metadata also carries `tessera_id`, `corpus`, `modality`, `raw_score`,
`calibrated_score` and, for images, audio and video, `uri`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import VectorStore
from pydantic import ConfigDict, Field, model_validator

from tessera.client import DEFAULT_ADDRESS, AsyncClient, Client, Hit
from tessera.errors import AlreadyExists
from tessera.index.fusion import Fusion

from .common import check_options, clear_connection_errors, client_option_names, hit_metadata

# Names users bring from LlamaIndex, LangChain's vector-store retrievers or Tessera itself: what to use.
_K = "the number of documents to return is k (LangChain's name)"
RETRIEVER_RENAMES = {
    "top_k": _K,
    "similarity_top_k": _K,
    "search_kwargs": "give k and filter directly (search_kwargs belongs to a vector store's as_retriever)",
    "corpus": "did you mean corpora (a list of corpus names)?",
    "filters": "did you mean filter (a Tessera filter dict)?",
    "server": "did you mean address?",
    "target": "did you mean address?",
}
_PER_SEARCH = "k is given per search: similarity_search(query, k=...) or as_retriever(search_kwargs={'k': ...})"
STORE_RENAMES = {"k": _PER_SEARCH, "top_k": _PER_SEARCH, "similarity_top_k": _PER_SEARCH}


class TesseraVectorStore(VectorStore):
    """One Tessera corpus as a LangChain vector store.

    Without `embedding`, texts are embedded by the server in `space` (default MiniLM).
    With `embedding`, vectors are computed here and stored in a raw-vector corpus
    (space `vectors:<dim>`), so any LangChain embedding model works. Other keywords are
    `tessera.Client` options (`api_key`, `tls_ca`, ...); an unknown one is a TypeError here.
    The number of results is LangChain's `k` (`similarity_search(query, k=...)`,
    `as_retriever(search_kwargs={"k": ...})`).
    """

    def __init__(
        self,
        corpus: str,
        *,
        address: str = DEFAULT_ADDRESS,
        embedding: Embeddings | None = None,
        space: str = "minilm",
        client: Client | None = None,
        create: bool = True,
        timeout: float | None = 30.0,
        **client_options: Any,
    ) -> None:
        own = ["corpus", "address", "embedding", "space", "client", "create", "timeout"]
        check_options(f"{type(self).__name__}()", client_options, own, STORE_RENAMES)
        self.corpus = corpus
        self._embedding = embedding
        self.client = client or Client(address, timeout=timeout, **client_options)
        self.address = address
        self.client_options = {"timeout": timeout, **client_options}
        if embedding is not None:
            dim = len(embedding.embed_query("dimension probe"))
            self.space, self.modality = f"vectors:{dim}", "vector"
        else:
            self.space, self.modality = space, "text"
        if create:
            self._ensure_corpus()

    def _ensure_corpus(self) -> None:
        try:
            self.client.create_corpus(self.corpus, space=self.space, modality=self.modality)
        except AlreadyExists:
            pass

    @property
    def embeddings(self) -> Embeddings | None:
        return self._embedding

    def _items(
        self, texts: Sequence[str], metadatas: Sequence[dict] | None, ids: Sequence[str | None] | None
    ) -> tuple[list[str], list[dict[str, Any]]]:
        ids = [i or str(uuid.uuid4()) for i in ids] if ids else [str(uuid.uuid4()) for _ in texts]
        if len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
        metadatas = list(metadatas) if metadatas is not None else [{} for _ in texts]
        vectors = self._embedding.embed_documents(list(texts)) if self._embedding is not None else None
        items = []
        for row, (text, metadata, id_) in enumerate(zip(texts, metadatas, ids, strict=True)):
            item: dict[str, Any] = {"id": id_, "text": text, "modality": "text", "metadata": dict(metadata or {})}
            if vectors is not None:
                item["vector"] = vectors[row]
            items.append(item)
        return ids, items

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        texts = list(texts)
        ids, items = self._items(texts, metadatas, ids)
        if items:
            self.client.upsert(self.corpus, items, modality="text")
        return ids

    def add_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        ids = kwargs.pop("ids", None) or [doc.id for doc in documents]
        return self.add_texts([d.page_content for d in documents], [d.metadata for d in documents], ids=ids, **kwargs)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        if ids is None:
            raise ValueError("name the ids to delete; delete(ids=None) would empty the corpus")
        self.client.delete(self.corpus, ids=ids)
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        found = {item["id"]: item for item in self.client.get(self.corpus, list(ids))}
        return [Document(id=i, page_content=found[i]["text"], metadata=found[i]["metadata"]) for i in ids if i in found]

    def _query(self, query: str) -> tuple[str, Any]:
        if self._embedding is not None:
            return "vector", self._embedding.embed_query(query)
        return "text", query

    def _search(self, part: tuple[str, Any], k: int, filter: dict | None) -> list[tuple[Document, float]]:
        result = self.client.search([part], space=self.space, corpora=[self.corpus], top_k=k, filter=filter)
        return [(Document(id=h.id, page_content=h.text, metadata=h.metadata), h.raw_score) for h in result.hits]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: dict | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Documents and their cosine similarity to the query, best first; `filter` is a Tessera filter."""
        return self._search(self._query(query), k, filter)

    def similarity_search(self, query: str, k: int = 4, filter: dict | None = None, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter)]

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: dict | None = None, **kwargs: Any
    ) -> list[Document]:
        if self.modality != "vector":
            raise ValueError("searching by vector needs a store created with `embedding=`")
        return [doc for doc, _ in self._search(("vector", embedding), k, filter)]

    def _select_relevance_score_fn(self) -> Any:
        return self._cosine_relevance_score_fn

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | None = None,
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        corpus: str = "langchain",
        **kwargs: Any,
    ) -> TesseraVectorStore:
        store = cls(corpus, embedding=embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store


class TesseraRetriever(BaseRetriever):
    """Retrieves across Tessera corpora: the named ones, or every corpus the query's modality routes to.

    Arguments follow LangChain's names: `k` is how many documents come back (also per call:
    `invoke(query, k=...)`). `filter` is a Tessera metadata filter. `client_options` are
    `tessera.Client` options. An unknown argument is a TypeError at construction, naming the right one.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    address: str = DEFAULT_ADDRESS
    space: str = "minilm"
    corpora: list[str] | None = None  # None: route by modality across all corpora of the space
    k: int = 4
    filter: dict[str, Any] | None = None
    fusion: str = Fusion.CALIBRATED.value
    timeout: float = 30.0
    api_key: str | None = None
    client_options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _known_arguments(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = list(cls.model_fields)
        for name in data:
            if name not in fields and name in client_option_names():
                raise TypeError(
                    f"{cls.__name__}() got an unexpected keyword argument {name!r}; pass tessera.Client options "
                    f"in client_options={{{name!r}: ...}}"
                )
        unknown = [n for n in data if n not in fields]
        check_options(f"{cls.__name__}()", unknown, fields, RETRIEVER_RENAMES, client_in="client_options")
        for name in data.get("client_options") or {}:
            if name in fields or name not in client_option_names():
                where = f"an argument of {cls.__name__} itself" if name in fields else "not a tessera.Client option"
                raise TypeError(f"{cls.__name__}(client_options=...) has the key {name!r}, which is {where}")
        return data

    def _search_options(self, k: int | None, filter: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "space": self.space,
            "corpora": self.corpora,
            "top_k": k or self.k,
            "filter": filter if filter is not None else self.filter,
            "fusion": self.fusion,
            "timeout": self.timeout,
        }

    @staticmethod
    def _documents(hits: Sequence[Hit]) -> list[Document]:
        return [Document(id=h.id, page_content=h.text or h.uri, metadata=hit_metadata(h)) for h in hits]

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        filter: dict[str, Any] | None = None,
    ) -> list[Document]:
        with (
            clear_connection_errors(self.address, self.timeout),
            Client(self.address, api_key=self.api_key, timeout=self.timeout, **self.client_options) as c,
        ):
            result = c.search([("text", query)], **self._search_options(k, filter))
        return self._documents(result.hits)

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        filter: dict[str, Any] | None = None,
    ) -> list[Document]:
        with clear_connection_errors(self.address, self.timeout):
            async with AsyncClient(
                self.address, api_key=self.api_key, timeout=self.timeout, **self.client_options
            ) as client:
                result = await client.search([("text", query)], **self._search_options(k, filter))
        return self._documents(result.hits)
