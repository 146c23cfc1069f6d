"""Real media and FSDD clips decode and embed through the trainable encoders."""

from __future__ import annotations

import numpy as np
import pytest

from tessera.embedder import DecodeError
from tests.conftest import FSDD, MEDIA


def _unit_rows(vectors: np.ndarray, dim: int) -> None:
    assert vectors.dtype == np.float32 and vectors.shape[1] == dim
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_every_media_file_embeds(bind_space, shared_data) -> None:
    videos = sorted(MEDIA.glob("*.mp4"))
    audios = sorted(MEDIA.glob("*.mp3"))
    assert len(videos) == 4 and len(audios) == 4
    video_vectors = bind_space.embed("video", [p.read_bytes() for p in videos], batch_size=2)
    audio_vectors = bind_space.embed("audio", [p.read_bytes() for p in audios], batch_size=3)
    _unit_rows(video_vectors, bind_space.dim)
    _unit_rows(audio_vectors, bind_space.dim)
    # Different clips give different vectors (the encoders look at the content).
    assert np.ptp(video_vectors @ video_vectors.T) > 1e-4
    assert np.ptp(audio_vectors @ audio_vectors.T) > 1e-4


def test_fifty_fsdd_clips_embed_in_batches(bind_space, shared_data) -> None:
    clips = sorted(FSDD.glob("*.wav"))[::50][:50]
    assert len(clips) == 50
    raw = [p.read_bytes() for p in clips]
    batched = bind_space.embed("audio", raw, batch_size=16)
    _unit_rows(batched, bind_space.dim)
    one = bind_space.embed("audio", raw[:1])
    np.testing.assert_allclose(batched[:1], one, atol=1e-5)  # batching does not change a vector
    assert len({row.tobytes() for row in batched}) == 50


def test_video_audio_track_mixes_in_when_weighted(shared_data) -> None:
    from tessera.embedder import build_space
    from tessera.embedder.registry import minilm_bind_init_spec

    spec = minilm_bind_init_spec()
    spec["encoders"]["video"]["audio_weight"] = 0.3
    space = build_space(spec)
    video = (MEDIA / "video1.mp4").read_bytes()
    with_audio = space.embed("video", [video])
    space.encoder("video").audio_weight = 0.0
    frames_only = space.embed("video", [video])
    _unit_rows(with_audio, space.dim)
    _unit_rows(frames_only, space.dim)
    assert float(with_audio[0] @ frames_only[0]) < 0.9999


def test_bad_item_in_batch_is_named(bind_space, shared_data) -> None:
    raw = [p.read_bytes() for p in sorted(FSDD.glob("*.wav"))[:3]]
    raw.insert(2, b"not audio at all")
    with pytest.raises(DecodeError) as info:
        bind_space.embed("audio", raw, ids=["a", "b", "broken-clip", "d"])
    assert info.value.item == "broken-clip"
    assert "broken-clip" in str(info.value)
    with pytest.raises(DecodeError) as by_position:
        bind_space.embed("audio", raw)
    assert by_position.value.item == 2


def test_vector_modality_normalises_and_checks_dim(bind_space) -> None:
    vectors = bind_space.embed("vector", [np.full(384, 2.0, dtype=np.float32), np.arange(1, 385, dtype=np.float32)])
    _unit_rows(vectors, 384)
    with pytest.raises(DecodeError, match="wrong dimension 10; this space expects 384"):
        bind_space.embed("vector", [np.ones(10, dtype=np.float32)])


def test_unknown_modality_for_space_is_clear(minilm_space) -> None:
    with pytest.raises(ValueError, match="has no image encoder; it embeds: text, vector"):
        minilm_space.embed("image", [b"x"])
    with pytest.raises(ValueError, match="unknown modality 'smell'"):
        minilm_space.embed("smell", ["x"])
