"""LlamaIndex: a Tessera server as a retriever returning `NodeWithScore` (extra `llamaindex`).

    retriever = TesseraLlamaRetriever(address="127.0.0.1:50051", corpora=["docs"], similarity_top_k=5)
    nodes = retriever.retrieve("how do I resume an embed job?")

Each node is a `TextNode` whose id is the Tessera item id; its metadata carries the
item's metadata plus `tessera_id`, `corpus`, `modality`, `raw_score`,
`calibrated_score` and, for media, `uri`. The node's score is the calibrated score,
the one Tessera ranks by across corpora.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from llama_index.core.callbacks import CallbackManager
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from tessera.client import DEFAULT_ADDRESS, AsyncClient, Client, Hit
from tessera.index.fusion import Fusion

from .common import clear_connection_errors, client_option_names, hit_metadata

# Names users bring from LlamaIndex, LangChain or Tessera itself, and what this retriever calls them.
RENAMES = {
    "top_k": "similarity_top_k",
    "k": "similarity_top_k",
    "corpus": "corpora",
    "filters": "filter",
    "server": "address",
    "target": "address",
}


class TesseraLlamaRetriever(BaseRetriever):
    """Tessera corpora as a LlamaIndex retriever: the named ones, or every corpus the query routes to.

    The arguments follow LlamaIndex's own names: `similarity_top_k` is how many nodes
    `retrieve` returns, as for `VectorIndexRetriever` and `index.as_retriever(similarity_top_k=...)`
    (Tessera's `top_k`); `callback_manager` and `verbose` go to LlamaIndex's `BaseRetriever`.
    `filter` is a Tessera metadata filter (a dict such as `{"year": {"range": {"gte": 2020}}}`),
    not LlamaIndex's `MetadataFilters`. Any other keyword is a `tessera.Client` option (`api_key`,
    `tls_ca`, ...); an unknown keyword is a TypeError here, at construction, naming the right one.
    """

    def __init__(
        self,
        *,
        address: str = DEFAULT_ADDRESS,
        space: str = "minilm",
        corpora: list[str] | None = None,
        similarity_top_k: int = 4,
        filter: dict[str, Any] | None = None,
        fusion: Fusion | str = Fusion.CALIBRATED,
        timeout: float = 30.0,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
        **client_options: Any,
    ) -> None:
        known = client_option_names()
        for name in client_options:
            if name not in known:
                raise TypeError(self._unexpected(name, known))
        super().__init__(callback_manager=callback_manager, verbose=verbose)
        self.address, self.space, self.corpora = address, space, corpora
        self.similarity_top_k, self.filter, self.fusion, self.timeout = similarity_top_k, filter, fusion, timeout
        self.client_options = client_options

    @classmethod
    def _unexpected(cls, name: str, client_options: list[str]) -> str:
        message = f"{cls.__name__}() got an unexpected keyword argument {name!r}"
        own = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "client_options")]
        right = RENAMES.get(name) or next(iter(difflib.get_close_matches(name, own + client_options, 1)), None)
        if right == "similarity_top_k":
            return f"{message}; the number of nodes to return is similarity_top_k (LlamaIndex's name)"
        if right:
            return f"{message}; did you mean {right!r}?"
        options = ", ".join(o for o in client_options if o != "timeout")
        return f"{message}; it takes {', '.join(own)}, and the tessera.Client options {options}"

    def _options(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "corpora": self.corpora,
            "top_k": self.similarity_top_k,
            "filter": self.filter,
            "fusion": self.fusion,
            "timeout": self.timeout,
        }

    @staticmethod
    def _nodes(hits: list[Hit]) -> list[NodeWithScore]:
        nodes = [TextNode(id_=h.id, text=h.text or h.uri, metadata=hit_metadata(h)) for h in hits]
        return [NodeWithScore(node=node, score=h.calibrated_score) for node, h in zip(nodes, hits, strict=True)]

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        with (
            clear_connection_errors(self.address, self.timeout),
            Client(self.address, timeout=self.timeout, **self.client_options) as client,
        ):
            result = client.search([("text", query_bundle.query_str)], **self._options())
        return self._nodes(result.hits)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        with clear_connection_errors(self.address, self.timeout):
            async with AsyncClient(self.address, timeout=self.timeout, **self.client_options) as client:
                result = await client.search([("text", query_bundle.query_str)], **self._options())
        return self._nodes(result.hits)
