"""The HTTP/JSON routes: each one a gRPC method of `Service`, through the same `Gateway` checks.

GET    /healthz                          health (open, like grpc.health.v1)
GET    /v1/spaces                        ListSpaces     read
POST   /v1/embed                         Embed          read
POST   /v1/embeddings                    Embed, OpenAI-compatible (openai_compat.py)   read
GET    /v1/corpora                       ListCorpora    read
POST   /v1/corpora                       CreateCorpus   admin
GET    /v1/corpora/{name}                DescribeCorpus read
DELETE /v1/corpora/{name}                DropCorpus     admin
POST   /v1/corpora/{name}/items          Upsert         write  (JSON, or multipart files)
GET    /v1/corpora/{name}/items?ids=..   Get            read
POST   /v1/corpora/{name}/items/delete   Delete         write
GET    /v1/corpora/{name}/sample?n=      a few items, for the console's corpus page   read
GET    /v1/corpora/{name}/content?id=    an item's stored bytes (image, audio, ...)   read
POST   /v1/search                        Search         read   (JSON, or multipart files)
POST   /v1/search/batch                  BatchSearch    read
GET    /                                 the web console (console/), open: its calls carry the key
"""

from __future__ import annotations

import asyncio
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from tessera.embedder.quoting import quote
from tessera.service import Service
from tessera.v1 import tessera_pb2 as pb
from tessera.wire import vector_to_pb

from . import jsonpb, media, openai_compat
from .errors import HttpStatusError, error_schema
from .gateway import Gateway, is_multipart

CONSOLE = Path(str(resources.files("tessera.http") / "console"))
MAX_SAMPLE = 20


def _body(schema: str, multipart: dict[str, Any] | None = None) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    if multipart:
        content["multipart/form-data"] = {"schema": {"type": "object", "properties": multipart}}
    return {"requestBody": {"required": True, "content": content}}


ERRORS = {status: error_schema() for status in (400, 401, 403, 404, 409, 413, 429, 500, 504)}
FILE_FIELD = {"type": "array", "items": {"type": "string", "format": "binary"}}
SEARCH_FORM = {
    "file": FILE_FIELD,
    "text": {"type": "string"},
    "modality": {"type": "string", "description": "image, audio or video; default: from the file's type"},
    "space": {"type": "string"},
    "top_k": {"type": "integer"},
    "corpora": {"type": "string", "description": "comma-separated; none: routing picks"},
    "target_modalities": {"type": "string"},
    "filter": {"type": "string", "description": "the filter as JSON"},
    "fusion": {"type": "string"},
}
UPSERT_FORM = {
    "file": FILE_FIELD,
    "id": {"type": "array", "items": {"type": "string"}, "description": "one per file; default: the file name"},
    "metadata": {"type": "array", "items": {"type": "string"}, "description": "one JSON object per file"},
}


def create_app(gateway: Gateway) -> FastAPI:
    """The FastAPI application over `gateway` (its Service, keys, limits and metrics)."""
    app = FastAPI(
        title="Tessera",
        version="1",
        summary="Multimodal embedding and retrieval: the gRPC API tessera.v1 as HTTP/JSON, on the same Engine",
        docs_url="/docs",
        redoc_url=None,
        responses=ERRORS,
    )
    app.state.gateway = gateway
    service: Service = gateway.service
    call = gateway.call

    def wants_base64(body: Any) -> bool:
        fmt = body.pop("encoding_format", None) if isinstance(body, dict) else None
        if fmt not in (None, "float", "base64"):
            raise ValueError(f"encoding_format: use 'float' or 'base64', not {str(fmt)[:40]!r}")
        return fmt == "base64"

    @app.get("/healthz", tags=["health"], summary="health (no key needed)")
    async def health() -> dict[str, str]:
        return {"status": "SERVING"}

    @app.get("/v1/spaces", tags=["spaces"], summary="ListSpaces")
    async def list_spaces(request: Request, include_unavailable: bool = False) -> Response:
        async def answer() -> Any:
            return jsonpb.to_json(
                await service.ListSpaces(pb.ListSpacesRequest(include_unavailable=include_unavailable))
            )

        return await call(request, "ListSpaces", answer)

    @app.post("/v1/embed", tags=["embedding"], summary="Embed", openapi_extra=_body("EmbedRequest"))
    async def embed(request: Request) -> Response:
        async def answer() -> Any:
            body = await gateway.json(request)
            b64 = wants_base64(body)
            return jsonpb.to_json(await service.Embed(jsonpb.parse(body, pb.EmbedRequest)), base64_vectors=b64)

        return await call(request, "Embed", answer)

    @app.post(
        "/v1/embeddings",
        tags=["embedding"],
        summary="OpenAI-compatible embeddings (text)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["input", "model"],
                            "properties": {
                                "input": {
                                    "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
                                },
                                "model": {"type": "string", "description": "a Tessera space"},
                                "encoding_format": {"type": "string", "enum": ["float", "base64"]},
                                "dimensions": {"type": "integer"},
                                "user": {"type": "string"},
                            },
                        }
                    }
                },
            }
        },
    )
    async def embeddings(request: Request) -> Response:
        async def answer() -> Any:
            return await openai_compat.embeddings(service, await gateway.json(request))

        return await call(request, "Embed", answer)

    @app.get("/v1/corpora", tags=["corpora"], summary="ListCorpora")
    async def list_corpora(request: Request) -> Response:
        async def answer() -> Any:
            return jsonpb.to_json(await service.ListCorpora(pb.ListCorporaRequest()))

        return await call(request, "ListCorpora", answer)

    @app.post(
        "/v1/corpora",
        tags=["corpora"],
        summary="CreateCorpus",
        status_code=201,
        openapi_extra=_body("CreateCorpusRequest"),
    )
    async def create_corpus(request: Request) -> Response:
        async def answer() -> Any:
            message = jsonpb.parse(await gateway.json(request), pb.CreateCorpusRequest)
            out = jsonpb.to_json(await service.CreateCorpus(message))
            return JSONResponse(out, status_code=201)

        return await call(request, "CreateCorpus", answer)

    @app.get("/v1/corpora/{name}", tags=["corpora"], summary="DescribeCorpus")
    async def describe_corpus(request: Request, name: str) -> Response:
        async def answer() -> Any:
            return jsonpb.to_json(await service.DescribeCorpus(pb.DescribeCorpusRequest(name=name)))

        return await call(request, "DescribeCorpus", answer)

    @app.delete("/v1/corpora/{name}", tags=["corpora"], summary="DropCorpus")
    async def drop_corpus(request: Request, name: str) -> Response:
        async def answer() -> Any:
            return jsonpb.to_json(await service.DropCorpus(pb.DropCorpusRequest(name=name)))

        return await call(request, "DropCorpus", answer)

    @app.post(
        "/v1/corpora/{name}/items",
        tags=["items"],
        summary="Upsert: a JSON body {items: [...]}, or multipart `file` parts",
        openapi_extra=_body("UpsertRequest", UPSERT_FORM),
    )
    async def upsert(request: Request, name: str) -> Response:
        async def answer() -> Any:
            if is_multipart(request):
                body: Any = {"items": await media.upsert_items(await gateway.form(request))}
            else:
                body = await gateway.json(request)
            if isinstance(body, dict) and body.get("corpus", name) != name:
                raise ValueError(f"the body names corpus {quote(body['corpus'])}; the path names {quote(name)}")
            message = jsonpb.parse(body, pb.UpsertRequest)
            message.corpus = name

            async def one() -> Any:
                yield message

            return jsonpb.to_json(await service.Upsert(one(), timeout=gateway.timeout(request)))

        return await call(request, "Upsert", answer)

    @app.get("/v1/corpora/{name}/items", tags=["items"], summary="Get items by id")
    async def get_items(
        request: Request,
        name: str,
        ids: list[str] = Query(default=[]),  # noqa: B008  (FastAPI's way to declare a repeated query parameter)
        include_vectors: bool = False,
        encoding_format: str = "float",
    ) -> Response:
        async def answer() -> Any:
            b64 = wants_base64({"encoding_format": encoding_format})
            message = pb.GetRequest(corpus=name, ids=ids, include_vectors=include_vectors)
            return jsonpb.to_json(await service.Get(message), base64_vectors=b64)

        return await call(request, "Get", answer)

    @app.post(
        "/v1/corpora/{name}/items/delete",
        tags=["items"],
        summary="Delete items by ids or by filter",
        openapi_extra=_body("DeleteRequest"),
    )
    async def delete_items(request: Request, name: str) -> Response:
        async def answer() -> Any:
            message = jsonpb.parse(await gateway.json(request), pb.DeleteRequest)
            message.corpus = name
            return jsonpb.to_json(await service.Delete(message))

        return await call(request, "Delete", answer)

    @app.get("/v1/corpora/{name}/sample", tags=["items"], summary="a few items of the corpus, chosen at random")
    async def sample(request: Request, name: str, n: int = 6, seed: int = 0) -> Response:
        async def answer() -> Any:
            if not 1 <= n <= MAX_SAMPLE:
                raise ValueError(f"n must be between 1 and {MAX_SAMPLE}, got {n}")
            corpus = gateway.engine.corpus(name)
            vectors = await asyncio.to_thread(corpus.sample_vectors, n, seed)
            queries = [
                pb.SearchRequest(
                    space=corpus.space_id,
                    parts=[pb.QueryPart(content=pb.Content(modality=pb.MODALITY_VECTOR, vector=vector_to_pb(v)))],
                    top_k=1,
                    corpora=[name],
                    fusion=pb.FUSION_RAW,
                )
                for v in vectors
            ]
            found = await service.BatchSearch(pb.BatchSearchRequest(queries=queries)) if queries else None
            hits = {h.id: h for r in (found.results if found else []) for h in r.hits}
            return {"corpus": name, "items": [jsonpb.to_json(h) for h in hits.values()]}

        return await call(request, "Sample", answer, role="read")

    @app.get("/v1/corpora/{name}/content", tags=["items"], summary="an item's stored content (its media bytes)")
    async def content(request: Request, name: str, id: str) -> Response:
        async def answer() -> Any:
            corpus = gateway.engine.corpus(name)
            found = await asyncio.to_thread(corpus.get, [id], with_vectors=False, with_data=True)
            if not found:
                raise HttpStatusError("NOT_FOUND", f"item {quote(id)} is not in corpus {quote(name)}")
            item = found[0]
            # nosniff: stored bytes are a client's upload, and must never run as a page of the console's origin.
            safe = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}
            if item.data:
                return Response(item.data, media_type=media.media_type(item.data), headers=safe)
            if item.text is not None:
                return Response(item.text, media_type="text/plain; charset=utf-8", headers=safe)
            raise HttpStatusError("NOT_FOUND", f"item {quote(id)} of corpus {quote(name)} has no stored content")

        return await call(request, "GetContent", answer, role="read")

    @app.post(
        "/v1/search",
        tags=["search"],
        summary="Search: a JSON SearchRequest (or {query: text}), or multipart `file` / `text`",
        openapi_extra=_body("SearchRequest", SEARCH_FORM),
    )
    async def search(request: Request) -> Response:
        async def answer() -> Any:
            if is_multipart(request):
                body: Any = await media.search_request(await gateway.form(request))
            else:
                body = await gateway.json(request)
            b64 = wants_base64(body)
            message = jsonpb.parse(jsonpb.search_body(body), pb.SearchRequest)
            return jsonpb.to_json(await service.Search(message), base64_vectors=b64)

        return await call(request, "Search", answer)

    @app.post("/v1/search/batch", tags=["search"], summary="BatchSearch", openapi_extra=_body("BatchSearchRequest"))
    async def batch_search(request: Request) -> Response:
        async def answer() -> Any:
            body = await gateway.json(request)
            b64 = wants_base64(body)
            if isinstance(body, dict) and isinstance(body.get("queries"), list):
                body = {**body, "queries": [jsonpb.search_body(q) for q in body["queries"]]}
            message = jsonpb.parse(body, pb.BatchSearchRequest)
            return jsonpb.to_json(await service.BatchSearch(message), base64_vectors=b64)

        return await call(request, "BatchSearch", answer)

    @app.get("/", tags=["console"], summary="the web console", response_class=FileResponse)
    async def console() -> FileResponse:
        return FileResponse(CONSOLE / "index.html", media_type="text/html")

    app.mount("/console", StaticFiles(directory=CONSOLE), name="console")

    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(jsonpb.schemas())
            schema["components"]["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            }
            schema["security"] = [{"bearer": []}, {"apiKey": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
