"""`tessera train`: config files, a real training run on FSDD + sklearn digits, checkpoints and resume,
and the written space loaded by `load_space` and by a real gRPC server."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from tessera.embedder import load_space
from tessera.embedder.training import ConfigError, config_from_dict, load_config, train
from tests.conftest import FSDD, REPO

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


class Interrupted(Exception):
    """Stands in for a crash or Ctrl-C between epochs."""


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((pixels.reshape(8, 8) * 15).astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Triplets of one digit: a real FSDD clip (a path relative to the manifest), a real sklearn digit
    (PNG bytes), and a phrase; some rows lack their image, to exercise the presence masks."""
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("digits")
    (folder / "clips").mkdir()
    digits = load_digits()
    rows: dict[str, list[Any]] = {"audio": [], "image": [], "text": [], "digit": [], "speaker": []}
    for speaker in ("george", "jackson", "theo"):
        for digit in range(10):
            for take in range(3):
                name = f"{digit}_{speaker}_{take}.wav"
                (folder / "clips" / name).write_bytes((FSDD / name).read_bytes())
                image = np.flatnonzero(digits.target == digit)[take + (3 if speaker == "theo" else 0)]
                rows["audio"].append(f"clips/{name}")
                rows["image"].append(None if (take == 2 and speaker == "jackson") else _png(digits.data[image]))
                rows["text"].append(f"the number {WORDS[digit]}" if take else WORDS[digit])
                rows["digit"].append(digit)
                rows["speaker"].append(speaker)
    pq.write_table(pa.table(rows), folder / "pairs.parquet")
    return folder / "pairs.parquet"


def raw_config(manifest: Path, output: Path, loss: str = "clip", epochs: int = 2) -> dict[str, Any]:
    return {
        "space": {"name": "tiny-digits", "version": "1", "dim": 384},
        "data": {
            "manifest": str(manifest),
            "columns": {"text": "text", "image": "image", "audio": "audio"},
            "label_column": "digit",
            "group_column": "speaker",
            "shuffle_within_label": True,
        },
        "eval": {"groups": ["theo"]},
        "encoders": {
            "text": {"type": "minilm", "trainable": False},
            "image": {"type": "cnn_image", "image_size": 8, "grayscale": True, "widths": [8, 16]},
            "audio": {
                "type": "logmel_cnn_audio",
                "sample_rate": 8000,
                "clip_seconds": 1.0,
                "n_fft": 256,
                "hop": 128,
                "n_mels": 32,
                "widths": [8, 16],
                "time_mask": 4,
            },
            "video": {"type": "frame_pool_video", "frames": 4},
            "vector": {"type": "identity_vector"},
        },
        "loss": {"name": loss, "anchor": "text"},
        "optimizer": {"lr": 3e-3},
        "training": {"epochs": epochs, "batch_size": 16, "seed": 3, "device": "cpu"},
        "augment": {"audio": {"speed": 0.1, "shift_seconds": 0.05, "noise": 0.05}, "image": {"shift_pixels": 1}},
        "output": str(output),
    }


def test_yaml_and_toml_configs_read_the_same(manifest: Path, tmp_path: Path) -> None:
    raw = raw_config(manifest, tmp_path / "out")
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    toml_lines = []
    # A small TOML writer is enough for this shape (tables of scalars, lists and one nesting level).
    for section, body in raw.items():
        if not isinstance(body, dict):
            toml_lines.insert(0, f"{section} = {_toml(body)}")
            continue
        toml_lines.append(f"[{section}]")
        for key, value in body.items():
            if isinstance(value, dict) and section in ("encoders", "augment", "data"):
                toml_lines.append(f"{key} = {{ {', '.join(f'{k} = {_toml(v)}' for k, v in value.items())} }}")
            else:
                toml_lines.append(f"{key} = {_toml(value)}")
    (tmp_path / "a.toml").write_text("\n".join(toml_lines) + "\n")
    from_yaml, from_toml = load_config(tmp_path / "a.yaml"), load_config(tmp_path / "a.toml")
    assert from_yaml.to_dict() == from_toml.to_dict()
    assert from_yaml.fingerprint() == from_toml.fingerprint()
    assert [m.value for m in from_yaml.modalities] == ["text", "image", "audio"]


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\") + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["loss"].update(name="triplet"), "not one of clip"),
        (lambda r: r["training"].update(epochz=3), "unknown keys"),
        (lambda r: r.pop("data"), r"needs a \[data\]"),
        (lambda r: r["data"]["columns"].pop("image") and r["data"]["columns"].pop("audio"), "two or more"),
        (lambda r: r["data"]["columns"].update(audio="recording"), "no column"),
        (lambda r: r["eval"].update(groups=["nobody"]), "never occur"),
        (lambda r: r["encoders"]["text"].update(trainable=True), "cannot be trained"),
        (lambda r: r["augment"].update(text={"speed": 1}), "no augmentations for text"),
        (lambda r: r["loss"].update(name="clip", pairwise_weight=0.5), "use it with gram or symile"),
        (lambda r: r["loss"].update(pairwise_weight=-1), "non-negative"),
        (lambda r: r["loss"].update(pairwise_weight="lots"), "must be a number, not 'lots'"),
        (lambda r: r["loss"].update(name="symile", label_smoothing=0.1), "applies to gram only"),
        (lambda r: r["loss"].update(name="gram", label_smoothing=1.0), r"in \[0, 1\)"),
        (lambda r: r["loss"].update(max_logit_scale=2.0), ">= 1 / temperature"),
        (lambda r: r["loss"].update(temperature=0), "positive number"),
    ],
)
def test_bad_configs_say_what_to_fix(manifest: Path, tmp_path: Path, change, message: str) -> None:
    raw = raw_config(manifest, tmp_path / "out")
    change(raw)
    with pytest.raises((ConfigError, ValueError), match=message):
        train(config_from_dict(raw), progress=False, log=lambda _: None)


def _tower_weights(space_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(space_dir / "weights.safetensors"))


@pytest.fixture(scope="module")
def trained(manifest: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("trained") / "space"
    result = train(config_from_dict(raw_config(manifest, out, loss="gram", epochs=3)), progress=False)
    return result


def test_training_writes_a_space_load_space_reads(trained, manifest: Path) -> None:
    assert [h["epoch"] for h in trained.history] == [1, 2, 3]
    final = trained.final
    for key in ("train_loss", "eval_loss", "audio->text_r1", "image->audio_r1", "temperature"):
        assert np.isfinite(final[key]), key
    space = load_space(trained.output)
    assert space.name == "tiny-digits" and space.loss == "gram"
    assert space.metadata["trained_by"] == "tessera train"
    assert {m.value for m in space.modalities} == {"text", "image", "audio", "video", "vector"}
    clip = (FSDD / "7_theo_5.wav").read_bytes()
    vectors = space.embed("audio", [clip, clip])
    assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    # GRAM cannot tell v from -v; the trainer turns each encoder to point along the anchor (text),
    # so cosine search, which the index does, finds matches rather than opposites.
    table = pq.read_table(manifest).to_pylist()
    train_rows = [r for r in table if r["speaker"] != "theo"]
    audio = space.embed("audio", [(manifest.parent / r["audio"]).read_bytes() for r in train_rows])
    text = space.embed("text", [r["text"] for r in train_rows])
    assert float((audio * text).sum(1).mean()) > 0
    # Training moved the weights away from the seeded initial ones.
    init_dir = trained.output.parent / "init"
    raw = raw_config(manifest, init_dir, epochs=1)
    from tessera.embedder.training.trainer import build_initial_space

    initial = build_initial_space(config_from_dict(raw), torch.device("cpu"))
    trained_weights = _tower_weights(trained.output)
    initial_conv = initial.encoder("audio").tower.state_dict()["backbone.features.0.weight"]
    assert not torch.allclose(trained_weights["audio.backbone.features.0.weight"], initial_conv)


def test_a_trained_space_is_served(trained) -> None:
    from tessera.background import ServerThread
    from tessera.client import Client

    srv = ServerThread(trained.output.parent / "served").start()
    try:
        with Client(srv.address, timeout=60) as client:
            client.wait_ready()
            clip = (FSDD / "3_theo_7.wav").read_bytes()
            served = client.embed([clip], modality="audio", space=str(trained.output))
            local = load_space(trained.output).embed("audio", [clip])
            assert np.allclose(served, local, atol=1e-5)
    finally:
        srv.stop()


@pytest.mark.parametrize(
    "loss",
    [{"name": "clip", "anchor": "text"}, {"name": "symile", "pairwise_weight": 0.5}],
    ids=["clip", "combined"],
)
def test_an_interrupted_run_resumes_to_the_same_weights(manifest: Path, tmp_path: Path, loss: dict) -> None:
    def config_for(output: Path) -> dict[str, Any]:
        raw = raw_config(manifest, output, epochs=3)
        raw["loss"] = dict(loss)
        return raw

    straight = train(config_from_dict(config_for(tmp_path / "straight")), progress=False)

    config = config_from_dict(config_for(tmp_path / "resumed"))

    def crash_after_first_epoch(metrics: dict[str, Any]) -> None:
        if metrics["epoch"] == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(config, progress=False, on_epoch_end=crash_after_first_epoch)
    assert not (tmp_path / "resumed").exists()  # no space until training finishes
    lines: list[str] = []
    resumed = train(config, progress=False, log=lines.append)
    assert resumed.resumed_from == 1 and any("resuming" in line for line in lines)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    a, b = _tower_weights(straight.output), _tower_weights(resumed.output)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    assert resumed.history[-1]["train_loss"] == pytest.approx(straight.history[-1]["train_loss"], rel=1e-5)
    if "pairwise_weight" in loss:  # the combined objective's pairwise term learns its own temperature
        last = resumed.history[-1]
        assert last["pairwise_temperature"] == pytest.approx(straight.history[-1]["pairwise_temperature"], rel=1e-5)
        assert last["pairwise_temperature"] != pytest.approx(last["temperature"], rel=1e-3)

    changed = config_for(tmp_path / "resumed")
    changed["optimizer"]["lr"] = 1e-2
    with pytest.raises(ConfigError, match="different config"):
        train(config_from_dict(changed), progress=False)


def test_tessera_train_cli(manifest: Path, tmp_path: Path) -> None:
    raw = raw_config(manifest, Path("space"), loss="symile", epochs=1)
    raw["data"]["manifest"] = os.path.relpath(manifest, tmp_path)  # relative to the config file
    (tmp_path / "digits.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, "-m", "tessera.cli", "train", str(tmp_path / "digits.yaml"), "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "space written to" in run.stdout and (tmp_path / "space" / "space.json").exists()
    assert load_space(tmp_path / "space").loss == "symile"
    bad = subprocess.run(
        [sys.executable, "-m", "tessera.cli", "train", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert bad.returncode == 2 and "no config file" in bad.stderr
    helped = subprocess.run(
        [sys.executable, "-m", "tessera.cli", "train", "--help"], capture_output=True, text=True, env=env, timeout=60
    )
    assert helped.returncode == 0 and "checkpoint" in helped.stdout


def test_a_corrupt_manifest_item_is_named(manifest: Path, tmp_path: Path) -> None:
    table = pq.read_table(manifest).to_pydict()
    table["audio"] = [str(manifest.parent / a) for a in table["audio"]]
    table["audio"][4] = b"RIFF\x00\x00not a wav at all"
    pq.write_table(pa.table(table), tmp_path / "bad.parquet")
    with pytest.raises(ConfigError, match="audio item cannot be decoded"):
        train(config_from_dict(raw_config(tmp_path / "bad.parquet", tmp_path / "out")), progress=False)
