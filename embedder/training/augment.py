"""Cheap batch augmentations on prepared tensors, so a few speakers or writers generalise further.

Audio batches are (n, samples) waveforms; image batches are (n, c, h, w) pixels.
Every random draw comes from the generator passed in, so an epoch replays exactly
after a resume.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from ..modality import Modality

AUDIO_KEYS = {"shift_seconds", "speed", "noise", "sample_rate"}
IMAGE_KEYS = {"shift_pixels", "scale"}


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _shift(x: torch.Tensor, offsets: torch.Tensor, dim: int) -> torch.Tensor:
    """Shift each row by its own offset along `dim`, filling with zeros (not wrapping)."""
    out = torch.zeros_like(x)
    length = x.shape[dim]
    for i, offset in enumerate(offsets.tolist()):
        if abs(offset) >= length:
            continue
        src = x[i].narrow(dim - 1, max(0, -offset), length - abs(offset))
        out[i].narrow(dim - 1, max(0, offset), length - abs(offset)).copy_(src)
    return out


def augment_audio(waves: torch.Tensor, options: Mapping[str, float], generator: torch.Generator) -> torch.Tensor:
    """Speed perturbation (resampling by 1 +/- speed), a time shift, and white noise relative to the RMS."""
    n, length = waves.shape
    speed = float(options.get("speed", 0.0))
    if speed > 0:
        factors = _uniform(n, 1 - speed, 1 + speed, generator)
        stretched = torch.zeros_like(waves)
        for i, factor in enumerate(factors.tolist()):
            new_length = max(2, round(length / factor))
            resampled = F.interpolate(waves[i][None, None], size=new_length, mode="linear", align_corners=False)[0, 0]
            # Keep the centre, so the word stays in the window.
            if new_length >= length:
                start = (new_length - length) // 2
                stretched[i] = resampled[start : start + length]
            else:
                start = (length - new_length) // 2
                stretched[i, start : start + new_length] = resampled
        waves = stretched
    shift_seconds = float(options.get("shift_seconds", 0.0))
    if shift_seconds > 0:
        limit = round(shift_seconds * float(options.get("sample_rate", 16000)))
        offsets = torch.randint(-limit, limit + 1, (n,), generator=generator)
        waves = _shift(waves, offsets, dim=1)
    noise = float(options.get("noise", 0.0))
    if noise > 0:
        rms = waves.pow(2).mean(dim=1, keepdim=True).sqrt()
        scale = _uniform(n, 0.0, noise, generator)[:, None]
        waves = waves + torch.randn(waves.shape, generator=generator) * rms * scale
    return waves


def augment_image(pixels: torch.Tensor, options: Mapping[str, float], generator: torch.Generator) -> torch.Tensor:
    """Random translation by up to `shift_pixels` and zoom by 1 +/- `scale`, with an affine grid."""
    n = pixels.shape[0]
    shift = float(options.get("shift_pixels", 0.0))
    scale = float(options.get("scale", 0.0))
    if shift <= 0 and scale <= 0:
        return pixels
    height, width = pixels.shape[-2:]
    zoom = _uniform(n, 1 - scale, 1 + scale, generator) if scale > 0 else torch.ones(n)
    tx = _uniform(n, -shift, shift, generator) * 2 / width if shift > 0 else torch.zeros(n)
    ty = _uniform(n, -shift, shift, generator) * 2 / height if shift > 0 else torch.zeros(n)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = 1 / zoom
    theta[:, 1, 1] = 1 / zoom
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta.to(pixels.dtype), list(pixels.shape), align_corners=False)
    # Pixels are in [-1, 1] with -1 as background; pad with background, not with grey.
    return F.grid_sample(pixels + 1, grid, align_corners=False, padding_mode="zeros") - 1


def check_augment(augment: Mapping[str, Mapping[str, float]]) -> None:
    for modality, options in augment.items():
        known = {Modality.AUDIO.value: AUDIO_KEYS, Modality.IMAGE.value: IMAGE_KEYS}.get(modality)
        if known is None:
            raise ValueError(f"[augment]: no augmentations for {modality}; audio and image have some")
        unknown = set(options) - known
        if unknown:
            raise ValueError(f"[augment.{modality}]: unknown keys {sorted(unknown)}; known: {sorted(known)}")


def augment_batch(
    modality: Modality, batch: torch.Tensor, options: Mapping[str, float] | None, generator: torch.Generator
) -> torch.Tensor:
    if not options:
        return batch
    if modality is Modality.AUDIO:
        return augment_audio(batch, options, generator)
    if modality is Modality.IMAGE:
        return augment_image(batch, options, generator)
    return batch
