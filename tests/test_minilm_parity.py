"""The minilm space must give the vectors sentence-transformers gives on the packaged model."""

from __future__ import annotations

import numpy as np
from sentence_transformers import SentenceTransformer

from benchmarks.text_corpus import real_sentences
from tessera.embedder.encoders.minilm import minilm_model_dir


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


def test_merged_micro_batch_is_cut_by_padded_tokens_and_keeps_caller_order(minilm_space) -> None:
    sentences = real_sentences(60)[7:47]  # mixed lengths, 20 to 500+ characters
    encoder = minilm_space.encoder("text")
    tokens = encoder.lengths(sentences)  # as the model sees them, truncated at its 256
    assert max(tokens) > 10 * min(tokens) and max(tokens) <= encoder.model.max_seq_length
    prepared = [minilm_space.prepare("text", s) for s in sentences]
    calls: list[int] = []
    original = encoder.encode
    encoder.encode = lambda batch: (calls.append(max(encoder.lengths(batch)) * len(batch)), original(batch))[1]
    try:
        merged = minilm_space.embed_merged("text", prepared, padded_budget=256)
    finally:
        encoder.encode = original
    alone = np.concatenate([minilm_space.embed_prepared("text", [p]) for p in prepared])
    assert np.sum(merged * alone, axis=1).min() >= 0.9999  # same vectors, in the callers' order
    assert len(calls) > 1  # cut into several model calls ...
    single_item_overruns = [c for c in calls if c > 256]
    assert all(c <= max(tokens) for c in single_item_overruns)  # ... each within budget unless one item alone


def test_embed_cuts_model_batches_by_padded_tokens_and_its_cap(minilm_space) -> None:
    sentences = real_sentences(200)[7:]
    encoder = minilm_space.encoder("text")
    sizes: list[tuple[int, int]] = []
    original = encoder.encode
    encoder.encode = lambda batch: (sizes.append((len(batch), max(encoder.lengths(batch)))), original(batch))[1]
    try:
        vectors = minilm_space.embed("text", sentences, batch_size=64)
    finally:
        encoder.encode = original
    assert sum(n for n, _ in sizes) == len(sentences) and max(n for n, _ in sizes) <= 64
    assert all(n == 1 or n * longest <= encoder.padded_budget for n, longest in sizes)
    assert sizes[0][0] < sizes[-1][0]  # long texts first in small batches, short ones in large
    alone = np.concatenate([minilm_space.embed("text", [s]) for s in sentences[:20]])
    assert np.sum(vectors[:20] * alone, axis=1).min() >= 0.9999  # rows in input order
