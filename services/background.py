"""A Tessera gRPC server in a background thread with its own event loop (quickstart, tests, notebooks)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from tessera.engine import Engine, Limits
from tessera.metrics import Metrics
from tessera.server import RunningServer, TLSConfig, start_server


class ServerThread:
    def __init__(
        self,
        data_dir: Path,
        *,
        api_keys: dict[str, str] | None = None,
        tls: TLSConfig | None = None,
        limits: Limits | None = None,
        batching: bool = True,
        max_message_bytes: int | None = None,
        http_port: int | None = None,
        **engine_options: Any,
    ) -> None:
        self.data_dir = data_dir
        self.api_keys = api_keys
        self.tls = tls
        self.limits = limits
        self.batching = batching
        self.max_message_bytes = max_message_bytes
        self.http_port = http_port  # also serve HTTP/JSON and the console (tessera.http) on this port; 0: any free
        self.engine_options = engine_options
        self.metrics = Metrics()
        self.port = 0
        self.running: RunningServer | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        try:
            self._loop = asyncio.get_running_loop()
            self._stopped = asyncio.Event()
            engine = Engine(
                self.data_dir,
                limits=self.limits,
                batching=self.batching,
                on_batch=self.metrics.batch_size.observe,
                **self.engine_options,
            )
            self.metrics.track_disk(engine.catalog.guard)
            self.metrics.track_damage(engine.catalog)
            self.running = await start_server(
                engine,
                "127.0.0.1",
                0,
                api_keys=self.api_keys,
                tls=self.tls,
                metrics=self.metrics,
                max_message_bytes=self.max_message_bytes,
            )
            self.port = self.running.port
            if self.http_port is not None:
                self.running.http = await self._start_http(engine)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stopped.wait()
        await self.running.stop(grace=5)

    async def _start_http(self, engine: Engine) -> Any:
        from tessera.auth import KeyStore
        from tessera.http import start_http
        from tessera.service import Service

        return await start_http(
            Service(engine, self.metrics),
            "127.0.0.1",
            self.http_port or 0,
            keys=KeyStore(keys=self.api_keys) if self.api_keys else None,
            tls=self.tls,
            metrics=self.metrics,
            max_body_bytes=self.max_message_bytes,
        )

    @property
    def http_url(self) -> str | None:
        """The HTTP API's (and console's) base URL, when `http_port` was given."""
        return self.running.http.url if self.running is not None and self.running.http is not None else None

    def start(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(60)
        if self._error:
            raise self._error
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._loop and self._stopped:
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(60)
