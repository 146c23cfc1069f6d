"""OpenCLIP spaces: random init offline, a local checkpoint path, and clear errors for missing weights."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from tessera.embedder import load_space
from tessera.embedder.encoders.openclip import load_openclip

ARCH = "ViT-B-32"


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def random_clip():
    return load_space(f"openclip:{ARCH}/random")


def test_random_init_space_embeds_image_and_text(random_clip) -> None:
    assert random_clip.dim == 512 and {m.value for m in random_clip.modalities} == {"text", "image", "vector"}
    images = random_clip.embed("image", [_png(0), _png(1)])
    texts = random_clip.embed("text", ["a photo of a cat", "a diagram"])
    for vectors in (images, texts):
        assert vectors.shape == (2, 512)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_local_checkpoint_path_gives_same_vectors(random_clip, tmp_path) -> None:
    model, _, _ = load_openclip(ARCH, "random", "cpu")
    checkpoint = tmp_path / "ckpt.pt"
    torch.save(model.state_dict(), checkpoint)
    from_file = load_space(f"openclip:{ARCH}/{checkpoint}")
    image = [_png(2)]
    np.testing.assert_allclose(from_file.embed("image", image), random_clip.embed("image", image), atol=1e-6)


def test_bad_openclip_names_say_what_to_write() -> None:
    with pytest.raises(ValueError, match="openclip:<arch>/<pretrained>"):
        load_space("openclip:ViT-B-32")
    with pytest.raises(ValueError, match="unknown OpenCLIP architecture"):
        load_space("openclip:NoSuchNet/random")
