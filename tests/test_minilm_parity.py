"""The minilm space must give the vectors sentence-transformers gives on the packaged model."""

from __future__ import annotations

import numpy as np
from sentence_transformers import SentenceTransformer

from benchmarks.text_corpus import real_sentences
from embedder.encoders.minilm import minilm_model_dir


def test_minilm_matches_sentence_transformers_on_1000_sentences(minilm_space) -> None:
    sentences = real_sentences(1000)
    reference_model = SentenceTransformer(str(minilm_model_dir()), device="cpu")
    reference = reference_model.encode(sentences, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)

    ours = minilm_space.embed("text", sentences, batch_size=50)

    assert ours.shape == (1000, 384) and ours.dtype == np.float32
    cosine = np.sum(ours * reference, axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1))
    assert cosine.min() >= 0.9999, f"worst sentence {sentences[int(cosine.argmin())]!r} at cosine {cosine.min()}"
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_order_of_outputs_follows_inputs_despite_length_sorting(minilm_space) -> None:
    texts = ["short", "a much longer sentence about rivers, ferries and the early winter", "mid length words"]
    together = minilm_space.embed("text", texts, batch_size=2)
    one_by_one = np.concatenate([minilm_space.embed("text", [t]) for t in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_text_accepts_utf8_bytes(minilm_space) -> None:
    as_str = minilm_space.embed("text", ["Der schnelle braune Füchse"])
    as_bytes = minilm_space.embed("text", ["Der schnelle braune Füchse".encode()])
    np.testing.assert_allclose(as_str, as_bytes, atol=1e-6)
