"""A killed index build never makes a corpus unusable: SIGKILL during the build, three times running.

Each round writes enough vectors into an HNSW corpus on a real `tessera serve` to start a
background build over all of them (one large message, so the build is long), kills the
server as soon as its log says the build started, and restarts it on the same data
directory. After every restart the corpus must open, hold every acknowledged item with
its exact vector, answer exact self-searches, report `build_failed` with the reason, and
not start the same build again. A round writes as much again as the corpus holds, which is
what lets the next automatic attempt start.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from benchmarks.reliability import ServerProcess
from tessera.client import Client

DIM = 32
FIRST = 8_000
LIMITS = ("--max-items", "200000", "--max-message-mb", "64")


def _unit_rows(n: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _wait_for(server: ServerProcess, event: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(e.get("event") == event for e in list(server.events)):
            return
        if server.process.poll() is not None:
            raise AssertionError(f"the server exited ({server.process.returncode}) before {event}")
        time.sleep(0.01)
    raise AssertionError(f"no {event} in the server log within {timeout} s")


def _check_after_restart(server: ServerProcess, vectors: np.ndarray, rng: np.random.Generator) -> dict:
    with Client(server.address, timeout=60) as client:
        info = client.describe_corpus("k")
        assert info["count"] == len(vectors)
        assert info["searching"] == "exact" and info["index_state"] == "build_failed", info
        assert "stopped during the build of HNSW32" in info["index_note"]
        sample = rng.choice(len(vectors), 25, replace=False)
        got = {item["id"]: item for item in client.get("k", [f"v{i}" for i in sample], include_vectors=True)}
        for i in sample:
            np.testing.assert_allclose(got[f"v{i}"]["vector"], vectors[i], atol=1e-6)  # stored re-normalised
            hit = client.search([("vector", vectors[i])], corpora=["k"], top_k=1).hits[0]
            assert hit.id == f"v{i}" and abs(hit.raw_score - 1.0) < 1e-5
    time.sleep(1.0)  # room for a build the restart might start, which it must not
    assert not any(e.get("event") == "index_build_started" for e in list(server.events))
    return info


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    """Every server a test starts; any still running at the end (a failed assertion) is killed."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        if server.process.poll() is None:
            server.kill()


def test_sigkill_during_index_build_three_times_running(tmp_path: Path, servers: list[ServerProcess]) -> None:
    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    vectors = np.zeros((0, DIM), dtype=np.float32)
    server = ServerProcess(data, *LIMITS)
    servers.append(server)
    with Client(server.address, timeout=60) as client:
        client.create_corpus("k", space=f"vectors:{DIM}", modality="vector", index="HNSW32", ef_construction=400)
    for round_ in range(3):
        more = _unit_rows(max(FIRST, len(vectors)), seed=round_)
        start = len(vectors)
        with Client(server.address, timeout=120) as client:
            items = [{"id": f"v{start + i}", "vector": v} for i, v in enumerate(more)]
            client.upsert("k", items, modality="vector", batch_size=len(items))
        vectors = np.concatenate([vectors, more])
        _wait_for(server, "index_build_started")
        server.kill()
        assert not any(e.get("event") == "index_built" for e in server.events), "the build finished before the kill"

        server = ServerProcess(data, *LIMITS)
        servers.append(server)
        info = _check_after_restart(server, vectors, rng)
        assert f"({len(vectors)} vectors)" in info["index_note"]
    server.stop()

    # What the note offers: `tessera corpus rebuild` with the server stopped builds it now, for good.
    done = subprocess.run(
        [sys.executable, "-m", "tessera.cli", "corpus", "rebuild", "k", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["state"] == "built"
    server = ServerProcess(data, *LIMITS)
    servers.append(server)
    with Client(server.address, timeout=60) as client:
        info = client.describe_corpus("k")
        assert (info["searching"], info["index_state"], info["count"]) == ("HNSW32", "built", len(vectors))
        hit = client.search([("vector", vectors[7])], corpora=["k"], top_k=1).hits[0]
        assert hit.id == "v7"
    assert not any(e.get("event") == "index_build_started" for e in list(server.events))  # loaded, not rebuilt
    server.stop()
