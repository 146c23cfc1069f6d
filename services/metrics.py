"""Prometheus metrics, served on their own HTTP port by prometheus_client."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from tessera.index.diskspace import DiskGuard

if TYPE_CHECKING:
    from tessera.index.catalog import Catalog


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tessera_requests_total", "gRPC calls by method and status code", ["method", "code"], registry=self.registry
        )
        self.latency = Histogram(
            "tessera_request_seconds",
            "gRPC call latency by method",
            ["method"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "tessera_embed_batch_size",
            "items per model batch after micro-batching",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.corpus_items = Gauge("tessera_corpus_items", "items per corpus", ["corpus"], registry=self.registry)
        self.corpora_damaged = Gauge(
            "tessera_corpora_damaged",
            "corpora not served because a file of theirs is damaged (each call on one answers DATA_LOSS; "
            "ListCorpora says which file); counted once a corpus was first used or listed",
            registry=self.registry,
        )
        self.data_dir_free = Gauge(
            "tessera_data_dir_free_bytes",
            "free bytes on the data directory's filesystem, read at each scrape",
            registry=self.registry,
        )
        self.data_dir_min_free = Gauge(
            "tessera_data_dir_min_free_bytes",
            "the --min-free-mb threshold in bytes: below it upserts are refused with RESOURCE_EXHAUSTED (0: none)",
            registry=self.registry,
        )

    def track_damage(self, catalog: Catalog) -> None:
        """Count the damaged corpora of `catalog` at each scrape (those found so far: corpora load on first use)."""
        self.corpora_damaged.set_function(lambda: float(len(catalog.damaged())))

    def track_disk(self, guard: DiskGuard) -> None:
        """Report the data directory's free space (and threshold) from `guard`, measured when scraped."""

        def free() -> float:
            try:
                return float(guard.free_bytes())
            except OSError:
                return float("nan")

        self.data_dir_free.set_function(free)
        self.data_dir_min_free.set(guard.min_free_bytes)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts and times unary calls; streams are counted when they finish."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method = details.method.rsplit("/", 1)[-1]
        if handler is None or handler.request_streaming or handler.response_streaming or not handler.unary_unary:
            return handler
        inner = handler.unary_unary
        metrics = self.metrics

        async def timed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start = time.perf_counter()
            code = "OK"
            try:
                return await inner(request, context)
            except BaseException:
                code = context.code().name if context.code() else "UNKNOWN"
                raise
            finally:
                metrics.latency.labels(method).observe(time.perf_counter() - start)
                metrics.requests.labels(method, code).inc()

        return grpc.unary_unary_rpc_method_handler(
            timed, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )
