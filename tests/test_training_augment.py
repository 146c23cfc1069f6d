"""Training-time augmentations: deterministic under a generator, shape-preserving, off at inference."""

from __future__ import annotations

import numpy as np
import torch

from tessera.embedder import load_space, save_space
from tessera.embedder.encoders.audio_cnn import LogMelCNNAudioEncoder, spec_augment, stretch_time, warp_bands
from tessera.embedder.modality import Modality
from tessera.embedder.space import Space
from tessera.embedder.training.augment import augment_audio, augment_image
from tests.conftest import FSDD


def _waves() -> torch.Tensor:
    from tessera.embedder.decode import decode_audio

    clips = [decode_audio((FSDD / f"{d}_lucas_0.wav").read_bytes(), 8000).samples[:8000] for d in range(4)]
    return torch.stack([torch.from_numpy(np.pad(c, (0, 8000 - len(c)))) for c in clips])


def test_audio_augmentation_replays_under_the_same_generator() -> None:
    waves = _waves()
    options = {"speed": 0.15, "shift_seconds": 0.1, "noise": 0.05, "sample_rate": 8000}
    a = augment_audio(waves, options, torch.Generator().manual_seed(5))
    b = augment_audio(waves, options, torch.Generator().manual_seed(5))
    c = augment_audio(waves, options, torch.Generator().manual_seed(6))
    assert a.shape == waves.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.allclose(a, waves)
    assert torch.equal(augment_audio(waves, {}, torch.Generator()), waves)


def test_image_augmentation_keeps_the_background() -> None:
    pixels = -torch.ones(3, 1, 16, 16)
    pixels[:, :, 6:10, 6:10] = 1.0
    shifted = augment_image(pixels, {"shift_pixels": 2, "scale": 0.1}, torch.Generator().manual_seed(0))
    assert shifted.shape == pixels.shape
    assert float(shifted[:, :, 0, 0].max()) == -1.0  # corners stay background, not grey padding
    assert not torch.allclose(shifted, pixels)


def test_band_warp_and_time_stretch_preserve_shape_and_identity_at_zero() -> None:
    torch.manual_seed(0)
    mel = torch.randn(4, 40, 63)
    for fn in (warp_bands, stretch_time):
        assert fn(mel, 0.3).shape == mel.shape
        assert torch.allclose(fn(mel, 0.0), mel, atol=1e-6)
    masked = spec_augment(mel, freq_mask=6, time_mask=8)
    assert masked.shape == mel.shape and bool((masked == 0).any())


def test_audio_train_only_options_do_not_change_inference_and_round_trip(tmp_path) -> None:
    options = dict(
        sample_rate=8000,
        clip_seconds=1.0,
        n_fft=256,
        hop=128,
        n_mels=40,
        widths=[8, 16],
        top_db=50,
        per_band_norm=True,
        pool_grid=[2, 4],
        freq_mask=6,
        time_mask=8,
        band_warp=0.1,
        time_stretch=0.25,
    )
    torch.manual_seed(0)
    encoder = LogMelCNNAudioEncoder(384, **options)
    waves = list(_waves())
    first, second = encoder.encode(waves), encoder.encode(waves)
    assert torch.equal(first, second)  # eval mode: no masks, warps or stretches
    space = Space("aug-test", "1", 384, {Modality.AUDIO: encoder})
    save_space(space, tmp_path / "space")
    loaded = load_space(tmp_path / "space")
    assert loaded.encoder("audio").spec() == encoder.spec()
    clip = (FSDD / "3_lucas_1.wav").read_bytes()
    assert np.allclose(loaded.embed("audio", [clip]), space.embed("audio", [clip]), atol=1e-6)
