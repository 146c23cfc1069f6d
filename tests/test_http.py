"""The HTTP/JSON API against a real `tessera serve --http-port` on 127.0.0.1.

Every route, API keys (missing, wrong, too weak a role), the status codes from real bad input with
the same messages as gRPC, the same search results as the gRPC client, the real `openai` package on
`/v1/embeddings`, TLS with the gRPC flags' files, and an OpenAPI document that covers every route.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import httpx
import numpy as np
import pytest

import tessera
from tessera.errors import TesseraError
from tests.http_server import HttpServe

KEYS = {"read": "h-read-5d1c2a", "write": "h-write-80f3e7", "admin": "h-admin-3b9a44"}
SPACE = "digits"  # text (MiniLM), image and audio in one space: one model load serves every test here
SAMPLES = Path(str(resources.files("tessera") / "samples"))
SENTENCES = [s for s in (SAMPLES / "sentences.txt").read_text().splitlines() if s.strip()]
QUESTION = "how does approximate nearest-neighbour search avoid scanning everything?"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServe]:
    root = tmp_path_factory.mktemp("http")
    keys = root / "keys.txt"
    keys.write_text("".join(f"{key} {role}\n" for role, key in KEYS.items()))
    metrics_port = _free_port()
    serve = HttpServe(
        root / "data",
        "--auth-keys", str(keys),
        "--metrics-port", str(metrics_port),
        "--max-concurrent-rpcs", "2",
        "--max-message-mb", "1",
        "--max-items", "64",
    )  # fmt: skip
    serve.metrics_port = metrics_port  # type: ignore[attr-defined]
    try:
        yield serve
    finally:
        assert serve.stop() == 0


def _client(server: HttpServe, role: str | None = "admin") -> httpx.Client:
    headers = {"x-api-key": KEYS[role]} if role else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=120)


@pytest.fixture(scope="module")
def filled(server: HttpServe) -> HttpServe:
    """A text corpus upserted as JSON and an image corpus upserted as multipart files, over HTTP."""
    with _client(server) as http:
        created = http.post("/v1/corpora", json={"name": "notes", "space": SPACE, "modality": "text"})
        assert created.status_code == 201, created.text
        assert created.json()["corpus"]["modality"] == "text"
        items = [{"id": f"s{i}", "content": {"text": s}, "metadata": {"n": i}} for i, s in enumerate(SENTENCES)]
        upserted = http.post("/v1/corpora/notes/items", json={"items": items})
        assert upserted.json() == {"upserted": len(SENTENCES), "batches": 1}
        assert http.post("/v1/corpora", json={"name": "imgs", "space": SPACE, "modality": "MODALITY_IMAGE"}).is_success
        pngs = sorted((SAMPLES / "digits").glob("*.png"))
        files = [("file", (p.name, p.read_bytes(), "image/png")) for p in pngs]
        data = {"metadata": [json.dumps({"digit": int(p.stem)}) for p in pngs]}
        upserted = http.post("/v1/corpora/imgs/items", files=files, data=data)
        assert upserted.status_code == 200, upserted.text
        assert upserted.json()["upserted"] == len(pngs)
    return server


def _grpc(server: HttpServe, role: str = "admin") -> tessera.Client:
    return tessera.connect(server.address, api_key=KEYS[role])


def test_corpora_spaces_health_and_items(filled: HttpServe) -> None:
    with _client(filled, "read") as http:
        assert httpx.get(f"{filled.url}/healthz").json() == {"status": "SERVING"}  # open, like grpc.health
        spaces = {s["name"]: s for s in http.get("/v1/spaces").json()["spaces"]}
        assert spaces[SPACE]["dim"] == 384 and "audio" in spaces[SPACE]["modalities"]
        listed = {c["name"]: c for c in http.get("/v1/corpora").json()["corpora"]}
        assert listed["notes"]["count"] == len(SENTENCES) and listed["imgs"]["count"] == 10
        described = http.get("/v1/corpora/imgs").json()["corpus"]
        assert described == listed["imgs"] and described["space_id"] == "digits@1"
        got = http.get("/v1/corpora/notes/items", params={"ids": ["s1", "missing", "s0"], "include_vectors": True})
        items = got.json()["items"]
        assert [i["id"] for i in items] == ["s1", "s0"] and items[0]["metadata"] == {"n": 1}
        assert items[0]["text"] == SENTENCES[1] and len(items[0]["vector"]) == 384
        with _grpc(filled) as grpc_client:
            assert np.allclose(items[0]["vector"], grpc_client.get("notes", ["s1"], include_vectors=True)[0]["vector"])
        png = http.get("/v1/corpora/imgs/content", params={"id": "7.png"})
        assert png.headers["content-type"] == "image/png" and png.content == (SAMPLES / "digits" / "7.png").read_bytes()
        assert http.get("/v1/corpora/notes/content", params={"id": "s2"}).text == SENTENCES[2]
        sample = http.get("/v1/corpora/imgs/sample", params={"n": 4}).json()["items"]
        assert 1 <= len(sample) <= 4 and all(h["corpus"] == "imgs" and h["modality"] == "image" for h in sample)


def _same_hits(http_hits: list[dict], grpc_hits: list) -> None:
    assert [(h["corpus"], h["id"]) for h in http_hits] == [(h.corpus, h.id) for h in grpc_hits]
    for a, b in zip(http_hits, grpc_hits, strict=True):
        assert a["raw_score"] == pytest.approx(b.raw_score, abs=1e-6)
        assert a["calibrated_score"] == pytest.approx(b.calibrated_score, abs=1e-6)
        assert a["metadata"] == b.metadata and a["modality"] == b.modality


def test_search_answers_what_grpc_answers(filled: HttpServe) -> None:
    seven = (SAMPLES / "digit_7.png").read_bytes()
    with _client(filled, "read") as http, _grpc(filled, "read") as grpc_client:
        # Text, routed across both corpora, with the {query: ...} shorthand.
        routed = http.post("/v1/search", json={"query": "the number seven", "space": SPACE, "top_k": 8}).json()
        expected = grpc_client.search("the number seven", space=SPACE, top_k=8)
        assert sorted(routed["searched"]) == sorted(expected.searched) == ["imgs", "notes"]
        _same_hits(routed["hits"], expected.hits)
        # The proto3 JSON form, named corpus, and a filter.
        body = {
            "space": SPACE,
            "parts": [{"content": {"modality": "text", "text": QUESTION}}],
            "corpora": ["notes"],
            "top_k": 3,
            "filter": {"n": {"range": {"gte": 2}}},
        }
        filtered = http.post("/v1/search", json=body).json()["hits"]
        expected = grpc_client.search(
            QUESTION, space=SPACE, corpora=["notes"], top_k=3, filter={"n": {"range": {"gte": 2}}}
        )
        _same_hits(filtered, expected.hits)
        assert all(h["metadata"]["n"] >= 2 for h in filtered)
        # An image query as base64 JSON and as a multipart upload: the same hits as gRPC.
        expected = grpc_client.search([("image", seven)], space=SPACE, corpora=["imgs"], top_k=3).hits
        as_json = {
            "space": SPACE,
            "parts": [{"content": {"modality": "image", "data": base64.b64encode(seven).decode()}}],
            "corpora": ["imgs"],
            "top_k": 3,
        }
        _same_hits(http.post("/v1/search", json=as_json).json()["hits"], expected)
        form = {"space": SPACE, "corpora": "imgs", "top_k": "3"}
        uploaded = http.post("/v1/search", files={"file": ("q.png", seven, "image/png")}, data=form)
        assert uploaded.status_code == 200, uploaded.text
        _same_hits(uploaded.json()["hits"], expected)
        assert expected[0].id == "7.png"
        # Batch search.
        batch = {"queries": [{"query": QUESTION, "corpora": ["notes"], "top_k": 2}, {"query": "zero", "top_k": 1}]}
        results = http.post(
            "/v1/search/batch", json={**batch, "queries": [{**q, "space": SPACE} for q in batch["queries"]]}
        )
        first = grpc_client.search(QUESTION, space=SPACE, corpora=["notes"], top_k=2).hits
        _same_hits(results.json()["results"][0]["hits"], first)
        assert len(results.json()["results"][1]["hits"]) == 1


def test_embed_route_matches_grpc_for_text_and_media(filled: HttpServe) -> None:
    wav = (SAMPLES / "seven_george.wav").read_bytes()
    body = {
        "space": SPACE,
        "items": [
            {"modality": "text", "text": "seven"},
            {"modality": "audio", "data": base64.b64encode(wav).decode()},
        ],
    }
    with _client(filled, "read") as http, _grpc(filled, "read") as grpc_client:
        floats = http.post("/v1/embed", json=body).json()
        packed = http.post("/v1/embed", json={**body, "encoding_format": "base64"}).json()
        text = grpc_client.embed(["seven"], space=SPACE)[0]
        audio = grpc_client.embed([wav], modality="audio", space=SPACE)[0]
    assert floats["space_id"] == "digits@1" and floats["dim"] == 384
    assert np.allclose(floats["vectors"][0], text, atol=1e-6) and np.allclose(floats["vectors"][1], audio, atol=1e-5)
    assert np.array_equal(
        np.frombuffer(base64.b64decode(packed["vectors"][0]), "<f4"), np.float32(floats["vectors"][0])
    )


def test_openai_package_gets_the_vectors_tessera_connect_gets(filled: HttpServe) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{filled.url}/v1", api_key=KEYS["read"], max_retries=0)
    texts = ["a handwritten seven", "spoken digits are short clips", "approximate nearest neighbours"]
    with _grpc(filled, "read") as grpc_client:
        expected_one = grpc_client.embed([texts[0]], space=SPACE)[0]
        expected = grpc_client.embed(texts, space=SPACE)
    one = client.embeddings.create(model=SPACE, input=texts[0])  # the package asks for base64 by default
    many = client.embeddings.create(model=SPACE, input=texts, encoding_format="float")
    assert one.model == SPACE and len(one.data) == 1 and one.usage.prompt_tokens == 3
    assert [d.index for d in many.data] == [0, 1, 2]

    def cosine(a: object, b: np.ndarray) -> float:
        a = np.asarray(a, dtype=np.float64)
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    assert cosine(one.data[0].embedding, expected_one) >= 0.9999
    assert min(cosine(d.embedding, e) for d, e in zip(many.data, expected, strict=True)) >= 0.9999
    with pytest.raises(openai.NotFoundError, match="nope"):
        client.embeddings.create(model="nope", input="x")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{filled.url}/v1", api_key="wrong", max_retries=0).embeddings.create(
            model=SPACE, input="x"
        )


def test_api_keys_missing_wrong_and_too_weak(filled: HttpServe) -> None:
    new = {"name": "scratch", "space": SPACE, "modality": "text"}
    with httpx.Client(base_url=filled.url, timeout=60) as http:
        missing = http.get("/v1/corpora")
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "UNAUTHENTICATED"
        assert "missing API key" in missing.json()["error"]["message"]
        wrong = http.get("/v1/corpora", headers={"x-api-key": "not-a-key"})
        assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "unknown or revoked API key"
        assert http.get("/v1/corpora", headers={"Authorization": "Bearer not-a-key"}).status_code == 401
        bearer = {"Authorization": f"Bearer {KEYS['read']}"}
        assert http.get("/v1/corpora", headers=bearer).status_code == 200
        for role, method, path, body in (
            ("read", "POST", "/v1/corpora", new),
            ("read", "POST", "/v1/corpora/notes/items", {"items": [{"id": "x", "content": {"text": "x"}}]}),
            ("read", "POST", "/v1/corpora/notes/items/delete", {"ids": ["x"]}),
            ("write", "DELETE", "/v1/corpora/notes", None),
            ("write", "POST", "/v1/corpora", new),
        ):
            weak = http.request(method, path, json=body, headers={"x-api-key": KEYS[role]})
            assert weak.status_code == 403, (role, path, weak.text)
            assert (
                weak.json()["error"]["code"] == "PERMISSION_DENIED"
                and f"role {role!r}" in weak.json()["error"]["message"]
            )
        assert http.get("/").status_code == 200 and "<title>Tessera console</title>" in http.get("/").text
        assert http.get("/console/console.js").status_code == 200
        with _grpc(filled, "read") as grpc_client:
            with pytest.raises(TesseraError) as grpc_error:
                grpc_client.create_corpus("scratch", space=SPACE, modality="text")
        assert grpc_error.value.code == "PERMISSION_DENIED"


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text
    return response.json()["error"]["message"]


def test_status_codes_from_real_bad_input_carry_grpc_messages(filled: HttpServe) -> None:
    with _client(filled) as http, _grpc(filled) as grpc_client:

        def grpc_message(call) -> str:  # the message a gRPC caller gets for the same request
            with pytest.raises(TesseraError) as caught:
                call()
            return caught.value.message

        _error(
            http.post("/v1/search", content=b"{not json", headers={"content-type": "application/json"}),
            400,
            "INVALID_ARGUMENT",
        )
        assert "no field named" in _error(http.post("/v1/search", json={"quer": "x"}), 400, "INVALID_ARGUMENT")
        bad_png = {
            "space": SPACE,
            "parts": [{"content": {"modality": "image", "data": base64.b64encode(b"not a png").decode()}}],
        }
        message = _error(http.post("/v1/search", json={**bad_png, "corpora": ["imgs"]}), 400, "INVALID_ARGUMENT")
        assert message == grpc_message(
            lambda: grpc_client.search([("image", b"not a png")], space=SPACE, corpora=["imgs"])
        )
        message = _error(
            http.post("/v1/search", json={"query": "x", "space": SPACE, "corpora": ["nope"]}), 404, "NOT_FOUND"
        )
        assert message == grpc_message(lambda: grpc_client.search("x", space=SPACE, corpora=["nope"]))
        _error(http.get("/v1/corpora/nope"), 404, "NOT_FOUND")
        _error(
            http.post("/v1/embed", json={"space": "no-such-space", "items": [{"modality": "text", "text": "x"}]}),
            404,
            "NOT_FOUND",
        )
        _error(http.get("/v1/corpora/imgs/content", params={"id": "nope"}), 404, "NOT_FOUND")
        message = _error(
            http.post("/v1/corpora", json={"name": "notes", "space": SPACE, "modality": "text"}), 409, "ALREADY_EXISTS"
        )
        assert message == grpc_message(lambda: grpc_client.create_corpus("notes", space=SPACE, modality="text"))
        # Over a size limit: 413.
        message = _error(
            http.post("/v1/search", json={"query": "x", "space": SPACE, "top_k": 5000}), 413, "RESOURCE_EXHAUSTED"
        )
        assert message == grpc_message(lambda: grpc_client.search("x", space=SPACE, top_k=5000))
        items = [{"id": str(i), "content": {"text": "x"}} for i in range(65)]
        assert "limit is 64" in _error(
            http.post("/v1/corpora/notes/items", json={"items": items}), 413, "RESOURCE_EXHAUSTED"
        )
        huge = {"query": "x" * (1 << 20)}
        assert "limit is 1048576" in _error(http.post("/v1/search", json=huge), 413, "RESOURCE_EXHAUSTED")
        _error(http.post("/v1/embeddings", json={"model": SPACE, "input": [[1, 2, 3]]}), 400, "INVALID_ARGUMENT")


def _hang(server: HttpServe, extra_headers: str = "") -> socket.socket:
    """A search whose body never finishes arriving: it holds a call slot until the socket closes."""
    sock = socket.create_connection(tuple(server.http_address.rsplit(":", 1)))  # type: ignore[arg-type]
    sock.sendall(
        (
            f"POST /v1/search HTTP/1.1\r\nHost: x\r\nx-api-key: {KEYS['read']}\r\ncontent-type: application/json\r\n"
            f'content-length: 100\r\n{extra_headers}\r\n{{"query": '
        ).encode()
    )
    return sock


def test_concurrency_cap_is_429_and_deadline_is_504(filled: HttpServe) -> None:
    with _client(filled, "read") as http:
        held = [_hang(filled), _hang(filled)]  # --max-concurrent-rpcs 2
        try:
            deadline = time.monotonic() + 10
            while (refused := http.get("/v1/corpora")).status_code != 429 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "--max-concurrent-rpcs 2" in _error(refused, 429, "RESOURCE_EXHAUSTED")
            assert refused.headers["retry-after"] == "1"
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + 10
        while http.get("/v1/corpora").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert http.get("/v1/corpora").status_code == 200
        slow = _hang(filled, "x-request-timeout: 0.3\r\n")
        try:
            slow.settimeout(30)
            reply = ""
            while '"DEADLINE_EXCEEDED"' not in reply and (chunk := slow.recv(4096)):  # headers, then the body
                reply += chunk.decode()
        finally:
            slow.close()
        assert reply.startswith("HTTP/1.1 504") and '"DEADLINE_EXCEEDED"' in reply
        _error(
            http.post("/v1/search", json={"query": "x"}, headers={"x-request-timeout": "soon"}), 400, "INVALID_ARGUMENT"
        )


def test_delete_drop_and_metrics(filled: HttpServe) -> None:
    with _client(filled) as http:
        assert http.post("/v1/corpora", json={"name": "tmp", "space": SPACE, "modality": "text"}).status_code == 201
        items = [{"id": f"t{i}", "content": {"text": f"note {i}"}, "metadata": {"i": i}} for i in range(4)]
        assert http.post("/v1/corpora/tmp/items", json={"items": items}).json()["upserted"] == 4
        assert http.post("/v1/corpora/tmp/items/delete", json={"ids": ["t0"]}).json() == {"deleted": 1}
        assert http.post("/v1/corpora/tmp/items/delete", json={"filter": {"i": {"in": [1, 2]}}}).json() == {
            "deleted": 2
        }
        _error(http.post("/v1/corpora/tmp/items/delete", json={}), 400, "INVALID_ARGUMENT")
        assert http.get("/v1/corpora/tmp").json()["corpus"]["count"] == 1
        assert http.delete("/v1/corpora/tmp").json() == {}
        _error(http.get("/v1/corpora/tmp"), 404, "NOT_FOUND")
    port = filled.metrics_port  # type: ignore[attr-defined]
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert 'tessera_requests_total{code="OK",method="Search"}' in text
    assert 'tessera_requests_total{code="PERMISSION_DENIED",method="CreateCorpus"}' in text
    assert 'tessera_requests_total{code="OK",method="DropCorpus"}' in text


def test_openapi_document_covers_every_route(filled: HttpServe, tmp_path: Path) -> None:
    from fastapi.routing import APIRoute

    from tessera.engine import Engine
    from tessera.http import Gateway, create_app
    from tessera.service import Service

    document = httpx.get(f"{filled.url}/openapi.json").json()
    app = create_app(Gateway(Service(Engine(tmp_path / "data"))))
    routes = [
        (route.path, method.lower()) for route in app.routes if isinstance(route, APIRoute) for method in route.methods
    ]
    assert len(routes) >= 16
    for path, method in routes:
        assert method in document["paths"].get(path, {}), f"{method.upper()} {path} is not in /openapi.json"
    assert {"SearchRequest", "Hit", "CorpusInfo", "EmbedRequest"} <= set(document["components"]["schemas"])
    search = document["paths"]["/v1/search"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in search and search["application/json"]["schema"]["$ref"].endswith("/SearchRequest")
    assert httpx.get(f"{filled.url}/docs").status_code == 200


def test_tls_uses_the_grpc_flags_files(tmp_path: Path) -> None:
    from tessera.background import ServerThread
    from tessera.server import TLSConfig
    from tests.tls_certs import make_cert

    make_cert(tmp_path, "ca")
    make_cert(tmp_path, "server", signed_by="ca")
    make_cert(tmp_path, "client", signed_by="ca")
    tls = TLSConfig(cert=tmp_path / "server.crt", key=tmp_path / "server.key", client_ca=tmp_path / "ca.crt")
    server = ServerThread(tmp_path / "data", tls=tls, http_port=0).start()
    try:
        url = server.http_url
        assert url is not None and url.startswith("https://127.0.0.1:")
        import ssl

        context = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
        context.load_cert_chain(tmp_path / "client.crt", tmp_path / "client.key")
        assert httpx.get(f"{url}/v1/corpora", verify=context).json() == {"corpora": []}
        bare = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))  # no client certificate: refused
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            httpx.get(f"{url}/v1/corpora", verify=bare)
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            httpx.get(url.replace("https", "http") + "/v1/corpora")  # plaintext to a TLS port
    finally:
        server.stop()


def test_quickstart_prints_the_console_address(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from tests.http_server import REPO

    process = subprocess.Popen(
        [sys.executable, "-m", "tessera.cli", "quickstart", "--http-port", "0", "--data-dir", str(tmp_path / "qs")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while not any("keeps running" in line for line in lines) and time.monotonic() < deadline:
            assert process.poll() is None, "".join(lines)
            time.sleep(0.2)
        console = next(line for line in lines if line.startswith("web console on "))
        url = console.split(" on ")[1].split("/ ")[0]
        assert "Tessera console" in httpx.get(url + "/").text
        names = {c["name"] for c in httpx.get(url + "/v1/corpora").json()["corpora"]}
        assert names == {"passages", "digit-images", "spoken-digits"}
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0


def test_a_damaged_corpus_answers_data_loss_as_500(tmp_path: Path) -> None:
    """DATA_LOSS (a corpus file fails its check) is 500 with its own code, the file named, no server path."""
    from starlette.testclient import TestClient

    from tessera.engine import Engine
    from tessera.http import Gateway, create_app
    from tessera.index.catalog import Catalog
    from tessera.index.items import Item
    from tessera.service import Service

    with Catalog(tmp_path) as catalog:
        corpus = catalog.create("c", space="vectors:4", modality="vector", dim=4, index="Flat")
        corpus.upsert([Item(id="a", vector=np.array([1, 0, 0, 0], dtype=np.float32))])
        corpus.snapshot()
    (tmp_path / "corpora" / "c" / "manifest.json").write_text('{"truncated": ')
    engine = Engine(tmp_path)
    with TestClient(create_app(Gateway(Service(engine)))) as http:
        described = http.get("/v1/corpora/c").json()["corpus"]  # listed and described, as over gRPC
        assert described["damaged"] and "manifest.json" in described["damage"]
        assert [(c["name"], c["damaged"]) for c in http.get("/v1/corpora").json()["corpora"]] == [("c", True)]
        got = http.get("/v1/corpora/c/items", params={"ids": ["a"]})
        message = _error(got, 500, "DATA_LOSS")  # type: ignore[arg-type]
        assert "manifest.json" in message and str(tmp_path) not in message
        query = {"parts": [{"content": {"modality": "vector", "vector": [1, 0, 0, 0]}}], "corpora": ["c"]}
        _error(http.post("/v1/search", json=query), 500, "DATA_LOSS")  # type: ignore[arg-type]
