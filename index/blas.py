"""numpy's BLAS under concurrent callers: one thread per call, so request threads do not fight it.

OpenBLAS (numpy's BLAS) keeps one pool of threads for every caller in the process, and
those threads spin while they wait for work. A server runs many small products at once
(each request multiplies its query by a corpus in its own worker thread) while ONNX
Runtime embeds beside them, and the spinning pool takes the cores that work needs.
Measured here (2 cores): a 1 x 384 by 384 x 2,000 product took 50 us alone and 265 us
with six callers; `tessera serve`'s end-to-end text search at 16 clients went from 95 to
135 queries/s once numpy's BLAS ran each call on its caller's thread.

`tessera serve`'s Engine (`blas_on_caller_threads=True`) calls `run_blas_on_caller_threads()`;
`exact.py` then splits a large scan across the cores itself (`per_call()` tells it to).
A process that never calls it (an embedded engine, a script) keeps numpy's defaults.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from threadpoolctl import ThreadpoolController

_lock = threading.Lock()
_per_call = False


def _numpy_blas(controllers: list) -> list:
    """numpy's own BLAS (a wheel bundles it beside the package, in numpy.libs or numpy/.dylibs); where
    numpy links a system BLAS there is no telling it apart, and every BLAS library counts as numpy's."""
    numpy_dir = Path(np.__file__).resolve().parent

    def bundled(path: Path) -> bool:
        return path.parent.name.startswith("numpy") or numpy_dir in path.parents

    return [c for c in controllers if bundled(Path(c.filepath).resolve())] or controllers


def run_blas_on_caller_threads() -> bool:
    """Set numpy's BLAS to one thread per call, once per process; True if a BLAS library was found.

    FAISS's own BLAS is left alone: its single-query searches do not use it, and its index
    training (a background job) wants every core."""
    global _per_call
    with _lock:
        if _per_call:
            return True
        controllers = _numpy_blas(list(ThreadpoolController().select(user_api="blas").lib_controllers))
        for controller in controllers:
            controller.set_num_threads(1)
        _per_call = bool(controllers)
        return _per_call


def per_call() -> bool:
    """Whether numpy's BLAS runs each call on its caller's thread (after `run_blas_on_caller_threads`)."""
    return _per_call
