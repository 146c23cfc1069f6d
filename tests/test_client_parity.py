"""One client shape: embedded (a data directory in this process) and remote (a real server on
127.0.0.1), each sync and async, give the same results and raise the same exception classes.

One scenario drives every client method. It is written once and run four ways; a sync call's
value is used as is and an async call's is awaited, so the four runs are the same calls.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tessera
from tessera.background import ServerThread

ADMIN_KEY = "parity-admin-key-0001"
DIM = 8
PASSAGES = {
    "bike": "A red bicycle leans against the wall.",
    "soup": "Tomato soup with basil and cream.",
    "ferry": "The ferry leaves the harbour at dawn.",
    "piano": "She practised the piano every evening.",
}
RNG = np.random.default_rng(7)
VECTORS = RNG.standard_normal((40, DIM)).astype(np.float32)
VECTORS /= np.linalg.norm(VECTORS, axis=1, keepdims=True)
QUERY = VECTORS[3] + 0.05 * RNG.standard_normal(DIM).astype(np.float32)


async def _value(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result


async def _collect(stream: Any) -> list[Any]:
    if hasattr(stream, "__aiter__"):
        return [x async for x in stream]
    return list(stream)


async def _error(call: Callable[[], Any]) -> tuple[str, str, str]:
    """(exception class, code, message) of a call that must fail with a TesseraError."""
    try:
        await _value(call())
    except tessera.TesseraError as exc:
        return type(exc).__name__, exc.code, exc.message
    except Exception as exc:  # a grpc error or anything else reaching the caller is the bug tested here
        raise AssertionError(f"{type(exc).__module__}.{type(exc).__name__} reached the caller: {exc}") from exc
    raise AssertionError("the call did not fail")


def _hits(result: tessera.SearchResult) -> list[tuple[str, str, float]]:
    return [(h.id, h.corpus, round(h.score, 4)) for h in result.hits]


async def scenario(client: Any, parquet_path: Path) -> dict[str, Any]:
    """Every method of the client, once; returns what a caller would observe."""
    seen: dict[str, Any] = {"health": await _value(client.health())}
    await _value(client.wait_ready())
    spaces = await _value(client.list_spaces())
    seen["spaces"] = sorted(s["name"] for s in spaces if s["available"])

    created = await _value(client.create_corpus("vec", space=f"vectors:{DIM}", modality="vector", index="Flat"))
    seen["created"] = {k: created[k] for k in ("name", "space", "modality", "dim", "count", "index")}
    await _value(client.create_corpus("txt", space="minilm", modality="text"))

    items = [
        {"id": str(i), "vector": v, "metadata": {"n": i, "parity": "even" if i % 2 == 0 else "odd"}}
        for i, v in enumerate(VECTORS[:30])
    ]
    seen["upserted"] = await _value(client.upsert("vec", items, batch_size=7))
    passages = [{"id": k, "text": v, "metadata": {"len": len(v)}} for k, v in PASSAGES.items()]
    seen["upserted_text"] = await _value(client.upsert("txt", passages))
    seen["upserted_parquet"] = await _value(client.upsert_parquet("vec", parquet_path, progress=False))

    seen["corpora"] = sorted((c["name"], c["count"]) for c in await _value(client.list_corpora()))
    described = await _value(client.describe_corpus("vec"))
    seen["described"] = {k: described[k] for k in ("name", "modality", "dim", "count", "similarity")}

    got = await _value(client.get("vec", ["1", "35", "missing"], include_vectors=True))
    seen["get_ids"] = [g["id"] for g in got]
    seen["get_meta"] = [g["metadata"] for g in got]
    seen["get_vectors_match"] = bool(np.allclose(got[0]["vector"], VECTORS[1], atol=1e-6))

    # No space named: the query is embedded in the space its corpora share.
    seen["search"] = _hits(await _value(client.search([("vector", QUERY)], corpora=["vec"], top_k=5)))
    filtered = await _value(
        client.search([("vector", QUERY)], corpora=["vec"], top_k=5, filter={"parity": {"eq": "odd"}})
    )
    seen["search_filtered"] = _hits(filtered)
    seen["search_filtered_meta"] = sorted({h.metadata["parity"] for h in filtered})
    seen["search_text"] = [h.id for h in await _value(client.search("a bike by a wall", corpora=["txt"], top_k=2))]
    with_vectors = await _value(client.search([("vector", QUERY)], corpora=["vec"], top_k=1, include_vectors=True))
    seen["search_vector_returned"] = bool(np.allclose(with_vectors.hits[0].vector, VECTORS[3], atol=1e-6))
    batch = await _value(
        client.batch_search([[("vector", VECTORS[5])], [("vector", VECTORS[9])]], corpora=["vec"], top_k=1)
    )
    seen["batch_search"] = [r.hits[0].id for r in batch]

    embedded = await _value(client.embed(list(PASSAGES.values())[:2], space="minilm"))
    seen["embed_shape"] = embedded.shape
    seen["embed_norms"] = np.round(np.linalg.norm(embedded, axis=1), 4).tolist()
    streamed = await _collect(client.embed_stream([["one sentence"], ["two", "sentences"]], space="minilm"))
    seen["embed_stream_shapes"] = [v.shape for v in streamed]
    seen["embed_stream_matches_embed"] = bool(
        np.allclose(streamed[1], await _value(client.embed(["two", "sentences"], space="minilm")), atol=1e-5)
    )

    seen["deleted_ids"] = await _value(client.delete("vec", ids=["0", "1", "missing"]))
    seen["deleted_filter"] = await _value(client.delete("vec", filter={"n": {"range": {"gte": 25}}}))
    seen["count_after_delete"] = (await _value(client.describe_corpus("vec")))["count"]

    # The same bad inputs, the same exception classes (and messages).
    seen["errors"] = {
        "unknown corpus (describe)": await _error(lambda: client.describe_corpus("nope")),
        "unknown corpus (search)": await _error(lambda: client.search([("vector", QUERY)], corpora=["nope"])),
        "unknown corpus (upsert)": await _error(lambda: client.upsert("nope", items[:1])),
        "duplicate corpus": await _error(
            lambda: client.create_corpus("vec", space=f"vectors:{DIM}", modality="vector")
        ),
        "wrong dimension (upsert)": await _error(
            lambda: client.upsert("vec", [{"id": "short", "vector": np.ones(DIM // 2, np.float32)}])
        ),
        "wrong dimension (search)": await _error(
            lambda: client.search([("vector", np.ones(DIM + 1, np.float32))], corpora=["vec"])
        ),
        "malformed filter": await _error(
            lambda: client.search([("vector", QUERY)], corpora=["vec"], filter={"n": {"gtt": 3}})
        ),
        "malformed filter (delete)": await _error(lambda: client.delete("vec", filter={"and": "not a list"})),
        "top_k over the limit": await _error(lambda: client.search([("vector", QUERY)], corpora=["vec"], top_k=5000)),
        "item without id": await _error(lambda: client.upsert("vec", [{"vector": VECTORS[0]}])),
        "unknown space": await _error(lambda: client.embed(["x"], space="no-such-space")),
    }

    await _value(client.drop_corpus("txt"))
    seen["after_drop"] = [c["name"] for c in await _value(client.list_corpora())]
    seen["errors"]["unknown corpus (drop)"] = await _error(lambda: client.drop_corpus("txt"))
    return seen


@pytest.fixture(scope="module")
def parquet_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("parquet") / "extra.parquet"
    table = pa.table(
        {
            "id": [str(i) for i in range(30, 40)],
            "vector": [v.tolist() for v in VECTORS[30:40]],
            "n": list(range(30, 40)),
        }
    )
    pq.write_table(table, path)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    running = ServerThread(tmp_path_factory.mktemp("server-data"), api_keys={ADMIN_KEY: "admin"}).start()
    yield running
    running.stop()


def _open(kind: str, mode: str, server: ServerThread, root: Path) -> Any:
    cls = tessera.Client if mode == "sync" else tessera.AsyncClient
    if kind == "embedded":
        return cls(root / f"embedded-{mode}")
    return cls(server.address, api_key=ADMIN_KEY)


def _run(kind: str, mode: str, server: ServerThread, root: Path, parquet: Path) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        client = _open(kind, mode, server, root)
        try:
            return await scenario(client, parquet)
        finally:
            await _value(client.close())

    return asyncio.run(main())


RESULTS: dict[tuple[str, str], dict[str, Any]] = {}


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("kind", ["embedded", "remote"])
def test_every_method_gives_the_documented_results(
    kind: str, mode: str, server: ServerThread, tmp_path_factory: pytest.TempPathFactory, parquet_path: Path
) -> None:
    if kind == "remote":
        for name in ("vec", "txt"):  # the server's data directory is shared by the sync and async runs
            try:
                with tessera.Client(server.address, api_key=ADMIN_KEY) as admin:
                    admin.drop_corpus(name)
            except tessera.NotFound:
                pass
    seen = _run(kind, mode, server, tmp_path_factory.mktemp(f"{kind}-{mode}"), parquet_path)
    RESULTS[(kind, mode)] = seen

    assert seen["health"] == "SERVING"
    assert {"minilm", "digits"} <= set(seen["spaces"])
    assert seen["created"] == {
        "name": "vec",
        "space": f"vectors:{DIM}@1",
        "modality": "vector",
        "dim": DIM,
        "count": 0,
        "index": "Flat",
    }
    assert (seen["upserted"], seen["upserted_text"], seen["upserted_parquet"]) == (30, 4, 10)
    assert seen["corpora"] == [("txt", 4), ("vec", 40)]
    assert seen["described"] == {"name": "vec", "modality": "vector", "dim": DIM, "count": 40, "similarity": "cosine"}
    assert seen["get_ids"] == ["1", "35"] and seen["get_meta"] == [{"n": 1, "parity": "odd"}, {"n": 35}]
    assert seen["get_vectors_match"] and seen["search_vector_returned"]
    exact = np.argsort(-(VECTORS @ QUERY) / np.linalg.norm(QUERY))[:5]
    assert [h[0] for h in seen["search"]] == [str(i) for i in exact]
    assert seen["search_filtered_meta"] == ["odd"] and len(seen["search_filtered"]) == 5
    assert seen["search_text"][0] == "bike"
    assert seen["batch_search"] == ["5", "9"]
    assert seen["embed_shape"] == (2, 384) and seen["embed_norms"] == [1.0, 1.0]
    assert seen["embed_stream_shapes"] == [(1, 384), (2, 384)] and seen["embed_stream_matches_embed"]
    assert (seen["deleted_ids"], seen["deleted_filter"], seen["count_after_delete"]) == (2, 15, 23)
    assert seen["after_drop"] == ["vec"]

    classes = {case: error[0] for case, error in seen["errors"].items()}
    assert classes == {
        "unknown corpus (describe)": "NotFound",
        "unknown corpus (search)": "NotFound",
        "unknown corpus (upsert)": "NotFound",
        "unknown corpus (drop)": "NotFound",
        "duplicate corpus": "AlreadyExists",
        "wrong dimension (upsert)": "InvalidArgument",
        "wrong dimension (search)": "InvalidArgument",
        "malformed filter": "InvalidArgument",
        "malformed filter (delete)": "InvalidArgument",
        "top_k over the limit": "ResourceExhausted",
        "item without id": "InvalidArgument",
        "unknown space": "NotFound",
    }
    assert "gtt" in seen["errors"]["malformed filter"][2]
    assert "5000" in seen["errors"]["top_k over the limit"][2]


def test_embedded_and_remote_sync_and_async_agree() -> None:
    """The four runs above observed the same things, down to the error messages."""
    if len(RESULTS) < 4:
        pytest.fail(f"the parametrised runs did not all complete: {sorted(RESULTS)}")
    reference = _comparable(RESULTS[("embedded", "sync")])
    for key, seen in RESULTS.items():
        for field, value in _comparable(seen).items():
            assert value == reference[field], f"{key} differs from embedded/sync in {field!r}"


def _comparable(seen: dict[str, Any]) -> dict[str, Any]:
    # Each test has its own $TESSERA_DATA (conftest), which the unknown-space message names.
    errors = {
        case: (cls, code, re.sub(r"/\S*tessera-data", "<data>", message))
        for case, (cls, code, message) in seen["errors"].items()
    }
    return {**seen, "errors": errors}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_bad_key_is_unauthenticated_both_ways(mode: str, server: ServerThread, tmp_path: Path) -> None:
    async def main() -> tuple[str, str]:
        remote = (tessera.Client if mode == "sync" else tessera.AsyncClient)(server.address, api_key="wrong-key")
        try:
            remote_error = await _error(lambda: remote.list_corpora())
        finally:
            await _value(remote.close())
        embedded_error = await _error(
            lambda: (tessera.Client if mode == "sync" else tessera.AsyncClient)(tmp_path / "data", api_key="wrong-key")
        )
        return remote_error[0], embedded_error[0]

    assert asyncio.run(main()) == ("Unauthenticated", "Unauthenticated")


def test_no_grpc_error_reaches_the_caller_when_no_server_answers() -> None:
    with tessera.connect("127.0.0.1:9", timeout=2) as client:  # port 9 (discard): nothing listens
        with pytest.raises(tessera.Unavailable) as refused:
            client.list_corpora()
    assert "127.0.0.1:9" in refused.value.message and "tessera serve" in refused.value.message


def test_connect_picks_embedded_or_remote_from_the_target(tmp_path: Path) -> None:
    from tessera.client import is_address

    assert is_address("127.0.0.1:50051") and is_address("localhost:50051") and is_address("grpcs://db.example:443")
    assert is_address("[::1]:50051")
    assert not is_address(str(tmp_path)) and not is_address("./tessera-data") and not is_address("data")
    (tmp_path / "host:1").mkdir()  # an existing directory is always a data directory
    assert not is_address(str(tmp_path / "host:1"))
    with tessera.connect(tmp_path / "d") as db:
        assert db.embedded and db.list_corpora() == []
        with pytest.raises(AttributeError):
            db.channel  # noqa: B018


def test_a_data_directory_open_in_another_process_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    data = tmp_path / "shared-dir"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sys, tessera; db = tessera.connect({str(data)!r}); print('open', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(tessera.FailedPrecondition) as refused:
            tessera.connect(data)
        assert f"pid {holder.pid}" in refused.value.message and "another process" in refused.value.message
    finally:
        holder.kill()
        holder.wait()
    # The kernel dropped the lock with the process, even though it was killed: the directory opens.
    with tessera.connect(data) as db:
        assert db.list_corpora() == []


@pytest.mark.parametrize("kind", ["embedded", "remote"])
def test_media_items_without_a_modality_take_the_corpus_modality(
    kind: str, server: ServerThread, tmp_path: Path
) -> None:
    from importlib.resources import files

    digits = Path(str(files("tessera") / "samples" / "digits"))
    target, options = (tmp_path / "d", {}) if kind == "embedded" else (server.address, {"api_key": ADMIN_KEY})
    with tessera.connect(target, **options) as db:
        db.create_corpus("imgs-" + kind, space="digits", modality="image")
        items = [{"id": p.stem, "path": p} for p in sorted(digits.glob("*.png"))]
        assert db.upsert("imgs-" + kind, items) == 10
        with pytest.raises(tessera.InvalidArgument, match="text content"):
            db.upsert("imgs-" + kind, [{"id": "words", "text": "a seven"}])
        hits = db.search([("image", digits / "7.png")], corpora=["imgs-" + kind], top_k=1).hits
        assert hits[0].id == "7"
        db.drop_corpus("imgs-" + kind)
