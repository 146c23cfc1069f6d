"""ONNX Runtime inference: parity with torch for every shipped encoder, the export cache, and choosing the path."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from benchmarks.text_corpus import real_sentences
from tessera.embedder import build_space, load_space, save_space
from tessera.embedder.inference import CACHE_ENV, INFERENCE_ENV, resolve, session_options, usable_cores
from tessera.quickstart import samples_dir

PARITY = 0.9999


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sum(a * b, axis=1).min())


@pytest.fixture(scope="module")
def digits_pair() -> tuple:
    """The shipped digits space through ONNX Runtime and through torch."""
    return load_space("digits", inference="onnx"), load_space("digits", inference="torch")


def _exports(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("first use of these")]


def test_minilm_onnx_matches_torch_on_varied_sentences(digits_pair) -> None:
    onnx_space, torch_space = digits_pair
    assert onnx_space.inference["text"] == "onnx" and torch_space.inference["text"] == "torch"
    # Other scripts, emoji, "ok", one far past the 256-token limit, then docstrings of every length.
    sentences = real_sentences(120)
    for batch_size in (1, 64):
        ours = onnx_space.embed("text", sentences[: 16 if batch_size == 1 else 120], batch_size=batch_size)
        reference = torch_space.embed("text", sentences[: len(ours)], batch_size=batch_size)
        assert _min_cosine(ours, reference) >= PARITY, batch_size


def test_minilm_projection_head_runs_in_onnx_too(tmp_path: Path) -> None:
    head = {"in_dim": 384, "out_dim": 64, "hidden": 32, "dropout": 0.0}
    spec = {"name": "headed", "version": "1", "dim": 64, "encoders": {"text": {"type": "minilm", "head": head}}}
    torch.manual_seed(0)
    folder = save_space(build_space(spec, torch.device("cpu")), tmp_path / "headed")
    onnx_space, torch_space = load_space(str(folder)), load_space(str(folder), inference="torch")
    assert onnx_space.inference["text"] == "onnx"
    texts = ["a head on top of MiniLM", "projected to 64 dimensions", "ok"]
    ours = onnx_space.embed("text", texts)
    assert onnx_space.encoder("text")._onnx_head.session is not None  # the head ran as its own graph
    assert _min_cosine(ours, torch_space.embed("text", texts)) >= PARITY


def test_digits_image_audio_and_video_match_torch(digits_pair, shared_data) -> None:
    onnx_space, torch_space = digits_pair
    assert {onnx_space.inference[m] for m in ("image", "audio", "video")} == {"onnx"}
    folder = samples_dir()
    images = [(folder / "digits" / f"{d}.png").read_bytes() for d in range(10)]
    clips = [p.read_bytes() for p in sorted((shared_data / "fsdd" / "recordings").glob("*.wav"))[:40]]
    videos = [p.read_bytes() for p in sorted((shared_data / "media").glob("*.mp4"))]
    for modality, items in (("image", images), ("audio", clips), ("video", videos)):
        ours, reference = onnx_space.embed(modality, items), torch_space.embed(modality, items)
        assert _min_cosine(ours, reference) >= PARITY, modality
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_cache_exports_once_and_again_when_a_weight_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    caplog.set_level(logging.INFO, logger="tessera.inference")
    folder = save_space(load_space("digits", inference="torch"), tmp_path / "space")
    image = [(samples_dir() / "digits" / "3.png").read_bytes()]

    first = load_space(str(folder)).embed("image", image)
    assert len(_exports(caplog)) == 1 and "cnn_image" in _exports(caplog)[0]
    graphs = sorted((tmp_path / "cache" / "onnx").glob("cnn_image-*.onnx"))
    assert len(graphs) == 1

    caplog.clear()
    again = load_space(str(folder)).embed("image", image)  # a second load reads the cached graph
    assert _exports(caplog) == []
    np.testing.assert_array_equal(first, again)

    weights = folder / "weights.safetensors"
    tensors = load_file(str(weights))
    tensors["image.head.net.weight"] = tensors["image.head.net.weight"] * 1.5 + 0.01
    save_file(tensors, str(weights))
    changed_space = load_space(str(folder))
    changed = changed_space.embed("image", image)
    assert len(_exports(caplog)) == 1, "a changed weight file must export again"
    assert len(list((tmp_path / "cache" / "onnx").glob("cnn_image-*.onnx"))) == 2
    assert _min_cosine(changed, first) < 0.999
    reference = load_space(str(folder), inference="torch").embed("image", image)
    assert _min_cosine(changed, reference) >= PARITY


def test_two_towers_export_at_once_from_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server's first composite query exports the audio and image graphs from two threads at once; the
    exporter's process-wide state must not make one of them fail (it did: "GLOBALS.in_onnx_export")."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    space = load_space("digits-sum", inference="onnx")
    parts = {
        "audio": [(samples_dir() / "spoken" / f"{d}_jackson_0.wav").read_bytes() for d in range(3)],
        "image": [(samples_dir() / "digits" / f"{d}.png").read_bytes() for d in range(3)],
    }
    for _ in range(2):  # the second round runs from the cache, still from two threads
        with ThreadPoolExecutor(2) as pool:
            futures = {m: pool.submit(space.embed, m, items) for m, items in parts.items()}
            vectors = {m: f.result() for m, f in futures.items()}
    reference = load_space("digits-sum", inference="torch")
    for modality, items in parts.items():
        assert _min_cosine(vectors[modality], reference.embed(modality, items)) >= PARITY
    assert len(list((tmp_path / "cache" / "onnx").glob("*.onnx"))) == 2


def test_tessera_inference_torch_forces_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INFERENCE_ENV, "torch")
    space = load_space("digits")
    assert set(space.inference.values()) == {"torch", "none"}
    assert load_space("digits", inference="onnx").inference["image"] == "onnx"  # the argument wins
    monkeypatch.delenv(INFERENCE_ENV)
    assert load_space("digits").inference["image"] == "onnx"  # the CPU default
    assert load_space("digits", inference="torch").inference["audio"] == "torch"


def test_path_by_device_bad_names_and_missing_onnxruntime(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(INFERENCE_ENV, raising=False)
    assert resolve(None, torch.device("cpu")) == "onnx"
    assert resolve(None, torch.device("cuda")) == "torch"  # torch stays the path on CUDA
    assert resolve("onnx", torch.device("cuda")) == "torch"
    with pytest.raises(ValueError, match="inference must be one of"):
        resolve("tensorrt", torch.device("cpu"))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    with caplog.at_level(logging.WARNING, logger="tessera.inference"):
        assert resolve(None, torch.device("cpu")) == "torch"
    assert "onnxruntime is not importable" in caplog.text


def test_sessions_use_the_cores_this_process_may_use() -> None:
    import onnxruntime

    options = session_options(onnxruntime)
    assert usable_cores() == len(os.sched_getaffinity(0))
    assert options.intra_op_num_threads == min(usable_cores(), torch.get_num_threads())
    assert options.inter_op_num_threads == 1
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # a caller that shares the machine (a Ray actor) asks for fewer
        assert session_options(onnxruntime).intra_op_num_threads == 1
    finally:
        torch.set_num_threads(threads)


def test_openclip_towers_match_torch() -> None:
    # Random weights (nothing downloads here); the graphs are the same as for a pretrained tag.
    onnx_space = load_space("openclip:ViT-B-32/random", inference="onnx")
    torch_space = load_space("openclip:ViT-B-32/random", inference="torch")
    assert onnx_space.inference == {"text": "onnx", "image": "onnx", "vector": "none"}
    assert torch_space.inference["image"] == "torch"
    texts = ["a photo of a handwritten seven", "ok", "Der schnelle braune Fuchs " * 20]  # one past 77 tokens
    images = [(samples_dir() / "digits" / f"{d}.png").read_bytes() for d in range(4)]
    for modality, items in (("text", texts), ("image", images)):
        ours, reference = onnx_space.embed(modality, items), torch_space.embed(modality, items)
        assert _min_cosine(ours, reference) >= PARITY, modality
