"""A composite query that only the whole tuple answers, over gRPC: a spoken digit plus a written one finds the
parity of their sum.

The packaged `digits-sum` space is trained (`benchmarks/alignment_higher_order.py --ship`) with Symile plus pairwise
InfoNCE on plain digits rows and on (clip of a, image of b, "the sum is even/odd") rows, and served with Symile's
multilinear inner product. Neither the clip nor the image alone says anything about the parity of a + b.
Real FSDD clips and scikit-learn digits, a real server on 127.0.0.1, a real client.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tessera.background import ServerThread
from tessera.client import Client
from tessera.embedder import list_spaces, load_space
from tessera.embedder.registry import PACKAGED_SPACES
from tests.conftest import FSDD

SPACE = "digits-sum"
TEXTS = {"even": "the sum is even", "odd": "the sum is odd"}
SPEAKER = "theo"


def _png(pixels: np.ndarray) -> bytes:
    """sklearn's 0..16 ink values as an 8x8 grayscale PNG, as the benchmark writes them."""
    buffer = io.BytesIO()
    Image.fromarray((pixels.reshape(8, 8) * (255 / 16)).round().astype(np.uint8), mode="L").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def images() -> dict[int, bytes]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return {d: _png(digits.data[np.flatnonzero(digits.target == d)[-1]]) for d in range(10)}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    running = ServerThread(tmp_path_factory.mktemp("sums")).start()
    with Client(running.address) as client:
        client.create_corpus("sums", space=SPACE, modality="text")
        client.upsert("sums", [{"id": name, "text": text} for name, text in TEXTS.items()])
    yield running
    running.stop()


def test_the_packaged_space_scores_composites_by_the_multilinear_product() -> None:
    space = load_space(SPACE)
    assert space.similarity.value == "mip" and space.loss == "symile"
    assert space.metadata["candidate_texts"] == list(TEXTS.values())
    assert "Attribution-ShareAlike 4.0" in (PACKAGED_SPACES[SPACE] / "ATTRIBUTION.md").read_text()
    assert any(info.name == SPACE and info.ready for info in list_spaces())


def test_audio_plus_image_finds_the_parity_of_their_sum_over_grpc(
    server: ServerThread, images: dict[int, bytes], shared_data: Path
) -> None:
    right, wrong = 0, []
    with Client(server.address) as client:
        for a in range(10):
            clip = (FSDD / f"{a}_{SPEAKER}_0.wav").read_bytes()
            for b in range(10):
                hits = client.search([("audio", clip), ("image", images[b])], corpora=["sums"], top_k=2).hits
                expected = "even" if (a + b) % 2 == 0 else "odd"
                assert [h.id for h in hits] in (["even", "odd"], ["odd", "even"])
                if hits[0].id == expected:
                    right += 1
                else:
                    wrong.append((a, b))
    # Every (spoken a, written b) of the 100: a pairwise space answers about half (the parity of a + b
    # is independent of a and of b alone).
    assert right >= 95, f"{right}/100 right; wrong for (a, b) in {wrong}"


def test_either_part_alone_does_not_tell_the_parity(server: ServerThread, images: dict[int, bytes]) -> None:
    """The same clip with an even and with an odd digit gets opposite answers: the image part decides with it."""
    clip = (FSDD / f"3_{SPEAKER}_0.wav").read_bytes()
    with Client(server.address) as client:
        with_two = client.search([("audio", clip), ("image", images[2])], corpora=["sums"], top_k=1).hits[0].id
        with_five = client.search([("audio", clip), ("image", images[5])], corpora=["sums"], top_k=1).hits[0].id
    assert (with_two, with_five) == ("odd", "even")
