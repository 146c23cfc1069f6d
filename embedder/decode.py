"""Raw input -> decoded content, one function per modality.

Every decoder raises :class:`DecodeError` (and only that) for input it cannot
use, so callers handle one exception type whatever the modality.
"""

from __future__ import annotations

import functools
import io
import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DecodeError

if TYPE_CHECKING:
    import av

IMAGE_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"})
# Guards against decompression bombs: a 64-megapixel image is far beyond
# anything an encoder looks at, and refusing it keeps a worker's memory bounded.
MAX_IMAGE_PIXELS = 64_000_000
# Audio encoders read the first seconds of a clip; longer input only costs memory (float32, before
# resampling), so a clip is refused past this length.
MAX_AUDIO_SECONDS = 600
MAX_AUDIO_CHANNELS = 64


@functools.cache
def _av() -> Any:
    """PyAV, imported on first use so text-only deployments never load FFmpeg."""
    import av

    av.logging.set_level(av.logging.PANIC)  # FFmpeg's own stderr chatter; failures still raise.
    return av


@dataclass(frozen=True)
class AudioClip:
    """Mono float32 samples in [-1, 1] at `sample_rate`."""

    samples: np.ndarray
    sample_rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass(frozen=True)
class VideoClip:
    """Evenly sampled RGB frames, plus the audio track when asked for and present."""

    frames: list[Image.Image]
    duration: float
    audio: AudioClip | None = None


def decode_text(content: str | bytes) -> str:
    if isinstance(content, bytes):
        try:
            content = content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError("text", f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not isinstance(content, str):
        raise DecodeError("text", f"expected str or UTF-8 bytes, got {type(content).__name__}")
    if is_blank(content):
        raise DecodeError("text", "empty text; send at least one visible character")
    return content


# Unicode categories that print nothing: controls (NUL, ...), format characters (zero-width space
# and joiners, the BOM, bidi marks) and separators.
_INVISIBLE = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


def is_blank(text: str) -> bool:
    """True when `text` shows nothing: whitespace, NULs, zero-width characters, BOMs only.

    `all` stops at the first visible character, which in real text is the first one.
    """
    return all(unicodedata.category(c) in _INVISIBLE for c in text)


def decode_image(content: bytes | Image.Image) -> Image.Image:
    if isinstance(content, Image.Image):
        return content.convert("RGB")
    if not isinstance(content, (bytes, bytearray, memoryview)):
        raise DecodeError("image", f"expected encoded image bytes, got {type(content).__name__}")
    if len(content) == 0:
        raise DecodeError("image", "empty bytes")
    try:
        with Image.open(io.BytesIO(content)) as img:
            if img.format not in IMAGE_FORMATS:
                raise DecodeError("image", f"unsupported format {img.format}; send one of {sorted(IMAGE_FORMATS)}")
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise DecodeError("image", f"{img.width}x{img.height} exceeds the {MAX_IMAGE_PIXELS:,}-pixel limit")
            img.load()  # forces a full decode, so truncated files fail here, not in the encoder
            return img.convert("RGB")
    except DecodeError:
        raise
    except UnidentifiedImageError:
        raise DecodeError("image", "not a recognised image (corrupt bytes or unsupported format)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DecodeError("image", f"corrupt image data ({exc})") from None


def _to_mono_float32(samples: np.ndarray) -> np.ndarray:
    samples = np.asarray(samples, dtype=np.float32)
    return samples.mean(axis=1) if samples.ndim == 2 else samples


def resample(samples: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    if rate == target_rate:
        return samples
    import soxr

    return soxr.resample(samples, rate, target_rate).astype(np.float32, copy=False)


def _decode_audio_with_av(
    container: av.container.InputContainer, stream: av.audio.AudioStream, target_rate: int
) -> np.ndarray:
    # PyAV's resampler (libswresample) converts layout, format and rate in one pass.
    resampler = _av().AudioResampler(format="flt", layout="mono", rate=target_rate)
    chunks, total, most = [], 0, MAX_AUDIO_SECONDS * target_rate
    for frame in container.decode(stream):
        for out in resampler.resample(frame):
            chunks.append(out.to_ndarray().reshape(-1))
            total += chunks[-1].size
        if total > most:
            raise DecodeError("audio", f"longer than {MAX_AUDIO_SECONDS} s; send a shorter clip")
    for out in resampler.resample(None):
        chunks.append(out.to_ndarray().reshape(-1))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


def decode_audio(content: bytes, target_rate: int) -> AudioClip:
    """WAV/FLAC/OGG/MP3 through libsndfile; anything else FFmpeg reads through PyAV."""
    if not isinstance(content, (bytes, bytearray, memoryview)):
        raise DecodeError("audio", f"expected encoded audio bytes, got {type(content).__name__}")
    if len(content) == 0:
        raise DecodeError("audio", "empty bytes")
    import soundfile

    try:
        with soundfile.SoundFile(io.BytesIO(content)) as sound:
            # The header's claims are checked before anything is allocated: libsndfile reads what is
            # there, but a compressed file can honestly hold hours in a few megabytes.
            if sound.samplerate < 1 or sound.channels < 1 or sound.channels > MAX_AUDIO_CHANNELS:
                raise DecodeError("audio", f"header claims {sound.channels} channels at {sound.samplerate} Hz")
            if sound.frames > MAX_AUDIO_SECONDS * sound.samplerate:
                seconds = sound.frames / sound.samplerate
                raise DecodeError("audio", f"{seconds:,.0f} s long; the limit is {MAX_AUDIO_SECONDS} s")
            samples, rate = sound.read(dtype="float32", always_2d=False), sound.samplerate
        samples = resample(_to_mono_float32(samples), rate, target_rate)
    except DecodeError:
        raise
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError):
        av = _av()  # formats libsndfile does not read (AAC, M4A, WebM audio, ...) go through FFmpeg
        try:
            with av.open(io.BytesIO(content)) as container:
                if not container.streams.audio:
                    raise DecodeError("audio", "no audio stream in the data")
                samples = _decode_audio_with_av(container, container.streams.audio[0], target_rate)
        except DecodeError:
            raise
        except (av.FFmpegError, ValueError, IndexError) as exc:
            raise DecodeError("audio", f"not decodable as WAV, FLAC, MP3 or other audio ({exc})") from None
    if samples.size == 0:
        raise DecodeError("audio", "no audio samples decoded (empty or truncated file)")
    if not np.isfinite(samples).all():
        raise DecodeError("audio", "decoded samples contain NaN or Inf")
    return AudioClip(samples, target_rate)


def _frame_indices(total: int, wanted: int) -> list[int]:
    """`wanted` indices spread evenly over `total` frames, each at the centre of its segment."""
    wanted = min(wanted, total)
    return sorted({min(total - 1, int((i + 0.5) * total / wanted)) for i in range(wanted)})


def decode_video(content: bytes, num_frames: int, audio_rate: int | None = None) -> VideoClip:
    """Sample `num_frames` frames evenly; decode the audio track too when `audio_rate` is set."""
    if not isinstance(content, (bytes, bytearray, memoryview)):
        raise DecodeError("video", f"expected encoded video bytes, got {type(content).__name__}")
    if len(content) == 0:
        raise DecodeError("video", "empty bytes")
    av = _av()
    try:
        with av.open(io.BytesIO(content)) as container:
            if not container.streams.video:
                raise DecodeError("video", "no video stream in the data")
            stream = container.streams.video[0]
            # Slice threads only. With frame threads ("AUTO"), stopping early leaves frames in flight,
            # and freeing the codec then waits on threads that may need the GIL (PyAV's log
            # callback) while the freeing thread holds it: a deadlock, seen in a server worker thread.
            stream.thread_type = "SLICE"
            total = stream.frames
            if total <= 0:  # containers without a frame count (WebM, fragmented MP4): count first
                total = sum(1 for _ in container.decode(stream))
                container.seek(0)
            keep = set(_frame_indices(total, num_frames)) if total > 0 else set()
            frames = []
            for i, frame in enumerate(container.decode(stream)):
                if i in keep:
                    frames.append(frame.to_image())
                    if len(frames) == len(keep):
                        break
            if frames and len(frames) < len(keep):
                raise DecodeError("video", f"truncated video: the container declares {total} frames, fewer decode")
            duration = float(container.duration / av.time_base) if container.duration else math.nan
        audio = None
        if audio_rate is not None:
            with av.open(io.BytesIO(content)) as container:
                if container.streams.audio:
                    samples = _decode_audio_with_av(container, container.streams.audio[0], audio_rate)
                    audio = AudioClip(samples, audio_rate) if samples.size else None
    except DecodeError:
        raise
    except (av.FFmpegError, ValueError, IndexError, OSError) as exc:
        raise DecodeError("video", f"corrupt or truncated video ({exc})") from None
    if not frames:
        raise DecodeError("video", "no decodable video frames (corrupt or truncated file)")
    return VideoClip(frames, duration, audio)


def decode_vector(content: Sequence[float] | np.ndarray | bytes, dim: int) -> np.ndarray:
    """float32 values as given; bytes are read as packed little-endian float32."""
    try:
        if isinstance(content, (bytes, bytearray, memoryview)):
            if len(content) % 4:
                raise DecodeError("vector", f"{len(content)} bytes is not a whole number of float32 values")
            vec = np.frombuffer(content, dtype="<f4")
        else:
            vec = np.asarray(content, dtype=np.float32)
    except (TypeError, ValueError, OverflowError) as exc:
        raise DecodeError("vector", f"not a sequence of float32 numbers ({exc})") from None
    if vec.ndim != 1:
        raise DecodeError("vector", f"expected a flat vector, got shape {vec.shape}")
    if vec.shape[0] != dim:
        raise DecodeError("vector", f"wrong dimension {vec.shape[0]}; this space expects {dim}")
    if not np.isfinite(vec).all():
        raise DecodeError("vector", "contains NaN or Inf")
    if not np.any(vec):
        raise DecodeError("vector", "all zeros; a zero vector has no direction to normalise")
    return vec
