"""How encoders run their model forward: torch, or ONNX Runtime graphs exported from the space's own weights.

On CPU the default is ONNX Runtime: each encoder exports its forward (never its
preprocessing: tokenising and log-mel stay in Python and torch, so both paths
see the same inputs) with `torch.onnx.export` on first use, and caches the graph
under `$TESSERA_CACHE_DIR/onnx` (default `$XDG_CACHE_HOME/tessera`, else
`~/.cache/tessera`). The file name is a key over the weights' bytes, the graph's
structure, the exporter (torch version, opset) and the onnxruntime version, so a
changed weight file exports again and an unchanged one never does. On CUDA torch
runs the model. `TESSERA_INFERENCE=torch` (or `load_space(..., inference="torch")`)
forces torch anywhere; without onnxruntime, torch is used with a logged warning.

Threads: a session gets as many intra-op threads as the cores this process may
use (`os.sched_getaffinity`; fewer if `torch.set_num_threads` asked for fewer), one
inter-op thread, and no spinning between runs;
one graph runs at a time in the process (`RUN_LOCK`), so a server's micro-batcher,
its no-batching callers and its decode threads never ask for more cores than there are.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

log = logging.getLogger("tessera.inference")

INFERENCE_ENV = "TESSERA_INFERENCE"
CACHE_ENV = "TESSERA_CACHE_DIR"
CHOICES = ("auto", "onnx", "torch")
OPSET = 17
# Bumped when how Tessera exports or optimises a graph changes: old cache entries are then not reused.
EXPORT_FORMAT = 1
# One ONNX Runtime run at a time in this process: every session already uses all the process's cores.
RUN_LOCK = threading.Lock()
# One export at a time in this process: torch.onnx.export keeps process-wide state (two threads exporting
# different graphs at once fail with "GLOBALS.in_onnx_export must be True"), and so does redirect_stdout.
EXPORT_LOCK = threading.Lock()


def cache_dir() -> Path:
    """Where exported graphs are kept: `$TESSERA_CACHE_DIR`, else `$XDG_CACHE_HOME/tessera`, else ~/.cache/tessera."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen:
        return Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tessera"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and `taskset` set)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def intra_op_threads() -> int:
    """Threads for one model run: the usable cores, or fewer where the caller lowered torch's count
    (`torch.set_num_threads`, as a Ray actor sharing a machine does)."""
    return max(1, min(usable_cores(), torch.get_num_threads()))


def _onnxruntime() -> Any | None:
    try:
        import onnxruntime
    except ImportError as exc:
        log.warning("onnxruntime is not importable (%s); encoders run with torch on the CPU", exc)
        return None
    return onnxruntime


def preload() -> None:
    """Import onnxruntime now, as a server starts, not inside its first request.

    Its import checks the platform (it reads /etc/os-release); done at start-up, that read
    is not charged to a request, and the first query does not pay the import.
    """
    _onnxruntime()


def resolve(inference: str | None, device: torch.device) -> str:
    """ "onnx" or "torch" for a space on `device`: the argument, else $TESSERA_INFERENCE, else by device."""
    chosen = (inference or os.environ.get(INFERENCE_ENV) or "auto").strip().lower()
    if chosen not in CHOICES:
        choices = ", ".join(CHOICES)
        raise ValueError(f"inference must be one of {choices}, not {chosen!r} (the argument or ${INFERENCE_ENV})")
    if chosen == "torch":
        return "torch"
    if device.type != "cpu":
        if chosen == "onnx":
            log.warning("ONNX Runtime runs Tessera's encoders on the CPU only; %s uses torch", device)
        return "torch"
    return "onnx" if _onnxruntime() is not None else "torch"


def weights_digest(*modules: nn.Module) -> str:
    """sha256 over every parameter and buffer (names, dtypes, shapes, bytes) of `modules`."""
    digest = hashlib.sha256()
    for i, module in enumerate(modules):
        tensors = [*module.named_parameters(), *module.named_buffers()]
        for name, tensor in sorted(tensors, key=lambda pair: pair[0]):
            data = tensor.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{i}.{name}:{data.dtype}:{tuple(tensor.shape)};".encode())
            digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def session_options(ort: Any) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Idle pool threads sleep instead of spinning: between batches the cores belong to decoding and I/O.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxGraph:
    """One module's forward as an ONNX Runtime session, exported on first use and cached on disk.

    `module_factory` returns the module to export (called only when the cache has no graph);
    `example` is a tuple of example input tensors; every input and output has a dynamic
    batch axis, plus the extra ones named in `dynamic_axes`. `optimize` post-processes the
    exported file in place (e.g. ONNX Runtime's transformer fusions) before it is cached.
    """

    def __init__(
        self,
        kind: str,
        digest: str,
        module_factory: Callable[[], nn.Module],
        example: Sequence[torch.Tensor],
        input_names: Sequence[str],
        output_names: Sequence[str] = ("output",),
        dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
        optimize: Callable[[Path], None] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.kind, self._factory, self._example = kind, module_factory, tuple(example)
        self.input_names, self.output_names = list(input_names), list(output_names)
        axes = {name: {0: "batch"} for name in [*self.input_names, *self.output_names]}
        for name, extra in (dynamic_axes or {}).items():
            axes[name] = {**axes.get(name, {}), **extra}
        self._axes = axes
        self._optimize = optimize
        self.key = self._key(digest, dict(config or {}))
        self._session: Any = None
        self._lock = threading.Lock()

    def _key(self, digest: str, config: dict[str, Any]) -> str:
        ort = _onnxruntime()
        what = {
            "kind": self.kind,
            "weights": digest,
            "config": config,
            "inputs": self.input_names,
            "example_shapes": [list(t.shape) for t in self._example],
            "axes": {k: sorted(v) for k, v in self._axes.items()},
            "torch": torch.__version__,
            "opset": OPSET,
            "onnxruntime": getattr(ort, "__version__", "none"),
            "format": EXPORT_FORMAT,
            "optimized": self._optimize is not None,
        }
        return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:32]

    @property
    def path(self) -> Path:
        return cache_dir() / "onnx" / f"{self.kind}-{self.key}.onnx"

    def _export(self, path: Path) -> None:
        # WARNING, not INFO: a first load pauses for seconds (6 to 20 s for MiniLM on 2 cores) and a user
        # with no logging configured would otherwise see a silent hang.
        log.warning(
            "first use of these %s weights: exporting them to ONNX Runtime, a one-off pause; cached as %s",
            self.kind,
            path,
        )
        started = time.perf_counter()
        path.parent.mkdir(parents=True, exist_ok=True)
        module = self._factory()
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".onnx", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            with EXPORT_LOCK, warnings.catch_warnings(), torch.no_grad(), contextlib.redirect_stdout(None):
                warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices
                torch.onnx.export(
                    module,
                    self._example,
                    str(tmp),
                    dynamo=False,
                    opset_version=OPSET,
                    input_names=self.input_names,
                    output_names=self.output_names,
                    dynamic_axes={k: dict(v) for k, v in self._axes.items()},
                )
            if self._optimize is not None:
                self._optimize(tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)  # atomic: a concurrent loader sees the whole graph or none
        finally:
            tmp.unlink(missing_ok=True)
        log.warning("exported the %s forward to ONNX in %.1f s", self.kind, time.perf_counter() - started)

    @property
    def session(self) -> Any:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    ort = _onnxruntime()
                    if ort is None:
                        raise RuntimeError("onnxruntime is not importable; load the space with inference='torch'")
                    path = self.path
                    if not path.is_file():
                        self._export(path)
                    self._session = ort.InferenceSession(
                        str(path), session_options(ort), providers=["CPUExecutionProvider"]
                    )
        return self._session

    def run(self, *inputs: np.ndarray) -> np.ndarray:
        session = self.session
        feed = dict(zip(self.input_names, inputs, strict=True))
        with RUN_LOCK:
            return session.run(self.output_names[:1], feed)[0]


def fuse_transformer(num_heads: int, hidden_size: int) -> Callable[[Path], None]:
    """ONNX Runtime's BERT fusions (attention, skip layer norm, bias GELU), written back in place."""

    def optimize(path: Path) -> None:
        from onnxruntime.transformers import optimizer

        previous = logging.root.manager.disable
        logging.disable(logging.INFO)  # the optimizer logs every fusion it makes, at INFO, to its own loggers
        try:
            with contextlib.redirect_stdout(None), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = optimizer.optimize_model(
                    str(path), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=0
                )
                model.save_model_to_file(str(path))
        finally:
            logging.disable(previous)

    return optimize


__all__ = [
    "CACHE_ENV",
    "INFERENCE_ENV",
    "OnnxGraph",
    "cache_dir",
    "intra_op_threads",
    "preload",
    "resolve",
    "usable_cores",
    "weights_digest",
]
