"""Decoders on real files, every supported format, and the one clear error for bad input."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np
import pytest
import soundfile
from PIL import Image

from tessera.embedder import DecodeError
from tessera.embedder.decode import decode_audio, decode_image, decode_text, decode_vector, decode_video
from tests.conftest import FSDD, MEDIA


def _image_bytes(fmt: str) -> bytes:
    # Noise compresses badly, so even PNG and WebP files are long enough to truncate.
    pixels = np.random.default_rng(0).integers(0, 256, size=(32, 48, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP"])
def test_image_formats_decode_to_rgb(fmt: str) -> None:
    image = decode_image(_image_bytes(fmt))
    assert image.mode == "RGB" and image.size == (48, 32)


def test_wav_decodes_and_resamples_to_encoder_rate(shared_data) -> None:
    raw = (FSDD / "0_george_0.wav").read_bytes()
    native, rate = soundfile.read(io.BytesIO(raw))
    assert rate == 8000
    clip = decode_audio(raw, target_rate=16000)
    assert clip.sample_rate == 16000 and clip.samples.dtype == np.float32
    assert abs(len(clip.samples) - 2 * len(native)) <= 2
    # Resampling keeps the signal: the 16 kHz clip's even samples track the 8 kHz original.
    assert np.corrcoef(clip.samples[::2][: len(native)], native[: len(clip.samples[::2])])[0, 1] > 0.95


def test_flac_decodes_like_the_wav_it_came_from(shared_data) -> None:
    samples, rate = soundfile.read(FSDD / "3_theo_7.wav", dtype="float32")
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="FLAC")
    from_flac = decode_audio(buffer.getvalue(), target_rate=rate)
    np.testing.assert_allclose(from_flac.samples, samples, atol=1e-4)


@pytest.mark.parametrize("name", ["audio1.mp3", "audio2.mp3", "audio3.mp3", "audio4.mp3"])
def test_mp3_decodes_to_mono_at_target_rate(shared_data, name: str) -> None:
    clip = decode_audio((MEDIA / name).read_bytes(), target_rate=16000)
    assert clip.sample_rate == 16000 and clip.samples.ndim == 1
    assert 1.0 < clip.seconds < 120.0
    assert np.abs(clip.samples).max() > 0.01  # real sound, not silence


@pytest.mark.parametrize("name", ["video1.mp4", "video2.mp4", "video3.mp4", "video4.mp4"])
def test_mp4_samples_frames_evenly_with_optional_audio(shared_data, name: str) -> None:
    raw = (MEDIA / name).read_bytes()
    clip = decode_video(raw, num_frames=6, audio_rate=16000)
    assert len(clip.frames) == 6
    assert all(f.size == (360, 640) for f in clip.frames)
    assert clip.audio is not None and clip.audio.sample_rate == 16000
    assert abs(clip.audio.seconds - clip.duration) < 0.5
    assert decode_video(raw, num_frames=3).audio is None  # audio only when asked for


def _webm_bytes(frames: int = 12) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="webm") as out:
        stream = out.add_stream("libvpx", rate=Fraction(12, 1))
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            pixels = np.full((48, 64, 3), i * 20, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def test_webm_without_frame_count_is_sampled_evenly() -> None:
    clip = decode_video(_webm_bytes(12), num_frames=4)
    assert len(clip.frames) == 4
    # Frames get brighter over time; even sampling picks them in order across the clip.
    brightness = [np.asarray(f).mean() for f in clip.frames]
    assert brightness == sorted(brightness) and brightness[-1] - brightness[0] > 100


def test_vector_passes_through_and_checks_dimension() -> None:
    vec = decode_vector([0.5] * 8, dim=8)
    assert vec.dtype == np.float32 and vec.shape == (8,)
    packed = decode_vector(np.arange(1, 9, dtype="<f4").tobytes(), dim=8)
    np.testing.assert_array_equal(packed, np.arange(1, 9, dtype=np.float32))


BAD_INPUTS = [
    ("text", lambda: decode_text(""), "empty text"),
    ("text", lambda: decode_text("   \n"), "empty text"),
    ("text", lambda: decode_text(b"\xff\xfe\xfa"), "not valid UTF-8"),
    ("image", lambda: decode_image(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20), "image"),
    ("image", lambda: decode_image(_image_bytes("PNG")[:200]), "corrupt"),
    ("image", lambda: decode_image(b""), "empty bytes"),
    ("audio", lambda: decode_audio(b"RIFF\x00\x00\x00\x00WAVEfmt garbage", 16000), "not decodable"),
    ("audio", lambda: decode_audio(np.random.default_rng(0).bytes(4096), 16000), "audio"),
    ("video", lambda: decode_video(np.random.default_rng(1).bytes(4096), 4), "video"),
    ("vector", lambda: decode_vector([1.0, 2.0, 3.0], dim=4), "wrong dimension 3"),
    ("vector", lambda: decode_vector([1.0, float("nan"), 0.0, 0.0], dim=4), "NaN"),
    ("vector", lambda: decode_vector([0.0] * 4, dim=4), "all zeros"),
    ("vector", lambda: decode_vector(b"\x00\x01\x02", dim=4), "whole number"),
]


@pytest.mark.parametrize(("modality", "call", "reason"), BAD_INPUTS)
def test_bad_input_raises_decode_error_with_reason(modality: str, call, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        call()
    assert info.value.modality == modality
    assert reason in str(info.value)


def test_truncated_mp4_is_a_decode_error(shared_data) -> None:
    raw = (MEDIA / "video1.mp4").read_bytes()
    with pytest.raises(DecodeError, match="video"):
        decode_video(raw[: len(raw) // 3], num_frames=4)


def test_truncated_mp4_header_only_is_a_decode_error(shared_data) -> None:
    raw = (MEDIA / "video1.mp4").read_bytes()
    with pytest.raises(DecodeError, match="video"):
        decode_video(raw[:64], num_frames=4)
