"""Every role against every RPC, missing / unknown / revoked keys, TLS and mTLS, and keys kept out of logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from tessera.auth import METHOD_ROLES, ROLES, KeyStore, allows
from tessera.background import ServerThread
from tessera.client import Client
from tessera.errors import TesseraError, Unauthenticated
from tessera.server import TLSConfig
from tessera.v1 import tessera_pb2 as pb
from tessera.v1 import tessera_pb2_grpc as pb_grpc
from tests.tls_certs import make_cert

REPO = Path(__file__).resolve().parents[1]
KEYS = {"read": "k-read-7f3a9c", "write": "k-write-21be04", "admin": "k-admin-e98d51"}
DENIED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


def _text(value: str) -> pb.Content:
    return pb.Content(modality=pb.MODALITY_TEXT, text=value)


def _calls(stub: pb_grpc.TesseraStub) -> dict[str, Callable[[tuple], object]]:
    """One valid request per RPC, so that only the key decides whether it is refused."""

    def call(method: Callable[..., object], request: object) -> Callable[[tuple], object]:
        return lambda metadata: method(request, metadata=metadata, timeout=60)

    query = pb.SearchRequest(space="minilm", parts=[pb.QueryPart(content=_text("hello"), weight=1.0)], top_k=1)
    embed = pb.EmbedRequest(space="minilm", items=[_text("hi")])
    upsert = pb.UpsertRequest(corpus="matrix", items=[pb.Item(id="x", content=_text("hello"))])
    return {
        "ListSpaces": call(stub.ListSpaces, pb.ListSpacesRequest()),
        "Embed": call(stub.Embed, embed),
        "EmbedStream": lambda metadata: list(stub.EmbedStream(iter([embed]), metadata=metadata, timeout=60)),
        "Search": call(stub.Search, query),
        "BatchSearch": call(stub.BatchSearch, pb.BatchSearchRequest(queries=[query])),
        "Get": call(stub.Get, pb.GetRequest(corpus="matrix", ids=["x"])),
        "ListCorpora": call(stub.ListCorpora, pb.ListCorporaRequest()),
        "DescribeCorpus": call(stub.DescribeCorpus, pb.DescribeCorpusRequest(name="matrix")),
        "Upsert": lambda metadata: stub.Upsert(iter([upsert]), metadata=metadata, timeout=60),
        "Delete": call(stub.Delete, pb.DeleteRequest(corpus="matrix", ids=["nope"])),
        # Create and drop a scratch corpus, so the shared one survives for the other calls.
        "CreateCorpus": call(
            stub.CreateCorpus, pb.CreateCorpusRequest(name="scratch", space="minilm", modality=pb.MODALITY_TEXT)
        ),
        "DropCorpus": call(stub.DropCorpus, pb.DropCorpusRequest(name="scratch")),
    }


def _status(call: Callable[[tuple], object], metadata: tuple) -> grpc.StatusCode:
    try:
        call(metadata)
    except grpc.RpcError as exc:  # a raw stub
        return exc.code()
    except TesseraError as exc:  # Tessera's client
        return grpc.StatusCode[exc.code]
    return grpc.StatusCode.OK


@pytest.fixture()
def keyed_server(tmp_path: Path) -> Iterator[tuple[ServerThread, Path]]:
    key_file = tmp_path / "keys.txt"
    key_file.write_text("".join(f"{key} {role}\n" for role, key in KEYS.items()))
    server = ServerThread(tmp_path / "data", api_keys=KeyStore(key_file)).start()
    with Client(server.address, api_key=KEYS["admin"]) as admin:
        admin.create_corpus("matrix", space="minilm", modality="text")
    yield server, key_file
    server.stop()


def test_every_role_against_every_rpc(keyed_server: tuple[ServerThread, Path]) -> None:
    server, _ = keyed_server
    assert set(METHOD_ROLES) == set(pb.DESCRIPTOR.services_by_name["Tessera"].methods_by_name)
    seen: dict[tuple[str, str], grpc.StatusCode] = {}
    with grpc.insecure_channel(server.address) as channel:
        calls = _calls(pb_grpc.TesseraStub(channel))
        assert set(calls) == set(METHOD_ROLES)
        for method, call in calls.items():
            assert _status(call, ()) == grpc.StatusCode.UNAUTHENTICATED, method
            assert _status(call, (("x-api-key", "not-a-key"),)) == grpc.StatusCode.UNAUTHENTICATED, method
            for role in ROLES:
                # Create before drop for roles that may do both, so DropCorpus finds the scratch corpus.
                seen[role, method] = _status(call, (("x-api-key", KEYS[role]),))
        # The "authorization: Bearer" form is accepted as well.
        assert _status(calls["ListCorpora"], (("authorization", f"Bearer {KEYS['read']}"),)) == grpc.StatusCode.OK
    for (role, method), code in seen.items():
        if allows(role, METHOD_ROLES[method]):
            assert code not in DENIED, (role, method, code)
        else:
            assert code == grpc.StatusCode.PERMISSION_DENIED, (role, method, code)
    assert seen["read", "Search"] == grpc.StatusCode.OK and seen["write", "Upsert"] == grpc.StatusCode.OK
    assert seen["admin", "CreateCorpus"] == grpc.StatusCode.OK and seen["admin", "DropCorpus"] == grpc.StatusCode.OK


def test_health_and_reflection_stay_open(keyed_server: tuple[ServerThread, Path]) -> None:
    server, _ = keyed_server
    with Client(server.address) as anonymous:
        assert anonymous.health() == "SERVING"


def test_a_key_removed_from_the_file_is_revoked_without_a_restart(keyed_server: tuple[ServerThread, Path]) -> None:
    server, key_file = keyed_server
    with Client(server.address, api_key=KEYS["write"]) as writer:
        assert writer.upsert("matrix", [{"id": "a", "text": "before"}]) == 1
        key_file.write_text(f"{KEYS['read']} read\n{KEYS['admin']} admin\n")  # the writer's line is gone
        with pytest.raises(Unauthenticated) as refused:
            writer.upsert("matrix", [{"id": "b", "text": "after"}])
        assert "revoked" in refused.value.message
        key_file.write_text("this line is not a key file\n")  # a broken edit keeps the last good keys
        with Client(server.address, api_key=KEYS["read"]) as reader:
            assert reader.list_corpora()[0]["name"] == "matrix"
        key_file.write_text(f"{KEYS['write']} write\n")  # granted again
        assert writer.upsert("matrix", [{"id": "c", "text": "again"}]) == 1


def test_tls_refuses_plaintext_and_mtls_refuses_missing_or_foreign_client_certs(tmp_path: Path) -> None:
    make_cert(tmp_path, "ca")
    make_cert(tmp_path, "server", signed_by="ca")
    make_cert(tmp_path, "client", signed_by="ca")
    make_cert(tmp_path, "other-ca")
    make_cert(tmp_path, "intruder", signed_by="other-ca")
    tls = TLSConfig(cert=tmp_path / "server.crt", key=tmp_path / "server.key", client_ca=tmp_path / "ca.crt")
    server = ServerThread(tmp_path / "data", tls=tls).start()

    def list_corpora(**options: object) -> grpc.StatusCode:
        with Client(server.address, timeout=5, **options) as client:  # type: ignore[arg-type]
            return _status(lambda md: client.list_corpora(), ())

    try:
        ca = tmp_path / "ca.crt"
        assert list_corpora(tls_ca=ca, tls_cert=tmp_path / "client.crt", tls_key=tmp_path / "client.key") == (
            grpc.StatusCode.OK
        )
        assert list_corpora() == grpc.StatusCode.UNAVAILABLE  # plaintext
        assert list_corpora(tls_ca=ca) == grpc.StatusCode.UNAVAILABLE  # TLS, no client certificate
        foreign = {"tls_cert": tmp_path / "intruder.crt", "tls_key": tmp_path / "intruder.key"}
        assert list_corpora(tls_ca=ca, **foreign) == grpc.StatusCode.UNAVAILABLE  # signed by another CA
    finally:
        server.stop()


def test_keys_never_reach_the_logs(tmp_path: Path) -> None:
    """A real `tessera serve` with structured logs, exercised with good, bad and revoked keys."""
    key_file = tmp_path / "keys.txt"
    key_file.write_text("".join(f"{key} {role}\n" for role, key in KEYS.items()))
    serve = ["serve", "--data-dir", str(tmp_path / "d"), "--port", "0", "--auth-keys", str(key_file)]
    process = subprocess.Popen(
        [sys.executable, "-m", "tessera.cli", *serve],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ},
    )
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]
        assert "tessera serving on" in line, line
        address = line.split(" on ")[1].split(" ")[0]
        with Client(address, api_key=KEYS["admin"]) as admin:
            admin.create_corpus("logged", space="minilm", modality="text")
            admin.upsert("logged", [{"id": "1", "text": "hello"}])
        for key in ("k-unknown-5c2d", KEYS["read"]):
            with Client(address, api_key=key) as client:
                _status(lambda md, c=client: c.create_corpus("x", space="minilm", modality="text"), ())
        key_file.write_text(f"{KEYS['admin']} admin\n")  # revoke read and write, which logs a reload
        time.sleep(0.05)
        with Client(address, api_key=KEYS["read"]) as revoked:
            assert _status(lambda md: revoked.list_corpora(), ()) == grpc.StatusCode.UNAUTHENTICATED
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert '"event": "serving"' in stderr and '"event": "api_keys_reloaded"' in stderr
    for key in (*KEYS.values(), "k-unknown-5c2d"):
        assert key not in stderr and key[4:] not in stderr
