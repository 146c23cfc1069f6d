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


def dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Orthonormal DCT-II rows, shape (n_out, n_in), as librosa and torchaudio compute MFCCs."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    basis = np.cos(np.pi / n_in * (n + 0.5) * k) * np.sqrt(2.0 / n_in)
    basis[0] /= np.sqrt(2.0)
    return basis.astype(np.float32)


class LogMel(nn.Module):
    def __init__(
        self,
        sample_rate: int,
        n_fft: int,
        hop: int,
        n_mels: int,
        per_band: bool = False,
        top_db: float = 0.0,
        n_mfcc: int = 0,
    ) -> None:
        super().__init__()
        self.n_fft, self.hop, self.per_band, self.top_db = n_fft, hop, per_band, top_db
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("mel", torch.from_numpy(mel_filterbank(sample_rate, n_fft, n_mels)), persistent=False)
        # MFCCs: the DCT's first coefficients keep the spectral envelope (what is said) and drop the
        # fine structure (the voice's pitch harmonics).
        self.register_buffer("dct", torch.from_numpy(dct_matrix(n_mfcc, n_mels)) if n_mfcc else None, persistent=False)

    def forward(self, waves: torch.Tensor, band_warp: float = 0.0) -> torch.Tensor:
        spec = torch.stft(waves, self.n_fft, self.hop, window=self.window, return_complex=True).abs().pow(2)
        logmel = torch.log(self.mel @ spec + 1e-6)  # (batch, n_mels, frames)
        if self.top_db > 0:
            # Floor everything more than top_db below the clip's peak (librosa's power_to_db does the
            # same): zero padding and background hiss then look alike, so statistics no longer
            # depend on how much padding a short clip got.
            peak = logmel.amax(dim=(1, 2), keepdim=True)
            logmel = torch.maximum(logmel, peak - self.top_db * np.log(10) / 10)
        if band_warp > 0:  # on the mel bands, before any DCT: a warp of the frequency axis
            logmel = warp_bands(logmel, band_warp)
        if self.dct is not None:
            logmel = self.dct @ logmel
        # Per-clip standardisation removes loudness and channel differences between recordings;
        # per band (cepstral mean and variance normalisation) it also removes much of a
        # voice's and a microphone's spectral colour, which helps unseen speakers.
        dims = (2,) if self.per_band else (1, 2)
        mean = logmel.mean(dim=dims, keepdim=True)
        std = logmel.std(dim=dims, keepdim=True)
        return (logmel - mean) / (std + 1e-5)


def spec_augment(mel: torch.Tensor, freq_mask: int, time_mask: int) -> torch.Tensor:
    """SpecAugment (Park et al., 2019): zero one random band range and one random frame range per clip."""
    n, bands, frames = mel.shape
    out = mel.clone()
    for size, axis, length in ((freq_mask, 1, bands), (time_mask, 2, frames)):
        if size <= 0:
            continue
        widths = torch.randint(0, size + 1, (n,), device=mel.device)
        starts = (torch.rand(n, device=mel.device) * (length - widths + 1)).long()
        positions = torch.arange(length, device=mel.device)[None]
        hidden = (positions >= starts[:, None]) & (positions < (starts + widths)[:, None])  # (n, length)
        out = out.masked_fill(hidden[:, :, None] if axis == 1 else hidden[:, None, :], 0.0)
    return out


def _resample(mel: torch.Tensor, positions: torch.Tensor, axis: int) -> torch.Tensor:
    """Linear interpolation of `mel` (n, bands, frames) at fractional `positions` (n, length) along
    `axis` (1: bands, 2: frames); positions outside the axis take the clip's floor (its minimum)."""
    n, bands, frames = mel.shape
    length = mel.shape[axis]
    inside = (positions >= 0) & (positions <= length - 1)
    positions = positions.clamp(0, length - 1)
    low = positions.floor().long()
    high = (low + 1).clamp(max=length - 1)
    weight = positions - low
    if axis == 1:
        take = lambda index: mel.gather(1, index[:, :, None].expand(n, bands, frames))  # noqa: E731
        weight, inside = weight[:, :, None], inside[:, :, None]
    else:
        take = lambda index: mel.gather(2, index[:, None, :].expand(n, bands, frames))  # noqa: E731
        weight, inside = weight[:, None, :], inside[:, None, :]
    out = take(low) * (1 - weight) + take(high) * weight
    floor = mel.amin(dim=(1, 2), keepdim=True)
    return torch.where(inside, out, floor)


def _factors(n: int, amount: float, device: torch.device) -> torch.Tensor:
    return 1 + (2 * torch.rand(n, device=device) - 1) * amount


def warp_bands(mel: torch.Tensor, amount: float) -> torch.Tensor:
    """Stretch each clip's band axis by a random factor in [1 - amount, 1 + amount], a cheap stand-in for
    vocal tract length perturbation (Jaitly & Hinton, 2013): the same word from a longer or shorter
    vocal tract, i.e. a voice the training speakers do not have."""
    n, bands, _ = mel.shape
    positions = torch.arange(bands, device=mel.device)[None] * _factors(n, amount, mel.device)[:, None]
    return _resample(mel, positions.clamp(max=bands - 1), axis=1)


def stretch_time(mel: torch.Tensor, amount: float) -> torch.Tensor:
    """Play each clip faster or slower by up to `amount` around the window's centre, without changing
    its pitch: speakers differ far more in tempo (FSDD medians 0.36 s to 0.54 s per word) than in
    anything speed perturbation of +/-10% covers."""
    n, _, frames = mel.shape
    centre = (frames - 1) / 2
    offsets = torch.arange(frames, device=mel.device)[None] - centre
    positions = centre + offsets * _factors(n, amount, mel.device)[:, None]
    return _resample(mel, positions, axis=2)


class AudioTower(nn.Module):
    """Log-mel (or MFCC) features -> CNN -> projection head; augmentations run only in training mode."""

    def __init__(
        self, features: LogMel, backbone: SmallCNN, head: ProjectionHead, augment: dict[str, float] | None = None
    ) -> None:
        super().__init__()
        self.features, self.backbone, self.head = features, backbone, head
        self.augment = dict(augment or {})

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        mel = self.features(waves, band_warp=self.augment.get("band_warp", 0.0) if self.training else 0.0)
        if self.training:
            if self.augment.get("time_stretch", 0) > 0:
                mel = stretch_time(mel, self.augment["time_stretch"])
            if self.augment.get("freq_mask", 0) or self.augment.get("time_mask", 0):
                mel = spec_augment(mel, int(self.augment.get("freq_mask", 0)), int(self.augment.get("time_mask", 0)))
        return l2_normalize(self.head(self.backbone(mel.unsqueeze(1))))


def adaptive_pool_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) weights that average the cells adaptive_avg_pool gives each output, as torch computes them."""
    weights = torch.zeros(n_out, n_in)
    for i in range(n_out):
        start, stop = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        weights[i, start:stop] = 1.0 / (stop - start)
    return weights


class _AudioForward(nn.Module):
    """The tower after its features (log-mel) in inference: CNN -> head -> unit norm; what ONNX Runtime runs.

    The CNN's input size is fixed (a fixed-length window), so its grid pooling is written as two
    constant averaging matrices: the ONNX exporter refuses adaptive pooling to sizes that do not
    divide the input's.
    """

    def __init__(self, tower: AudioTower, mel_shape: tuple[int, int]) -> None:
        super().__init__()
        self.backbone, self.head = tower.backbone, tower.head
        self.pooled = self.backbone.grid is not None
        if self.pooled:
            with torch.no_grad():
                _, _, height, width = self.backbone.features(torch.zeros(1, 1, *mel_shape)).shape
            self.register_buffer("rows", adaptive_pool_matrix(height, self.backbone.grid[0]), persistent=False)
            self.register_buffer("cols", adaptive_pool_matrix(width, self.backbone.grid[1]), persistent=False)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if not self.pooled:
            features = self.backbone(mel.unsqueeze(1))
        else:
            cells = self.rows @ self.backbone.features(mel.unsqueeze(1)) @ self.cols.T
            features = cells.flatten(1)
        return l2_normalize(self.head(features))


@register("logmel_cnn_audio")
class LogMelCNNAudioEncoder(TowerEncoder):
    # Front end, backbone and head; then the augmentations, which act only while training.
    config_keys = (
        "sample_rate",
        "clip_seconds",
        "n_fft",
        "hop",
        "n_mels",
        "n_mfcc",
        "top_db",
        "per_band_norm",
        "widths",
        "norm",
        "pool_grid",
        "head_hidden",
        "freq_mask",
        "time_mask",
        "band_warp",
        "time_stretch",
    )
    modality = Modality.AUDIO

    def __init__(
        self,
        dim: int,
        sample_rate: int = 16000,
        clip_seconds: float = 2.0,
        n_fft: int = 400,
        hop: int = 160,
        n_mels: int = 64,
        n_mfcc: int = 0,
        top_db: float = 0.0,
        per_band_norm: bool = False,
        widths: list[int] | None = None,
        norm: str = "batch",
        pool_grid: list[int] | None = None,
        head_hidden: int = 0,
        freq_mask: int = 0,
        time_mask: int = 0,
        band_warp: float = 0.0,
        time_stretch: float = 0.0,
        device: torch.device | None = None,
    ) -> None:
        self.dim, self.sample_rate, self.clip_seconds = dim, sample_rate, clip_seconds
        self.n_fft, self.hop, self.n_mels, self.n_mfcc = n_fft, hop, n_mels, n_mfcc
        self.top_db, self.per_band_norm = top_db, per_band_norm  # top_db 0: no floor
        self.widths, self.norm, self.head_hidden = list(widths or [32, 64, 128]), norm, head_hidden
        # (bands, frames) cells to pool the CNN's output into; None pools globally.
        self.pool_grid = list(pool_grid) if pool_grid else None
        self.freq_mask, self.time_mask = freq_mask, time_mask
        self.band_warp, self.time_stretch = band_warp, time_stretch
        grid = (self.pool_grid[0], self.pool_grid[1]) if self.pool_grid else None
        backbone = SmallCNN(1, self.widths, grid, norm)
        self.tower = AudioTower(
            LogMel(sample_rate, n_fft, hop, n_mels, per_band_norm, top_db, n_mfcc),
            backbone,
            ProjectionHead(backbone.out_dim, dim, head_hidden),
            {"freq_mask": freq_mask, "time_mask": time_mask, "band_warp": band_warp, "time_stretch": time_stretch},
        ).eval()
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

    def onnx_inputs(self, batch: list[Any]) -> torch.Tensor:
        # The log-mel front end stays in torch, exactly as on the torch path; the CNN and head run in ONNX Runtime.
        return self.tower.features(torch.stack(batch))

    def onnx_part(self) -> tuple[nn.Module, torch.Tensor]:
        with torch.inference_mode():
            example = self.tower.features(torch.zeros(2, self.clip_samples))
        return _AudioForward(self.tower, tuple(example.shape[1:])), example.clone()
