"""LlamaIndex: a Tessera server as a retriever returning `NodeWithScore` (extra `llamaindex`).

    retriever = TesseraLlamaRetriever(address="127.0.0.1:50051", corpora=["docs"], top_k=5)
    nodes = retriever.retrieve("how do I resume an embed job?")

Each node is a `TextNode` whose id is the Tessera item id; its metadata carries the
item's metadata plus `tessera_id`, `corpus`, `modality`, `raw_score`,
`calibrated_score` and, for media, `uri`. The node's score is the calibrated score,
the one Tessera ranks by across corpora.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from tessera.client import DEFAULT_ADDRESS, AsyncTesseraClient, Hit, TesseraClient

from .common import clear_connection_errors, hit_metadata


class TesseraLlamaRetriever(BaseRetriever):
    def __init__(
        self,
        *,
        address: str = DEFAULT_ADDRESS,
        space: str = "minilm",
        corpora: list[str] | None = None,
        top_k: int = 4,
        filter: dict[str, Any] | None = None,
        fusion: str = "calibrated",
        timeout: float = 30.0,
        **client_options: Any,
    ) -> None:
        super().__init__()
        self.address, self.space, self.corpora = address, space, corpora
        self.top_k, self.filter, self.fusion, self.timeout = top_k, filter, fusion, timeout
        self.client_options = client_options

    def _options(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "corpora": self.corpora,
            "top_k": self.top_k,
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
            TesseraClient(self.address, timeout=self.timeout, **self.client_options) as client,
        ):
            result = client.search([("text", query_bundle.query_str)], **self._options())
        return self._nodes(result.hits)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        with clear_connection_errors(self.address, self.timeout):
            async with AsyncTesseraClient(self.address, timeout=self.timeout, **self.client_options) as client:
                result = await client.search([("text", query_bundle.query_str)], **self._options())
        return self._nodes(result.hits)
