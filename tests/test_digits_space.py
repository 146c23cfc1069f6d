"""The shipped `digits` space: it loads offline by name and its modalities meet in one space."""

from __future__ import annotations

import numpy as np

from tessera.embedder import list_spaces, load_space
from tessera.embedder.registry import PACKAGED_SPACES
from tessera.quickstart import samples_dir

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def test_digits_ships_inside_the_package_with_its_attribution() -> None:
    folder = PACKAGED_SPACES["digits"]
    assert (folder / "space.json").is_file() and (folder / "weights.safetensors").is_file()
    assert (
        "CC BY-SA 4.0" in (folder / "ATTRIBUTION.md").read_text()
        or "Attribution-ShareAlike 4.0" in (folder / "ATTRIBUTION.md").read_text()
    )
    assert any(info.name == "digits" and info.ready for info in list_spaces())


def test_digits_space_puts_spoken_written_and_named_digits_together() -> None:
    space = load_space("digits")
    assert space.loss in ("clip", "anchored", "gram", "symile")
    assert {m.value for m in space.modalities} >= {"text", "image", "audio", "video"}
    folder = samples_dir()
    names = space.embed("text", [f"the digit {w}" for w in WORDS])
    images = space.embed("image", [(folder / "digits" / f"{d}.png").read_bytes() for d in range(10)])
    audio = space.embed("audio", [(folder / "spoken" / f"{d}_jackson_0.wav").read_bytes() for d in range(10)])
    digits = np.arange(10)
    image_to_text = float(np.mean((images @ names.T).argmax(1) == digits))
    audio_to_text = float(np.mean((audio @ names.T).argmax(1) == digits))
    audio_to_image = float(np.mean((audio @ images.T).argmax(1) == digits))
    # Ten of each: chance is 0.1. (Jackson is one of the training speakers; the held-out-speaker
    # figures are in benchmarks/results/alignment_digits.json.)
    assert image_to_text >= 0.9, image_to_text
    assert audio_to_text >= 0.8, audio_to_text
    assert audio_to_image >= 0.7, audio_to_image
