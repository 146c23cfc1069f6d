"""Tessera over HTTP/JSON: the gRPC API's operations, an OpenAI-compatible `/v1/embeddings`, a web console.

`tessera serve --http-port PORT` starts it beside the gRPC server, in the same process and event
loop, on the same `Service` and Engine: the same API keys and roles, limits, metrics and error
codes (errors.py maps them to HTTP statuses). app.py holds the routes, gateway.py what every call
goes through, jsonpb.py the JSON <-> protobuf mapping, serving.py uvicorn, console/ the static
web console served at `/`.
"""

from __future__ import annotations

from .app import create_app
from .gateway import Gateway
from .serving import HttpServer, start_http

__all__ = ["Gateway", "HttpServer", "create_app", "start_http"]
