"""A log-mel spectrogram CNN audio encoder.

Features are computed on the encoder's device with torch.stft and a mel
filterbank, so a batch of waveforms goes to the GPU once and never comes back
as spectrograms.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..decode import AudioClip, decode_audio
from ..modality import Modality
from .base import TowerEncoder, l2_normalize, register
from .heads import ProjectionHead
from .image_cnn import SmallCNN


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None
) -> np.ndarray:
    """Triangular filters on the HTK mel scale, shape (n_mels, n_fft // 2 + 1)."""
    f_max = f_max or sample_rate / 2
    hz_to_mel = lambda f: 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)  # noqa: E731
    mel_to_hz = lambda m: 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)  # noqa: E731
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / np.maximum(centre - lower, 1e-9)
    falling = (upper - bins) / np.maximum(upper - centre, 1e-9)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


class LogMel(nn.Module):
    def __init__(self, sample_rate: int, n_fft: int, hop: int, n_mels: int) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("mel", torch.from_numpy(mel_filterbank(sample_rate, n_fft, n_mels)), persistent=False)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(waves, self.n_fft, self.hop, window=self.window, return_complex=True).abs().pow(2)
        logmel = torch.log(self.mel @ spec + 1e-6)  # (batch, n_mels, frames)
        # Per-clip standardisation removes loudness and channel differences between recordings.
        mean = logmel.mean(dim=(1, 2), keepdim=True)
        std = logmel.std(dim=(1, 2), keepdim=True)
        return (logmel - mean) / (std + 1e-5)


class AudioTower(nn.Module):
    def __init__(
        self, sample_rate: int, n_fft: int, hop: int, n_mels: int, widths: list[int], head: ProjectionHead
    ) -> None:
        super().__init__()
        self.features = LogMel(sample_rate, n_fft, hop, n_mels)
        self.backbone = SmallCNN(1, widths)
        self.head = head

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        return l2_normalize(self.head(self.backbone(self.features(waves).unsqueeze(1))))


@register("logmel_cnn_audio")
class LogMelCNNAudioEncoder(TowerEncoder):
    config_keys = ("sample_rate", "clip_seconds", "n_fft", "hop", "n_mels", "widths", "head_hidden")
    modality = Modality.AUDIO

    def __init__(
        self,
        dim: int,
        sample_rate: int = 16000,
        clip_seconds: float = 2.0,
        n_fft: int = 400,
        hop: int = 160,
        n_mels: int = 64,
        widths: list[int] | None = None,
        head_hidden: int = 0,
        device: torch.device | None = None,
    ) -> None:
        self.dim, self.sample_rate, self.clip_seconds = dim, sample_rate, clip_seconds
        self.n_fft, self.hop, self.n_mels = n_fft, hop, n_mels
        self.widths, self.head_hidden = list(widths or [32, 64, 128]), head_hidden
        head = ProjectionHead(self.widths[-1], dim, head_hidden)
        self.tower = AudioTower(sample_rate, n_fft, hop, n_mels, self.widths, head).eval()
        self.device = device or torch.device("cpu")
        self.tower.to(self.device)

    @property
    def clip_samples(self) -> int:
        return round(self.clip_seconds * self.sample_rate)

    def preprocess(self, clip: AudioClip) -> torch.Tensor:
        """Fixed-length window: the centre of longer clips, zero-padded shorter ones (centred)."""
        samples = clip.samples
        if clip.sample_rate != self.sample_rate:
            raise ValueError(f"clip is at {clip.sample_rate} Hz; this encoder wants {self.sample_rate} Hz")
        n = self.clip_samples
        if len(samples) >= n:
            start = (len(samples) - n) // 2
            samples = samples[start : start + n]
        else:
            pad = n - len(samples)
            samples = np.pad(samples, (pad // 2, pad - pad // 2))
        return torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))

    def prepare(self, content: Any) -> torch.Tensor:
        return self.preprocess(decode_audio(content, self.sample_rate))
