"""Another gRPC stack (Node.js grpc-js + proto-loader) loads the .proto files and gets the Python client's answers."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tessera.background import ServerThread
from tessera.client import Client

NODE_DIR = Path(__file__).parent / "node"
SPACE = "minilm"


def _node_client() -> str:
    """The node binary, with the test's locked packages installed (once) from tests/node/package-lock.json."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("the interop test needs Node.js and npm on PATH (apt install nodejs npm)")
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        done = subprocess.run(
            [npm, "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"npm ci --prefix tests/node failed:\n{done.stderr[-2000:]}"
    return node


def test_node_client_matches_python_client(tmp_path: Path) -> None:
    node = _node_client()
    server = ServerThread(tmp_path).start()
    try:
        with Client(server.address) as client:
            client.create_corpus("docs", space=SPACE, modality="text")
            client.upsert(
                "docs",
                [
                    {"id": "bike", "text": "A red bicycle by the wall."},
                    {"id": "soup", "text": "Tomato soup with basil."},
                    {"id": "ferry", "text": "The ferry leaves at dawn."},
                ],
            )
            py_vectors = client.embed(["a red bicycle", "tomato soup"], space=SPACE)
            py_hits = client.search("a bike", space=SPACE, top_k=3, corpora=["docs"]).hits
        out = subprocess.run(
            [node, str(NODE_DIR / "interop.js"), server.address, SPACE, "docs"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        node_result = json.loads(out.stdout)
    finally:
        server.stop()
    assert node_result["health"] == "SERVING"
    assert node_result["space_id"].startswith("minilm@")
    np.testing.assert_allclose(np.asarray(node_result["vectors"], dtype=np.float32), py_vectors, atol=1e-6)
    assert [h["id"] for h in node_result["hits"]] == [h.id for h in py_hits]
    np.testing.assert_allclose([h["raw_score"] for h in node_result["hits"]], [h.raw_score for h in py_hits], atol=1e-6)
    assert node_result["not_found"] == "NOT_FOUND"
