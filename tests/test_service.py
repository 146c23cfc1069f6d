"""The gRPC service end to end: a real server on 127.0.0.1, driven through the real Python client."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from tessera.background import ServerThread
from tessera.client import AsyncClient, Client
from tessera.engine import Limits
from tessera.errors import DeadlineExceeded, InvalidArgument, NotFound, TesseraError
from tessera.server import TLSConfig
from tests.tls_certs import make_cert

REPO = Path(__file__).resolve().parents[1]

SPACE = "minilm-bind-init"  # real MiniLM text plus image/audio/video encoders
PASSAGES = {
    "bike": "A red bicycle leaning against a brick wall.",
    "soup": "A recipe for tomato soup with basil.",
    "train": "The night train to Vienna leaves at ten.",
    "cat": "A cat asleep on a sunny windowsill.",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    srv = ServerThread(
        tmp_path_factory.mktemp("served"),
        limits=Limits(max_items_per_request=64, max_message_bytes=4 << 20),
        max_wait_ms=20,
    ).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server: ServerThread):
    with Client(server.address, timeout=60) as c:
        c.wait_ready()
        yield c


@pytest.fixture(scope="module")
def texts(client: Client) -> str:
    client.create_corpus("texts", space=SPACE, modality="text", index="Flat")
    items = [{"id": k, "text": v, "metadata": {"len": len(v), "tags": [k[0]]}} for k, v in PASSAGES.items()]
    assert client.upsert("texts", items, batch_size=3) == 4
    return "texts"


def codes(fn) -> tuple[grpc.StatusCode, str]:
    """The status a client call failed with; the client raises TesseraError subclasses, never grpc errors."""
    with pytest.raises(TesseraError) as info:
        fn()
    return grpc.StatusCode[info.value.code], info.value.message


def test_health_and_reflection(client: Client, server: ServerThread) -> None:
    assert client.health() == "SERVING"
    assert client.health("tessera.v1.Tessera") == "SERVING"
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(client.channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"tessera.v1.Tessera", "grpc.health.v1.Health"} <= names


def test_embed_stream_answers_each_batch_in_order_and_list_spaces(client: Client, bind_space) -> None:
    sentences = list(PASSAGES.values())
    batches = [sentences[:1], sentences[1:4], ["a third message on the same stream"]]
    streamed = list(client.embed_stream(iter(batches), space=SPACE))
    assert [v.shape for v in streamed] == [(1, 384), (3, 384), (1, 384)]
    local = bind_space.embed("text", [s for b in batches for s in b])
    assert float(np.min(np.sum(np.concatenate(streamed) * local, axis=1))) > 0.9999
    with pytest.raises(InvalidArgument):  # a bad message ends the stream with its status
        list(client.embed_stream(iter([sentences[:1], ["   "]]), space=SPACE))
    spaces = {s["name"]: s for s in client.list_spaces()}
    assert spaces["minilm"]["available"] and "text" in spaces["minilm"]["modalities"]
    assert {"text", "image", "audio", "video"} <= set(spaces[SPACE]["modalities"])


def test_embed_matches_the_in_process_space(client: Client, bind_space) -> None:
    sentences = list(PASSAGES.values())
    remote = client.embed(sentences, space=SPACE)
    local = bind_space.embed("text", sentences)
    assert remote.shape == (4, 384) and remote.dtype == np.float32
    assert float(np.min(np.sum(remote * local, axis=1))) > 0.9999
    image = (Path(__file__).resolve().parents[1] / "services" / "samples" / "digit_7.png").read_bytes()
    vec = client.embed([image], modality="image", space=SPACE)
    np.testing.assert_allclose(vec[0], bind_space.embed("image", [image])[0], atol=1e-5)


def test_corpus_lifecycle_search_get_delete(client: Client, texts: str) -> None:
    listed = {c["name"]: c for c in client.list_corpora()}
    assert listed[texts]["count"] == 4 and listed[texts]["modality"] == "text" and listed[texts]["dim"] == 384
    described = client.describe_corpus(texts)
    assert described["searching"] == "exact" and described["bytes_on_disk"] > 0
    result = client.search("a bike by a wall", space=SPACE, top_k=2)
    assert result.hits[0].id == "bike" and result.hits[0].corpus == texts
    assert result.hits[0].raw_score > result.hits[1].raw_score and np.isfinite(result.hits[0].calibrated_score)
    filtered = client.search("a bike by a wall", space=SPACE, top_k=4, filter={"tags": {"in": ["s", "t"]}})
    assert {h.id for h in filtered.hits} == {"soup", "train"}
    with_vectors = client.search("cat", space=SPACE, top_k=1, include_vectors=True)
    assert with_vectors.hits[0].vector.shape == (384,)
    batch = client.batch_search(["soup", "train to Vienna"], space=SPACE, top_k=1)
    assert [r.hits[0].id for r in batch] == ["soup", "train"]
    got = client.get(texts, ["cat", "missing"], include_vectors=True)
    assert (
        [g["id"] for g in got] == ["cat"] and got[0]["text"] == PASSAGES["cat"] and got[0]["metadata"]["tags"] == ["c"]
    )
    client.create_corpus("scratch", space=SPACE, modality="text")
    client.upsert(
        "scratch", [{"id": str(i), "vector": np.eye(384, dtype=np.float32)[i], "metadata": {"n": i}} for i in range(10)]
    )
    assert client.delete("scratch", ids=["0", "1"]) == 2
    assert client.delete("scratch", filter={"n": {"range": {"gte": 8}}}) == 2
    assert client.describe_corpus("scratch")["count"] == 6
    client.drop_corpus("scratch")
    assert "scratch" not in {c["name"] for c in client.list_corpora()}


def test_create_corpus_carries_hnsw_build_settings(client: Client, server: ServerThread) -> None:
    client.create_corpus("graph", space=SPACE, modality="text", index="HNSW16", ef_search=48, ef_construction=77)
    manifest = json.loads((Path(server.data_dir) / "corpora" / "graph" / "manifest.json").read_text())
    assert manifest["index"]["ef_construction"] == 77 and manifest["index"]["ef_search"] == 48
    client.drop_corpus("graph")


def test_routed_query_reports_skipped_corpora(client: Client, texts: str) -> None:
    client.create_corpus("other-space", space="minilm", modality="text")
    result = client.search("soup", space=SPACE, top_k=3)
    assert texts in result.searched
    assert ("other-space", f"in space minilm@all-MiniLM-L6-v2, query is {SPACE}@0") in [
        (c, r) for c, r in result.skipped
    ] or any(c == "other-space" for c, _ in result.skipped)
    client.drop_corpus("other-space")


def test_bad_input_gets_the_right_status_and_the_server_stays_up(client: Client, texts: str) -> None:
    client.create_corpus("images", space=SPACE, modality="image")
    bad = [
        (
            lambda: client.embed([b"\x89PNG not really"], modality="image", space=SPACE),
            grpc.StatusCode.INVALID_ARGUMENT,
            "image",
        ),
        (
            lambda: client.upsert("images", [{"id": "x", "data": b"garbage", "modality": "image"}]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "'x'",
        ),
        (
            lambda: client.upsert(texts, [{"id": "v", "vector": np.ones(5)}]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "dimension 5",
        ),
        (
            lambda: client.upsert(texts, [{"id": "n", "vector": np.full(384, np.nan)}]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "NaN",
        ),
        (
            lambda: client.search([("vector", np.full(384, np.nan, dtype=np.float32))], space=SPACE),
            grpc.StatusCode.INVALID_ARGUMENT,
            "NaN",
        ),
        (lambda: client.search("x", space=SPACE, corpora=["nope"]), grpc.StatusCode.NOT_FOUND, "nope"),
        (lambda: client.describe_corpus("nope"), grpc.StatusCode.NOT_FOUND, "nope"),
        (lambda: client.embed(["x"], space="no-such-space"), grpc.StatusCode.NOT_FOUND, "no-such-space"),
        (
            lambda: client.search("x", space=SPACE, filter={"len": {"gtt": 3}}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "filter.len: unknown operator 'gtt'",
        ),
        (lambda: client.create_corpus(texts, space=SPACE, modality="text"), grpc.StatusCode.ALREADY_EXISTS, texts),
        (lambda: client.embed(["x"] * 65, space=SPACE), grpc.StatusCode.RESOURCE_EXHAUSTED, "limit is 64"),
        (
            lambda: client.embed([b"\0" * (5 << 20)], modality="image", space=SPACE),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "",
        ),
        (lambda: client.search("x", space=SPACE, top_k=5000), grpc.StatusCode.RESOURCE_EXHAUSTED, "top_k"),
        # An HNSW beam is allocated up front: 10^9 would take 8 GB per query, so it is refused.
        (
            lambda: client.search("x", space=SPACE, ef_search=10**9),
            grpc.StatusCode.INVALID_ARGUMENT,
            "ef_search is 1000000000; the most this server accepts is 32768",
        ),
        (
            lambda: client.create_corpus(
                "huge-beam", space=SPACE, modality="text", index="HNSW16", ef_construction=10**6
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "ef_construction is 1000000",
        ),
    ]
    for call, code, fragment in bad:
        got, details = codes(call)
        assert got == code, (got, details)
        assert fragment in details, details
    assert client.health() == "SERVING"
    assert client.describe_corpus(texts)["count"] == 4  # nothing written before was lost
    assert "huge-beam" not in [c["name"] for c in client.list_corpora()]
    assert client.search("soup", space=SPACE, top_k=1).hits[0].id == "soup"
    client.drop_corpus("images")


def test_deadline_exceeded(client: Client, server: ServerThread) -> None:
    with Client(server.address, timeout=0.005) as hurried:
        with pytest.raises(DeadlineExceeded):
            hurried.embed(["word " * 200] * 64, space=SPACE)
    assert client.health() == "SERVING"


def test_concurrent_embeds_share_model_batches(client: Client, server: ServerThread) -> None:
    before = server.running.engine._batchers
    sentences = [f"sentence number {i} about the weather" for i in range(32)]
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        vectors = list(pool.map(lambda s: client.embed([s], space=SPACE)[0], sentences))
    assert len(vectors) == 32
    stats = [b.stats for (space, modality), b in before.items() if modality.value == "text"]
    total_batches = sum(s.batches for s in stats)
    total_items = sum(s.items for s in stats)
    assert total_items >= 32 and total_batches < total_items  # some calls were merged into shared batches


def test_async_client(server: ServerThread, texts: str) -> None:
    async def main() -> tuple[str, str]:
        async with AsyncClient(server.address) as aclient:
            health = await aclient.health()
            result = await aclient.search("tomato soup", space=SPACE, top_k=1)
            return health, result.hits[0].id

    assert asyncio.run(main()) == ("SERVING", "soup")


def test_api_keys_and_roles(tmp_path: Path) -> None:
    keys = {"reader-key": "read", "writer-key": "write", "admin-key": "admin"}
    srv = ServerThread(tmp_path, api_keys=keys).start()
    try:
        with Client(srv.address) as anonymous:
            assert anonymous.health() == "SERVING"  # health stays open for load balancers
            got, details = codes(anonymous.list_corpora)
            assert got == grpc.StatusCode.UNAUTHENTICATED and "x-api-key" in details
        with Client(srv.address, api_key="wrong") as wrong:
            assert codes(wrong.list_corpora)[0] == grpc.StatusCode.UNAUTHENTICATED
        with Client(srv.address, api_key="reader-key") as reader:
            assert reader.list_corpora() == []
            got, details = codes(lambda: reader.create_corpus("c", space="minilm", modality="text"))
            assert got == grpc.StatusCode.PERMISSION_DENIED and "admin" in details
        with Client(srv.address, api_key="admin-key") as admin:
            admin.create_corpus("c", space="minilm", modality="text")
        with Client(srv.address, api_key="writer-key") as writer:
            assert writer.upsert("c", [{"id": "1", "text": "hello"}]) == 1
            assert codes(lambda: writer.drop_corpus("c"))[0] == grpc.StatusCode.PERMISSION_DENIED
    finally:
        srv.stop()


def test_tls_and_mutual_tls(tmp_path: Path) -> None:
    make_cert(tmp_path, "ca")
    make_cert(tmp_path, "server", signed_by="ca")
    make_cert(tmp_path, "client", signed_by="ca")
    tls = TLSConfig(cert=tmp_path / "server.crt", key=tmp_path / "server.key", client_ca=tmp_path / "ca.crt")
    srv = ServerThread(tmp_path / "data", tls=tls).start()
    try:
        with Client(
            srv.address, tls_ca=tmp_path / "ca.crt", tls_cert=tmp_path / "client.crt", tls_key=tmp_path / "client.key"
        ) as mutual:
            assert mutual.health() == "SERVING" and mutual.list_corpora() == []
        with Client(srv.address, tls_ca=tmp_path / "ca.crt", timeout=5) as no_client_cert:
            assert codes(no_client_cert.list_corpora)[0] == grpc.StatusCode.UNAVAILABLE
        with Client(srv.address, timeout=5) as plaintext:
            assert codes(plaintext.list_corpora)[0] == grpc.StatusCode.UNAVAILABLE
    finally:
        srv.stop()


def test_prometheus_metrics_count_calls_batches_and_corpus_sizes(
    client: Client, server: ServerThread, texts: str
) -> None:
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server.metrics.serve(port)
    client.embed(["one sentence to count"], space=SPACE)
    client.describe_corpus(texts)
    with pytest.raises(NotFound):
        client.describe_corpus("no-such-corpus")
    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in page.splitlines()
        if line.startswith("tessera_")
    }
    assert samples['tessera_requests_total{code="OK",method="Embed"}'] >= 1
    assert samples['tessera_requests_total{code="NOT_FOUND",method="DescribeCorpus"}'] >= 1
    assert samples['tessera_request_seconds_count{method="Embed"}'] >= 1
    assert samples["tessera_embed_batch_size_count"] >= 1 and samples["tessera_embed_batch_size_sum"] >= 1
    assert samples[f'tessera_corpus_items{{corpus="{texts}"}}'] == len(client.get(texts, list(PASSAGES)))


def test_the_client_imports_without_torch_or_faiss() -> None:
    """An application that only calls the service must not pay for the models (about 230 MB of torch)."""
    probe = (
        "import sys, tessera, tessera.client\n"
        "from tessera import embedder\n"
        "heavy = sorted(m for m in ('torch', 'faiss', 'pyarrow', 'transformers') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "assert embedder.load_space.__module__ == 'tessera.embedder.registry' and 'torch' in sys.modules\n"
        "assert 'load_space' in dir(embedder)\n"
        "try:\n"
        "    embedder.no_such_thing\n"
        "except AttributeError as exc:\n"
        "    assert 'no_such_thing' in str(exc)\n"
        "else:\n"
        "    raise AssertionError('unknown attribute did not raise')\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
