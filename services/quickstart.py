"""`tessera quickstart`: embed the shipped sample of every modality and show what comes out.

It runs offline on the built-in `minilm-bind-init` space: real MiniLM text
weights, and the image, audio and video encoders that training starts from.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from embedder import Modality, Space, load_space

DEFAULT_SPACE = "minilm-bind-init"
SAMPLE_QUERY = "someone speaking a number aloud"


@dataclass(frozen=True)
class EmbeddedSample:
    modality: Modality
    source: str
    shape: tuple[int, ...]
    norm: float
    seconds: float


@dataclass(frozen=True)
class QuickstartReport:
    space: str
    dim: int
    samples: list[EmbeddedSample]
    query: str
    ranked_sentences: list[tuple[float, str]]


def samples_dir() -> Path:
    return Path(str(resources.files("services") / "samples"))


def _sample_inputs(folder: Path, dim: int) -> list[tuple[Modality, str, list[object]]]:
    sentences = [s for s in (folder / "sentences.txt").read_text().splitlines() if s.strip()]
    rng = np.random.default_rng(0)
    return [
        (Modality.TEXT, "sentences.txt", sentences),
        (Modality.IMAGE, "digit_7.png", [(folder / "digit_7.png").read_bytes()]),
        (Modality.AUDIO, "seven_george.wav", [(folder / "seven_george.wav").read_bytes()]),
        (Modality.VIDEO, "clip.mp4", [(folder / "clip.mp4").read_bytes()]),
        (Modality.VECTOR, "random vector", [rng.standard_normal(dim).astype(np.float32)]),
    ]


def run_quickstart(space: Space | None = None, folder: Path | None = None) -> QuickstartReport:
    space = space or load_space(DEFAULT_SPACE)
    folder = folder or samples_dir()
    samples, sentence_vectors, sentences = [], None, []
    for modality, source, inputs in _sample_inputs(folder, space.dim):
        if modality not in space.encoders:
            continue
        start = time.perf_counter()
        vectors = space.embed(modality, inputs)
        elapsed = time.perf_counter() - start
        samples.append(
            EmbeddedSample(modality, source, vectors.shape, float(np.linalg.norm(vectors, axis=1).mean()), elapsed)
        )
        if modality is Modality.TEXT:
            sentence_vectors, sentences = vectors, [str(s) for s in inputs]
    ranked: list[tuple[float, str]] = []
    if sentence_vectors is not None:
        query = space.embed(Modality.TEXT, [SAMPLE_QUERY])[0]
        scores = sentence_vectors @ query
        ranked = sorted(zip(scores.tolist(), sentences, strict=True), reverse=True)
    return QuickstartReport(space.id, space.dim, samples, SAMPLE_QUERY, ranked)


def format_report(report: QuickstartReport) -> str:
    lines = [f"space {report.space} ({report.dim}-d, L2-normalised)", ""]
    lines.append(f"{'modality':<8}  {'sample':<18}  {'vectors':<10}  {'mean norm':>9}  {'seconds':>7}")
    for s in report.samples:
        shape = "x".join(map(str, s.shape))
        lines.append(f"{s.modality.value:<8}  {s.source:<18}  {shape:<10}  {s.norm:>9.4f}  {s.seconds:>7.3f}")
    if report.ranked_sentences:
        lines += ["", f"text search for {report.query!r}:"]
        lines += [f"  {score:+.3f}  {sentence}" for score, sentence in report.ranked_sentences[:3]]
    return "\n".join(lines)
