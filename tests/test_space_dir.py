"""save_space / load_space round trips, and the errors for broken space directories."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tessera.embedder import build_space, load_space, save_space
from tessera.embedder.registry import minilm_bind_init_spec
from tests.conftest import FSDD, MEDIA


@pytest.fixture(scope="module")
def trained_like_space():
    # A fresh build has random weights that differ from the seeded built-in, like a trained space would.
    spec = minilm_bind_init_spec()
    spec["name"], spec["version"] = "roundtrip", "3"
    spec["encoders"]["text"]["head"] = {"in_dim": 384, "out_dim": 384, "hidden": 64, "dropout": 0.0}
    return build_space(spec)


def test_saved_space_reloads_with_identical_outputs(trained_like_space, tmp_path, shared_data) -> None:
    path = save_space(trained_like_space, tmp_path / "roundtrip")
    assert sorted(p.name for p in path.iterdir()) == ["space.json", "weights.safetensors"]
    loaded = load_space(path, inference="torch")  # the fixture runs torch; the ONNX path is tests/test_onnx.py's
    assert (loaded.name, loaded.version, loaded.dim) == ("roundtrip", "3", 384)
    assert loaded.modalities == trained_like_space.modalities
    inputs = {
        "text": ["a spoken digit", "a handwritten seven"],
        "image": [_png()],
        "audio": [p.read_bytes() for p in sorted(FSDD.glob("*.wav"))[:4]],
        "video": [(MEDIA / "video3.mp4").read_bytes()],
        "vector": [np.linspace(-1, 1, 384, dtype=np.float32)],
    }
    for modality, items in inputs.items():
        np.testing.assert_array_equal(trained_like_space.embed(modality, items), loaded.embed(modality, items))


def _png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_saved_space_loads_by_name_from_data_dir(trained_like_space, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TESSERA_DATA", str(tmp_path))
    save_space(trained_like_space, tmp_path / "spaces" / "mine")
    assert load_space("mine").name == "roundtrip"
    from tessera.embedder import list_spaces

    assert any(info.name == "mine" and info.ready for info in list_spaces())


def test_save_refuses_to_overwrite_without_flag(trained_like_space, tmp_path) -> None:
    save_space(trained_like_space, tmp_path / "s")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_space(trained_like_space, tmp_path / "s")
    save_space(trained_like_space, tmp_path / "s", overwrite=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".s.")]  # no staging left behind


def test_broken_space_dirs_give_clear_errors(trained_like_space, tmp_path) -> None:
    path = save_space(trained_like_space, tmp_path / "s")
    spec = json.loads((path / "space.json").read_text())
    spec["encoders"]["image"]["type"] = "no_such_encoder"
    (path / "space.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="unknown encoder type 'no_such_encoder'"):
        load_space(path)
    (path / "space.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_space(path)
    with pytest.raises(ValueError, match="unknown space"):
        load_space(tmp_path / "nowhere")


def test_missing_weights_for_an_encoder_is_an_error(trained_like_space, tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    path = save_space(trained_like_space, tmp_path / "s")
    tensors = {k: v for k, v in load_file(path / "weights.safetensors").items() if not k.startswith("audio.")}
    save_file(tensors, path / "weights.safetensors")
    with pytest.raises(ValueError, match="no weights for the audio encoder"):
        load_space(path)


def test_saved_spaces_are_readable_by_other_users(tmp_path) -> None:
    import stat

    from tessera.embedder import load_space, save_space

    folder = save_space(load_space("minilm"), tmp_path / "shared-space")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
