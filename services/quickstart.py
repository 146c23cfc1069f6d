"""`tessera quickstart`: start a server, fill corpora from the shipped sample, and query them.

Everything runs offline on the built-in `digits` space: real MiniLM text
weights, and image and audio encoders that `tessera train` aligned to it on real
handwritten digits (scikit-learn) and spoken digits (FSDD), shipped inside the
package. Video is the mean of its frames' image embeddings. Spaces with untrained
encoders (`minilm-bind-init`) still run; the report then says their cross-modal
rankings mean nothing yet.

It goes through the same path a user's application does: a gRPC server on
127.0.0.1, the Python client, CreateCorpus, a streamed Upsert, Search.
"""

from __future__ import annotations

import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from tessera.background import ServerThread
from tessera.client import Client, Hit
from tessera.errors import NotFound

DEFAULT_SPACE = "digits"
UNTRAINED_SPACES = {"minilm-bind-init"}


@dataclass(frozen=True)
class EmbeddedSample:
    modality: str
    source: str
    shape: tuple[int, ...]
    norm: float
    seconds: float


@dataclass(frozen=True)
class QueryRun:
    title: str
    query: str
    searched: list[str]
    hits: list[Hit]


@dataclass(frozen=True)
class QuickstartReport:
    space: str
    dim: int
    address: str
    samples: list[EmbeddedSample]
    corpora: list[dict[str, Any]]
    queries: list[QueryRun]
    cross_modal_trained: bool
    console: str | None = None  # the web console's URL, when the server also serves HTTP (--http-port)


def samples_dir() -> Path:
    return Path(str(resources.files("tessera") / "samples"))


# What the quickstart reads from the sample folder: files, and folders with their file pattern.
SAMPLE_FILES = ("sentences.txt", "digit_7.png", "seven_george.wav", "clip.mp4")
SAMPLE_FOLDERS = {"digits": "*.png", "spoken": "*.wav"}


def _check_samples(folder: Path) -> None:
    """Fail loudly when a bundled sample is missing, rather than fill a corpus with 0 items."""
    for name in SAMPLE_FILES:
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"bundled sample {folder / name} is missing: the Tessera installation is incomplete; reinstall it"
            )
    for name, pattern in SAMPLE_FOLDERS.items():
        if not any((folder / name).glob(pattern)):
            raise FileNotFoundError(
                f"bundled sample folder {folder / name} is missing or has no {pattern} files: "
                "the Tessera installation is incomplete; reinstall it"
            )


def _embed_samples(client: Client, space: str, folder: Path) -> tuple[list[EmbeddedSample], int]:
    inputs: list[tuple[str, str, list[Any]]] = [
        ("text", "sentences.txt", _sentences(folder)[:4]),
        ("image", "digit_7.png", [(folder / "digit_7.png").read_bytes()]),
        ("audio", "seven_george.wav", [(folder / "seven_george.wav").read_bytes()]),
        ("video", "clip.mp4", [(folder / "clip.mp4").read_bytes()]),
        ("vector", "random vector", []),  # filled once the space's dimension is known
    ]
    samples: list[EmbeddedSample] = []
    for modality, source, values in inputs:
        if modality == "vector":
            values = [np.random.default_rng(0).standard_normal(samples[0].shape[1]).astype(np.float32)]
        start = time.perf_counter()
        vectors = client.embed(values, modality=modality, space=space)
        elapsed = time.perf_counter() - start
        norm = float(np.linalg.norm(vectors, axis=1).mean())
        samples.append(EmbeddedSample(modality, source, vectors.shape, norm, elapsed))
    return samples, samples[0].shape[1]


def _sentences(folder: Path) -> list[str]:
    return [s.strip() for s in (folder / "sentences.txt").read_text().splitlines() if s.strip()]


def _fill_corpora(client: Client, space: str, folder: Path) -> list[dict[str, Any]]:
    corpora = {
        "passages": ("text", [{"id": f"s{i}", "text": s} for i, s in enumerate(_sentences(folder))]),
        "digit-images": (
            "image",
            [
                {
                    "id": f"image-{p.stem}",
                    "path": p,
                    "uri": f"samples/digits/{p.name}",
                    "metadata": {"digit": int(p.stem)},
                }
                for p in sorted((folder / "digits").glob("*.png"))
            ],
        ),
        "spoken-digits": (
            "audio",
            [
                {
                    "id": f"audio-{p.stem}",
                    "path": p,
                    "uri": f"samples/spoken/{p.name}",
                    "metadata": {"digit": int(p.stem.split("_")[0]), "speaker": "jackson"},
                }
                for p in sorted((folder / "spoken").glob("*.wav"))
            ],
        ),
    }
    for name, (modality, items) in corpora.items():
        client.create_corpus(name, space=space, modality=modality)
        client.upsert(name, items, modality=modality)
    return [client.describe_corpus(name) for name in corpora]


def _queries(client: Client, space: str, folder: Path) -> list[QueryRun]:
    ann_question = "how does approximate nearest-neighbour search avoid scanning everything?"
    seven = (folder / "seven_george.wav").read_bytes()
    # (title, query as shown, query parts, search options); the routed query shows more hits.
    plan: list[tuple[str, str, list[tuple[Any, ...]], dict[str, Any]]] = [
        ("text -> text", ann_question, [("text", ann_question)], {"corpora": ["passages"], "top_k": 3}),
        (
            "text -> image",
            "a handwritten seven",
            [("text", "a handwritten seven")],
            {"corpora": ["digit-images"], "top_k": 3},
        ),
        (
            "audio -> image",
            "seven_george.wav, someone saying 'seven'",
            [("audio", seven)],
            {"corpora": ["digit-images"], "top_k": 3},
        ),
        (
            "routed, all corpora (calibrated fusion)",
            "the number seven",
            [("text", "the number seven")],
            {"target_modalities": ["text", "image", "audio"], "top_k": 6},
        ),
    ]
    runs = []
    for title, shown, parts, options in plan:
        result = client.search(parts, space=space, **options)
        runs.append(QueryRun(title, shown, result.searched, result.hits))
    return runs


def run_quickstart(
    space: str = DEFAULT_SPACE,
    folder: Path | None = None,
    data_dir: Path | None = None,
    http_port: int | None = None,
    on_ready: Callable[[QuickstartReport], None] | None = None,
) -> QuickstartReport:
    """Start a server on 127.0.0.1 (data in `data_dir`, or a temporary directory), fill and query it.

    With `http_port` the server also serves HTTP and the web console; `on_ready`, if given, is called
    with the report while the server still runs (`tessera quickstart --http-port` keeps it up there).
    """
    folder = folder or samples_dir()
    _check_samples(folder)
    with tempfile.TemporaryDirectory(prefix="tessera-quickstart-") as tmp:
        server = ServerThread(Path(data_dir or tmp), http_port=http_port).start()
        try:
            with Client(server.address, timeout=300) as client:
                try:
                    samples, dim = _embed_samples(client, space, folder)
                except NotFound as exc:
                    raise ValueError(exc.message) from None
                corpora = _fill_corpora(client, space, folder)
                queries = _queries(client, space, folder)
            trained = space not in UNTRAINED_SPACES
            report = QuickstartReport(space, dim, server.address, samples, corpora, queries, trained, server.http_url)
            if on_ready is not None:
                on_ready(report)
        finally:
            server.stop()
    return report


def print_and_hold(report: QuickstartReport) -> None:
    """Print the report, then keep the server (and its console) up until Ctrl-C or SIGTERM."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(format_report(report), flush=True)
    print("\nThe server keeps running so you can open the console; Ctrl-C stops it.", flush=True)
    stop.wait()


def format_report(report: QuickstartReport) -> str:
    lines = [f"server on {report.address}; space {report.space} ({report.dim}-d, L2-normalised)", ""]
    if report.console:
        lines[-1:] = [f"web console on {report.console}/ (HTTP/JSON API under {report.console}/v1)", ""]
    lines.append("Embed, one call per modality:")
    lines.append(f"  {'modality':<8}  {'sample':<18}  {'vectors':<10}  {'mean norm':>9}  {'seconds':>7}")
    for s in report.samples:
        shape = "x".join(map(str, s.shape))
        lines.append(f"  {s.modality:<8}  {s.source:<18}  {shape:<10}  {s.norm:>9.4f}  {s.seconds:>7.3f}")
    lines += ["", "Corpora:"]
    for c in report.corpora:
        lines.append(f"  {c['name']:<14} {c['modality']:<6} {c['count']:>3} items  index {c['searching']}")
    for q in report.queries:
        lines += ["", f"{q.title}: {q.query!r}  (searched {', '.join(q.searched)})"]
        for h in q.hits:
            label = h.text or h.uri or h.id
            lines.append(f"  {h.calibrated_score:+.3f} (raw {h.raw_score:+.3f})  {h.corpus:<14} {label}")
    if not report.cross_modal_trained:
        lines += [
            "",
            f"Note: {report.space}'s image, audio and video encoders are untrained starting points, so",
            "cross-modal rankings above are not meaningful yet; text -> text uses the real MiniLM weights.",
            "Pass a trained space with --space once one exists.",
        ]
    return "\n".join(lines)
