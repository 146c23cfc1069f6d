"""One client for Tessera, embedded or remote, sync (`Client`) or async (`AsyncClient`).

    import tessera

    db = tessera.connect("./tessera-data")        # in this process: the data directory, no server
    db = tessera.connect("127.0.0.1:50051")       # a `tessera serve` over gRPC
    db.create_corpus("docs", space="minilm", modality="text")
    db.upsert("docs", [{"id": "1", "text": "a red bicycle", "metadata": {"year": 2020}}])
    hits = db.search("bicycle", corpora=["docs"], top_k=5).hits

Both kinds have the same methods, arguments, results and exceptions: every failure is a
`tessera.TesseraError` subclass (`NotFound`, `InvalidArgument`, ...), never a grpc error. numpy
in, numpy out. Over gRPC, calls that fail with UNAVAILABLE are retried with exponential backoff
(gRPC's retry policy); API keys travel as `x-api-key` metadata; TLS takes a CA bundle and, for
mutual TLS, a client certificate and key.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from tqdm.auto import tqdm

from tessera.index.fusion import Fusion
from tessera.v1 import tessera_pb2 as pb
from tessera.v1 import tessera_pb2_grpc as pb_grpc

from . import messages as msg
from .errors import InvalidArgument, TesseraError, Unauthenticated, error_for
from .messages import Hit, QueryParts, SearchResult, parquet_items
from .streams import RequestFeed

DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_SPACE = "minilm"
RETRY_POLICY = {
    "methodConfig": [
        {
            "name": [{"service": "tessera.v1.Tessera"}, {"service": "grpc.health.v1.Health"}],
            "retryPolicy": {
                "maxAttempts": 5,
                "initialBackoff": "0.1s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}
# host:port, [v6]:port, or a grpc:// / grpcs:// URL; anything else is a data directory.
_ADDRESS = re.compile(r"^(grpcs?://)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-_]+):\d{1,5}$")


def is_address(target: str | Path) -> bool:
    """True for a server address, False for a data directory (an existing path always is one)."""
    if isinstance(target, Path) or Path(target).exists():
        return False
    return bool(_ADDRESS.match(str(target)))


# ---- transports: how a request reaches the Service ------------------------------------------
def _rpc_error(exc: grpc.RpcError, address: str) -> TesseraError:
    code = exc.code().name if hasattr(exc, "code") and exc.code() is not None else "UNKNOWN"
    details = (exc.details() if hasattr(exc, "details") else None) or str(exc)
    if code == "UNAVAILABLE":
        details = f"no Tessera server answers at {address} ({details}); start one with `tessera serve`"
    return error_for(code, details)


def _channel_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    return [
        ("grpc.service_config", json.dumps(RETRY_POLICY)),
        ("grpc.enable_retries", 1),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]


def _credentials(tls_ca: str | Path | None, tls_cert: str | Path | None, tls_key: str | Path | None) -> Any:
    def read(path: str | Path | None) -> bytes | None:
        if not path:
            return None
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise InvalidArgument(f"cannot read TLS file {str(path)[:200]!r} ({exc.strerror or exc})") from exc

    return grpc.ssl_channel_credentials(read(tls_ca), read(tls_key), read(tls_cert))


class _Remote:
    """gRPC to a server; `aio` picks grpc.aio for the async client."""

    def __init__(
        self,
        address: str,
        *,
        aio: bool,
        api_key: str | None,
        tls: bool,
        tls_ca: str | Path | None,
        tls_cert: str | Path | None,
        tls_key: str | Path | None,
        max_message_bytes: int,
    ) -> None:
        if address.startswith("grpcs://"):
            tls, address = True, address[len("grpcs://") :]
        elif address.startswith("grpc://"):
            address = address[len("grpc://") :]
        self.address = address
        grpc_module: Any = grpc.aio if aio else grpc
        options = _channel_options(max_message_bytes)
        if tls or tls_ca or tls_cert:
            credentials = _credentials(tls_ca, tls_cert, tls_key)
            self.channel = grpc_module.secure_channel(address, credentials, options=options)
        else:
            self.channel = grpc_module.insecure_channel(address, options=options)
        self.metadata = (("x-api-key", api_key),) if api_key else None
        self.stub = pb_grpc.TesseraStub(self.channel)

    # sync
    def unary(self, method: str, request: Any, timeout: float | None) -> Any:
        try:
            return getattr(self.stub, method)(request, timeout=timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise _rpc_error(exc, self.address) from None

    def upsert(self, requests: Iterable[Any], timeout: float | None) -> Any:
        feed = RequestFeed(requests)
        try:
            return self.stub.Upsert(iter(feed), timeout=timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            feed.reraise()
            raise _rpc_error(exc, self.address) from None

    def embed_stream(self, requests: Iterable[Any], timeout: float | None) -> Iterator[Any]:
        feed = RequestFeed(requests)
        try:
            yield from self.stub.EmbedStream(iter(feed), timeout=timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            feed.reraise()
            raise _rpc_error(exc, self.address) from None

    def health(self, service: str, timeout: float | None) -> str:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        request = health_pb2.HealthCheckRequest(service=service)
        try:
            response = health_pb2_grpc.HealthStub(self.channel).Check(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise _rpc_error(exc, self.address) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def close(self) -> None:
        self.channel.close()

    # async
    async def aunary(self, method: str, request: Any, timeout: float | None) -> Any:
        try:
            return await getattr(self.stub, method)(request, timeout=timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise _rpc_error(exc, self.address) from None

    async def aupsert(self, requests: Iterable[Any], timeout: float | None) -> Any:
        feed = RequestFeed(requests)
        try:
            return await self.stub.Upsert(iter(feed), timeout=timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            feed.reraise()
            raise _rpc_error(exc, self.address) from None
        except asyncio.CancelledError:
            # grpc.aio cancels the call when the request iterator raises; that error is the answer.
            feed.reraise()
            raise

    async def aembed_stream(self, requests: Iterable[Any], timeout: float | None) -> AsyncIterator[Any]:
        feed = RequestFeed(requests)
        try:
            async for response in self.stub.EmbedStream(iter(feed), timeout=timeout, metadata=self.metadata):
                yield response
        except grpc.RpcError as exc:
            feed.reraise()
            raise _rpc_error(exc, self.address) from None
        except asyncio.CancelledError:
            feed.reraise()
            raise

    async def ahealth(self, service: str, timeout: float | None) -> str:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        request = health_pb2.HealthCheckRequest(service=service)
        try:
            response = await health_pb2_grpc.HealthStub(self.channel).Check(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise _rpc_error(exc, self.address) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    async def aclose(self) -> None:
        await self.channel.close()


def _transport(
    target: str | Path,
    *,
    aio: bool,
    api_key: str | None,
    tls: bool,
    tls_ca: str | Path | None,
    tls_cert: str | Path | None,
    tls_key: str | Path | None,
    max_message_bytes: int,
    device: str | None,
) -> Any:
    if is_address(target):
        return _Remote(
            str(target),
            aio=aio,
            api_key=api_key,
            tls=tls,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            max_message_bytes=max_message_bytes,
        )
    if api_key or tls or tls_ca or tls_cert or tls_key:
        raise Unauthenticated(
            f"{str(target)[:200]!r} is a data directory, opened in this process: it takes no API key or TLS; "
            "pass those with a server address such as 127.0.0.1:50051"
        )
    from .local import EmbeddedEngine

    return EmbeddedEngine(target, device=device)


class _Options:
    """Connection arguments shared by Client and AsyncClient."""

    def __init__(
        self,
        target: str | Path = DEFAULT_ADDRESS,
        *,
        api_key: str | None = None,
        tls: bool = False,
        tls_ca: str | Path | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        timeout: float | None = 60.0,
        max_message_bytes: int = 64 << 20,
        device: str | None = None,
        _aio: bool = False,
    ) -> None:
        self.target = str(target)
        self.timeout = timeout
        self.embedded = not is_address(target)
        self._t = _transport(
            target,
            aio=_aio,
            api_key=api_key,
            tls=tls,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            max_message_bytes=max_message_bytes,
            device=device,
        )

    @property
    def channel(self) -> Any:
        """The gRPC channel (remote clients only), for calls outside Tessera's API such as reflection."""
        if self.embedded:
            raise AttributeError("an embedded client has no gRPC channel")
        return self._t.channel

    def __repr__(self) -> str:
        kind = "embedded" if self.embedded else "remote"
        return f"{type(self).__name__}({self.target!r}, {kind})"


# ---- the sync client ----------------------------------------------------------------------
class Client(_Options):
    """Tessera, embedded on a data directory or remote over gRPC; see `tessera.connect`.

    Args:
        target: a server address ("host:port", "grpc://host:port", "grpcs://host:port" for TLS),
            or a data directory to open in this process (created if missing; an existing path
            always counts as a directory).
        api_key: sent as `x-api-key` (servers started with --auth-keys); remote only.
        tls: use TLS with the system's CA bundle; `tls_ca` names another CA bundle and turns TLS on;
            `tls_cert` and `tls_key` present a client certificate (mutual TLS). Remote only.
        timeout: seconds each call may take before `DeadlineExceeded`; None waits forever.
        max_message_bytes: the largest gRPC message sent or received (remote only).
        device: where an embedded client runs its models ("cpu", "cuda"); the default picks CUDA when present.

    Every method raises a `tessera.TesseraError` subclass on failure.
    """

    def __init__(
        self,
        target: str | Path = DEFAULT_ADDRESS,
        *,
        api_key: str | None = None,
        tls: bool = False,
        tls_ca: str | Path | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        timeout: float | None = 60.0,
        max_message_bytes: int = 64 << 20,
        device: str | None = None,
    ) -> None:
        super().__init__(
            target,
            api_key=api_key,
            tls=tls,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            timeout=timeout,
            max_message_bytes=max_message_bytes,
            device=device,
        )

    def _call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        return self._t.unary(method, request, timeout or self.timeout)

    # ---- health ----------------------------------------------------------------------------
    def health(self, service: str = "") -> str:
        """The serving status, "SERVING" when the server (or the embedded engine) answers.

        `service` asks about one gRPC service ("tessera.v1.Tessera"); "" asks about the server.
        Raises `Unavailable` when no server answers.
        """
        return "SERVING" if self.embedded else self._t.health(service, self.timeout)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the server accepts calls (at once when embedded); `Unavailable` after `timeout` s."""
        if self.embedded:
            return
        try:
            grpc.channel_ready_future(self._t.channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise error_for("UNAVAILABLE", f"no Tessera server answered at {self.target} within {timeout} s") from None

    # ---- spaces and embedding --------------------------------------------------------------
    def list_spaces(self) -> list[dict[str, Any]]:
        """The spaces this engine can load: name, available (weights present), modalities, note."""
        return msg.spaces_list(self._call("ListSpaces", pb.ListSpacesRequest()))

    def embed(self, inputs: Sequence[Any], *, modality: str = "text", space: str = DEFAULT_SPACE) -> np.ndarray:
        """L2-normalised vectors, one row per input, as float32 of shape (len(inputs), dim).

        Inputs are strings for text, bytes or pathlib.Path of encoded media (PNG, WAV, MP4, ...)
        for image, audio and video, or arrays for modality "vector".
        """
        return msg.embed_vectors(self._call("Embed", msg.embed_request(inputs, modality, space)))

    def embed_stream(
        self, batches: Iterable[Sequence[Any]], *, modality: str = "text", space: str = DEFAULT_SPACE
    ) -> Iterator[np.ndarray]:
        """Embed batch after batch over one stream; yields each batch's vectors, in order."""
        requests = (msg.embed_request(batch, modality, space) for batch in batches)
        for response in self._t.embed_stream(requests, None):
            yield msg.embed_vectors(response)

    # ---- corpora ---------------------------------------------------------------------------
    def create_corpus(
        self,
        name: str,
        *,
        space: str,
        modality: str,
        index: str = "auto",
        nprobe: int | None = None,
        ef_search: int | None = None,
        ef_construction: int | None = None,
        backend: str | None = None,
    ) -> dict[str, Any]:
        """Create an empty corpus of one modality in one space; returns its description.

        `index` is a FAISS index factory string ("Flat", "HNSW32", "IVF1024,PQ32", ...) or "auto"
        (exact search while small, then an index chosen by size). `nprobe` and `ef_search` are
        the default search knobs for IVF and HNSW; `ef_construction` sets HNSW's build beam.
        `backend` is "local" (FAISS on the server's data directory) or "milvus" (a collection in the
        server's Milvus, shared by every replica); None takes milvus when the server has one.
        Raises `AlreadyExists` if the name is taken, `NotFound` for an unknown space.
        """
        request = msg.create_request(name, space, modality, index, nprobe, ef_search, ef_construction, backend)
        return msg.corpus_dict(self._call("CreateCorpus", request).corpus)

    def list_corpora(self) -> list[dict[str, Any]]:
        """Every corpus, described as `describe_corpus` does."""
        return [msg.corpus_dict(c) for c in self._call("ListCorpora", pb.ListCorporaRequest()).corpora]

    def describe_corpus(self, name: str) -> dict[str, Any]:
        """name, space, modality, dim, count, index, searching, bytes_on_disk, on_gpu, tombstones, similarity,
        index_state ("exact", "building", "built", "build_failed") with index_note, and damaged with damage."""
        return msg.corpus_dict(self._call("DescribeCorpus", pb.DescribeCorpusRequest(name=name)).corpus)

    def drop_corpus(self, name: str) -> None:
        """Delete a corpus and its files; `NotFound` if there is none of that name."""
        self._call("DropCorpus", pb.DropCorpusRequest(name=name))

    # ---- items -----------------------------------------------------------------------------
    def upsert(
        self,
        corpus: str,
        items: Iterable[dict[str, Any]],
        *,
        modality: str | None = None,
        batch_size: int = 256,
        progress: bool = False,
        total: int | None = None,
    ) -> int:
        """Insert or replace items; returns how many were stored.

        Each item is a dict with an "id" and one of "vector" (stored as given), "text", "data"
        (encoded media bytes) or "path" (a media file read by this client), plus optional
        "metadata" (a dict, filterable) and "uri". Content is embedded in the corpus's space.
        Items travel in messages of `batch_size`; each message is durable once stored, and a
        failure says how many items were stored before it. `progress` shows a bar (`total` sizes it).
        """
        bar = tqdm(total=total, unit="item", desc=f"upsert {corpus}") if progress else None
        try:
            return self._t.upsert(msg.upsert_messages(corpus, items, modality, batch_size, bar), None).upserted
        finally:
            if bar is not None:
                bar.close()

    def upsert_parquet(
        self,
        corpus: str,
        path: str | Path,
        *,
        id_column: str = "id",
        vector_column: str | None = None,
        text_column: str | None = None,
        metadata_columns: Sequence[str] | None = None,
        batch_size: int = 256,
        progress: bool = True,
    ) -> int:
        """Upsert the rows of a Parquet file (e.g. `tessera embed` output), streamed in batches.

        The "vector" column is used when present; other columns become metadata unless
        `metadata_columns` picks them.
        """
        total, items = parquet_items(path, id_column, vector_column, text_column, metadata_columns)
        return self.upsert(corpus, items, batch_size=batch_size, progress=progress, total=total)

    def get(self, corpus: str, ids: Sequence[str], *, include_vectors: bool = False) -> list[dict[str, Any]]:
        """Stored items by id (id, metadata, text, uri, and vector if asked); unknown ids are left out."""
        return msg.stored_items(self._call("Get", msg.get_request(corpus, ids, include_vectors)))

    def delete(self, corpus: str, *, ids: Sequence[str] | None = None, filter: dict[str, Any] | None = None) -> int:
        """Delete by ids or by a metadata filter (one of the two); returns how many were deleted."""
        return self._call("Delete", msg.delete_request(corpus, ids, filter)).deleted

    # ---- search ----------------------------------------------------------------------------
    def search(
        self,
        query: QueryParts,
        *,
        corpora: Sequence[str] | None = None,
        space: str | None = None,
        top_k: int = 10,
        filter: dict[str, Any] | None = None,
        target_modalities: Sequence[str] | None = None,
        fusion: Fusion | str = Fusion.CALIBRATED,
        nprobe: int | None = None,
        ef_search: int | None = None,
        include_vectors: bool = False,
        timeout: float | None = None,
    ) -> SearchResult:
        """Search corpora with a text or a composite query; returns the best `top_k` hits.

        Args:
            query: a string (text), or parts: (modality, value) or (modality, value, weight)
                tuples, e.g. [("image", Path("cat.png")), ("text", "at night", 0.5)].
            corpora: the corpora to search (default: every corpus of the query's space).
            space: the space to embed the query in; by default the one space of `corpora`
                (or of all corpora), so it need not be repeated.
            top_k: how many hits (1 to the server's limit, 1,000 by default).
            filter: a metadata filter, e.g. {"year": {"range": {"gte": 2020}}, "kind": {"in": ["a", "b"]}}.
            target_modalities: only corpora of these modalities.
            fusion: how hits of several corpora are merged, a `Fusion` or its name: "calibrated" (default),
                "pair", "rrf", "raw".
            nprobe, ef_search: per-query IVF / HNSW knobs.
            include_vectors: return each hit's stored vector.
            timeout: seconds for this call (default: the client's).
        """
        request = msg.search_request(
            query,
            space=space,
            top_k=top_k,
            filter=filter,
            corpora=corpora,
            target_modalities=target_modalities,
            fusion=fusion,
            nprobe=nprobe,
            ef_search=ef_search,
            include_vectors=include_vectors,
        )
        return msg.search_result(self._call("Search", request, timeout))

    def batch_search(
        self,
        queries: Sequence[QueryParts],
        *,
        corpora: Sequence[str] | None = None,
        space: str | None = None,
        top_k: int = 10,
        filter: dict[str, Any] | None = None,
        target_modalities: Sequence[str] | None = None,
        fusion: Fusion | str = Fusion.CALIBRATED,
        nprobe: int | None = None,
        ef_search: int | None = None,
        include_vectors: bool = False,
        timeout: float | None = None,
    ) -> list[SearchResult]:
        """Several queries with the same options in one call; one SearchResult per query, in order."""
        request = pb.BatchSearchRequest(
            queries=[
                msg.search_request(
                    q,
                    space=space,
                    top_k=top_k,
                    filter=filter,
                    corpora=corpora,
                    target_modalities=target_modalities,
                    fusion=fusion,
                    nprobe=nprobe,
                    ef_search=ef_search,
                    include_vectors=include_vectors,
                )
                for q in queries
            ]
        )
        return [msg.search_result(r) for r in self._call("BatchSearch", request, timeout).results]

    # ---- lifetime --------------------------------------------------------------------------
    def close(self) -> None:
        """Close the channel, or (embedded) snapshot every corpus and release the data directory."""
        self._t.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- the async client -----------------------------------------------------------------------
class AsyncClient(_Options):
    """The same calls as `Client`, awaitable; embedded or remote by `target` in the same way.

    Remote calls use grpc.aio on the caller's event loop; an embedded client runs the engine
    on a loop of its own, so it can be awaited from any loop.
    """

    def __init__(
        self,
        target: str | Path = DEFAULT_ADDRESS,
        *,
        api_key: str | None = None,
        tls: bool = False,
        tls_ca: str | Path | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        timeout: float | None = 60.0,
        max_message_bytes: int = 64 << 20,
        device: str | None = None,
    ) -> None:
        super().__init__(
            target,
            api_key=api_key,
            tls=tls,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            timeout=timeout,
            max_message_bytes=max_message_bytes,
            device=device,
            _aio=True,
        )

    async def _call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        return await self._t.aunary(method, request, timeout or self.timeout)

    async def health(self, service: str = "") -> str:
        """See `Client.health`."""
        return "SERVING" if self.embedded else await self._t.ahealth(service, self.timeout)

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """See `Client.wait_ready`."""
        if self.embedded:
            return
        try:
            await asyncio.wait_for(self._t.channel.channel_ready(), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise error_for("UNAVAILABLE", f"no Tessera server answered at {self.target} within {timeout} s") from None

    async def list_spaces(self) -> list[dict[str, Any]]:
        """See `Client.list_spaces`."""
        return msg.spaces_list(await self._call("ListSpaces", pb.ListSpacesRequest()))

    async def embed(self, inputs: Sequence[Any], *, modality: str = "text", space: str = DEFAULT_SPACE) -> np.ndarray:
        """See `Client.embed`."""
        return msg.embed_vectors(await self._call("Embed", msg.embed_request(inputs, modality, space)))

    async def embed_stream(
        self, batches: Iterable[Sequence[Any]], *, modality: str = "text", space: str = DEFAULT_SPACE
    ) -> AsyncIterator[np.ndarray]:
        """See `Client.embed_stream`; an async generator of each batch's vectors."""
        requests = (msg.embed_request(batch, modality, space) for batch in batches)
        async for response in self._t.aembed_stream(requests, None):
            yield msg.embed_vectors(response)

    async def create_corpus(
        self,
        name: str,
        *,
        space: str,
        modality: str,
        index: str = "auto",
        nprobe: int | None = None,
        ef_search: int | None = None,
        ef_construction: int | None = None,
        backend: str | None = None,
    ) -> dict[str, Any]:
        """See `Client.create_corpus`."""
        request = msg.create_request(name, space, modality, index, nprobe, ef_search, ef_construction, backend)
        return msg.corpus_dict((await self._call("CreateCorpus", request)).corpus)

    async def list_corpora(self) -> list[dict[str, Any]]:
        """See `Client.list_corpora`."""
        return [msg.corpus_dict(c) for c in (await self._call("ListCorpora", pb.ListCorporaRequest())).corpora]

    async def describe_corpus(self, name: str) -> dict[str, Any]:
        """See `Client.describe_corpus`."""
        return msg.corpus_dict((await self._call("DescribeCorpus", pb.DescribeCorpusRequest(name=name))).corpus)

    async def drop_corpus(self, name: str) -> None:
        """See `Client.drop_corpus`."""
        await self._call("DropCorpus", pb.DropCorpusRequest(name=name))

    async def upsert(
        self,
        corpus: str,
        items: Iterable[dict[str, Any]],
        *,
        modality: str | None = None,
        batch_size: int = 256,
        progress: bool = False,
        total: int | None = None,
    ) -> int:
        """See `Client.upsert`."""
        bar = tqdm(total=total, unit="item", desc=f"upsert {corpus}") if progress else None
        try:
            messages = msg.upsert_messages(corpus, items, modality, batch_size, bar)
            return (await self._t.aupsert(messages, None)).upserted
        finally:
            if bar is not None:
                bar.close()

    async def upsert_parquet(
        self,
        corpus: str,
        path: str | Path,
        *,
        id_column: str = "id",
        vector_column: str | None = None,
        text_column: str | None = None,
        metadata_columns: Sequence[str] | None = None,
        batch_size: int = 256,
        progress: bool = True,
    ) -> int:
        """See `Client.upsert_parquet`."""
        total, items = parquet_items(path, id_column, vector_column, text_column, metadata_columns)
        return await self.upsert(corpus, items, batch_size=batch_size, progress=progress, total=total)

    async def get(self, corpus: str, ids: Sequence[str], *, include_vectors: bool = False) -> list[dict[str, Any]]:
        """See `Client.get`."""
        return msg.stored_items(await self._call("Get", msg.get_request(corpus, ids, include_vectors)))

    async def delete(
        self, corpus: str, *, ids: Sequence[str] | None = None, filter: dict[str, Any] | None = None
    ) -> int:
        """See `Client.delete`."""
        return (await self._call("Delete", msg.delete_request(corpus, ids, filter))).deleted

    async def search(
        self,
        query: QueryParts,
        *,
        corpora: Sequence[str] | None = None,
        space: str | None = None,
        top_k: int = 10,
        filter: dict[str, Any] | None = None,
        target_modalities: Sequence[str] | None = None,
        fusion: Fusion | str = Fusion.CALIBRATED,
        nprobe: int | None = None,
        ef_search: int | None = None,
        include_vectors: bool = False,
        timeout: float | None = None,
    ) -> SearchResult:
        """See `Client.search`."""
        request = msg.search_request(
            query,
            space=space,
            top_k=top_k,
            filter=filter,
            corpora=corpora,
            target_modalities=target_modalities,
            fusion=fusion,
            nprobe=nprobe,
            ef_search=ef_search,
            include_vectors=include_vectors,
        )
        return msg.search_result(await self._call("Search", request, timeout))

    async def batch_search(
        self,
        queries: Sequence[QueryParts],
        *,
        corpora: Sequence[str] | None = None,
        space: str | None = None,
        top_k: int = 10,
        filter: dict[str, Any] | None = None,
        target_modalities: Sequence[str] | None = None,
        fusion: Fusion | str = Fusion.CALIBRATED,
        nprobe: int | None = None,
        ef_search: int | None = None,
        include_vectors: bool = False,
        timeout: float | None = None,
    ) -> list[SearchResult]:
        """See `Client.batch_search`."""
        request = pb.BatchSearchRequest(
            queries=[
                msg.search_request(
                    q,
                    space=space,
                    top_k=top_k,
                    filter=filter,
                    corpora=corpora,
                    target_modalities=target_modalities,
                    fusion=fusion,
                    nprobe=nprobe,
                    ef_search=ef_search,
                    include_vectors=include_vectors,
                )
                for q in queries
            ]
        )
        return [msg.search_result(r) for r in (await self._call("BatchSearch", request, timeout)).results]

    async def close(self) -> None:
        """See `Client.close`."""
        if self.embedded:
            await asyncio.to_thread(self._t.close)
        else:
            await self._t.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def connect(
    target: str | Path = DEFAULT_ADDRESS,
    *,
    api_key: str | None = None,
    tls: bool = False,
    tls_ca: str | Path | None = None,
    tls_cert: str | Path | None = None,
    tls_key: str | Path | None = None,
    timeout: float | None = 60.0,
    device: str | None = None,
) -> Client:
    """Open Tessera: a data directory in this process, or a server over gRPC ("host:port").

        db = tessera.connect("./tessera-data")                  # embedded, no server
        db = tessera.connect("10.0.0.5:50051", api_key="...")   # remote

    Both return a `Client` with the same methods and errors; see `Client` for the arguments.
    """
    return Client(
        target,
        api_key=api_key,
        tls=tls,
        tls_ca=tls_ca,
        tls_cert=tls_cert,
        tls_key=tls_key,
        timeout=timeout,
        device=device,
    )


def connect_async(
    target: str | Path = DEFAULT_ADDRESS,
    *,
    api_key: str | None = None,
    tls: bool = False,
    tls_ca: str | Path | None = None,
    tls_cert: str | Path | None = None,
    tls_key: str | Path | None = None,
    timeout: float | None = 60.0,
    device: str | None = None,
) -> AsyncClient:
    """`connect`, returning an `AsyncClient`."""
    return AsyncClient(
        target,
        api_key=api_key,
        tls=tls,
        tls_ca=tls_ca,
        tls_cert=tls_cert,
        tls_key=tls_key,
        timeout=timeout,
        device=device,
    )


__all__ = ["DEFAULT_ADDRESS", "AsyncClient", "Client", "Hit", "SearchResult", "connect", "connect_async", "is_address"]
