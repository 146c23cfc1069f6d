"""CI-sized reliability runs against a real `tessera serve`: SIGKILL trials, a 10-second load, every limit."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import numpy as np
import pytest

from benchmarks.reliability import PHASES, ServerProcess, crash_trials, load
from tessera.client import Client
from tessera.errors import NotFound, TesseraError
from tessera.v1 import tessera_pb2 as pb
from tessera.v1 import tessera_pb2_grpc as pb_grpc


def test_three_sigkill_trials_lose_no_acknowledged_write(tmp_path: Path) -> None:
    report = crash_trials(3, tmp_path)
    assert report["crash_trials"] == 3
    assert report["crash_acknowledged_writes"] > 0 and report["crash_items_checked"] > 0
    assert report["crash_deletes_checked"] > 0
    assert sum(report[f"crash_killed_during_{p}"] for p in PHASES) == 3
    assert report["lost"] == 0 and report["crash_wrong"] == 0
    assert report["crash_resurrected"] == 0 and report["crash_count_mismatch"] == 0
    assert report["crash_search_misses"] == 0 and report["crash_unloadable"] == 0


def test_ten_seconds_of_mixed_load_from_sixteen_clients_has_no_errors(tmp_path: Path) -> None:
    report = load(16, 10.0, tmp_path)
    assert report["load_errors"] == 0, report["load_error_examples"]
    assert report["load_search_requests"] > 0 and report["load_embed_requests"] > 0
    assert report["load_upsert_requests"] > 0
    assert report["load_p99_ms"] >= report["load_p50_ms"] > 0
    assert report["load_rss_growth_mb"] < 500


def _code(call) -> grpc.StatusCode:
    try:
        call()
    except TesseraError as exc:  # Tessera's client
        return grpc.StatusCode[exc.code]
    except grpc.RpcError as exc:  # a raw stub
        return exc.code()
    return grpc.StatusCode.OK


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory):
    server = ServerProcess(
        tmp_path_factory.mktemp("limits"),
        *("--max-message-mb", "1", "--max-items", "8", "--max-top-k", "20", "--max-query-parts", "2"),
        *("--max-batch-queries", "3", "--max-concurrent-rpcs", "2"),
    )
    with Client(server.address) as client:
        client.create_corpus("docs", space="minilm", modality="text")
        client.upsert("docs", [{"id": f"d{i}", "text": f"document number {i}"} for i in range(8)])
    yield server
    server.stop()


def test_every_configured_limit_is_enforced_with_the_documented_status(limited: ServerProcess) -> None:
    exhausted = grpc.StatusCode.RESOURCE_EXHAUSTED
    with Client(limited.address) as client:
        ok = grpc.StatusCode.OK
        assert _code(lambda: client.search("document", space="minilm", corpora=["docs"], top_k=20)) == ok
        assert _code(lambda: client.search("document", space="minilm", corpora=["docs"], top_k=21)) == exhausted
        parts = [("text", "a"), ("text", "b"), ("text", "c")]
        assert _code(lambda: client.search(parts, space="minilm", corpora=["docs"])) == exhausted
        assert _code(lambda: client.embed([f"t{i}" for i in range(9)])) == exhausted
        assert _code(lambda: client.upsert("docs", [{"id": f"n{i}", "text": "x"} for i in range(9)])) == exhausted
        assert _code(lambda: client.batch_search(["a", "b", "c", "d"], space="minilm", corpora=["docs"])) == exhausted
        assert _code(lambda: client.embed(["x" * (2 << 20)])) == exhausted  # a 2 MiB message, over 1 MiB
        assert client.describe_corpus("docs")["count"] == 8  # refused writes wrote nothing
        assert client.health() == "SERVING"


def test_a_network_server_loads_no_space_from_a_path_a_client_names(limited: ServerProcess, tmp_path: Path) -> None:
    from tessera.embedder import load_space, save_space

    save_space(load_space("minilm"), tmp_path / "planted")  # a real, loadable space directory on the server's disk
    with Client(limited.address) as client:
        for name in (str(tmp_path / "planted"), "../planted", "openclip:ViT-B-32//etc/hosts"):
            with pytest.raises(NotFound) as refused:
                client.embed(["hello"], space=name)
            assert "--allow-space-paths" in refused.value.message, name
        assert client.embed(["hello"], space="minilm").shape == (1, 384)


def test_calls_beyond_the_concurrency_limit_are_refused_not_queued(limited: ServerProcess) -> None:
    release = threading.Event()

    def held_requests():
        yield pb.EmbedRequest(space="minilm", items=[pb.Content(modality=pb.MODALITY_TEXT, text="hold")])
        release.wait(30)

    with grpc.insecure_channel(limited.address) as channel:
        stub = pb_grpc.TesseraStub(channel)
        streams = [stub.EmbedStream(held_requests(), timeout=60) for _ in range(2)]
        for stream in streams:
            next(stream)  # both streams are open and answered: the two slots are taken
        refused = _code(lambda: stub.ListCorpora(pb.ListCorporaRequest(), timeout=10))
        release.set()
        for stream in streams:
            list(stream)
        after = _code(lambda: stub.ListCorpora(pb.ListCorporaRequest(), timeout=10))
    assert refused == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert after == grpc.StatusCode.OK


def test_vectors_survive_identically_through_the_crash_ledger(tmp_path: Path) -> None:
    """The ledger's own check can fail: a changed vector after restart is counted as wrong."""
    from benchmarks.reliability import CRASH_CORPUS, DIM, Ledger, verify

    server = ServerProcess(tmp_path / "data")
    try:
        with Client(server.address) as client:
            client.create_corpus(CRASH_CORPUS, space=f"vectors:{DIM}", modality="vector")
            vector = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)
            client.upsert(CRASH_CORPUS, [{"id": "a", "vector": vector, "metadata": {"k": 1}}], modality="vector")
        ledger = Ledger(items={"a": (vector[::-1].copy() * np.arange(1, DIM + 1), {"k": 1})})
        assert verify(server.address, ledger, np.random.default_rng(0))["wrong"] == 1
        ledger = Ledger(items={"b": (vector, {})})
        assert verify(server.address, ledger, np.random.default_rng(0))["lost"] == 1
    finally:
        server.stop()
