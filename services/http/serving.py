"""uvicorn inside the gRPC server's event loop: one process, one Engine, both transports.

`start_http` binds the port itself (so `--http-port 0` works and a busy port is an OSError, not
uvicorn's sys.exit), starts uvicorn's server on that socket in the running loop, and returns a
handle whose `stop()` lets in-flight requests finish. TLS takes the gRPC flags' files: the
certificate and key, and with a client CA, client certificates are required (mutual TLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

import uvicorn

from .app import create_app
from .gateway import Gateway

if TYPE_CHECKING:
    from tessera.auth import KeyStore
    from tessera.metrics import Metrics
    from tessera.server import TLSConfig
    from tessera.service import Service

log = logging.getLogger("tessera.http")


@dataclass
class HttpServer:
    server: uvicorn.Server
    task: asyncio.Task[None]
    host: str
    port: int
    tls: bool

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, give in-flight requests `grace` seconds, then close."""
        self.server.config.timeout_graceful_shutdown = grace
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and without
    # it a response's headers and body (two writes) wait ~40 ms on the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen for HTTP on {host}:{port} ({exc.strerror or exc})") from exc
    sock.set_inheritable(True)
    return sock


async def start_http(
    service: Service,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    keys: KeyStore | None = None,
    tls: TLSConfig | None = None,
    metrics: Metrics | None = None,
    max_body_bytes: int | None = None,
    max_concurrent: int | None = None,
) -> HttpServer:
    gateway = Gateway(service, keys=keys, metrics=metrics, max_body_bytes=max_body_bytes, max_concurrent=max_concurrent)
    config = uvicorn.Config(
        create_app(gateway),
        log_config=None,  # the process's own (JSON) logging stays in force
        access_log=False,
        lifespan="off",
        server_header=False,
        ssl_certfile=str(tls.cert) if tls else None,
        ssl_keyfile=str(tls.key) if tls else None,
        ssl_ca_certs=str(tls.client_ca) if tls and tls.client_ca else None,
        ssl_cert_reqs=ssl.CERT_REQUIRED if tls and tls.client_ca else ssl.CERT_NONE,
    )
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)  # what Server.serve() sets before startup(); "off" here
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    await server.startup(sockets=[sock])

    async def run() -> None:
        try:
            await server.main_loop()
        finally:
            await server.shutdown(sockets=[sock])

    task = asyncio.create_task(run(), name="tessera-http")
    log.info({"event": "http_serving", "address": f"{host}:{bound}", "tls": tls is not None, "auth": bool(keys)})
    return HttpServer(server, task, host, bound, tls is not None)
