"""Test-only watch on the files a server opens: with TESSERA_AUDIT_OPENS=FILE set, every open outside the
allowed roots is appended to FILE as one JSON line.

`tessera serve` calls `install_from_env(data_dir)` once the data directory is known. Without the variable
nothing is installed and nothing costs anything. With it, a `sys.addaudithook` hook sees the `open` event,
which builtin `open`, `io.open`, `io.open_code` (imports) and `os.open` all raise, and `torch.load` of a
path goes through; an opened path whose real location is outside

- the data directory,
- the interpreter (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix) and site-packages,
- the installed `tessera` packages (services/, embedder/, index/, proto/tessera/v1/ in an editable install),
- /proc, /sys and /dev, and the system's time zone database (/usr/share/zoneinfo: dateutil reads it when
  pandas is imported),

is logged as `{"path", "real", "event", "mode", "flags", "stack"}`. The system temp directory is not an
allowed root, so a file a client plants under /tmp and names in a request shows up here. Only one kind of
open there passes: a file created exclusively (O_CREAT|O_EXCL, which cannot open an existing file), as
`tempfile.gettempdir()` does once to probe that the directory is writable (a library calls it on import) and
`mkstemp` does. The server itself stages space directories and checkpoints beside their target
(embedder/space_dir.py), never in the temp directory.

What the hook cannot see: files opened by native code (FAISS's `read_index`, safetensors, libsndfile,
FFmpeg) without Python's `open`, and `stat` calls (`Path.is_file`), which read no content.
benchmarks/hostile.py and tests/test_hostile.py use it to check that no request makes the server read a
file of the client's choosing (issue 19).

The hook never raises: an audit failure must not change what the server answers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import site
import sys
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

ENV = "TESSERA_AUDIT_OPENS"
STACK_FRAMES = 8
SYSTEM_ROOTS = ("/proc", "/sys", "/dev", "/usr/share/zoneinfo")
_EXCLUSIVE = os.O_CREAT | os.O_EXCL
_installed: list[str] = []  # the log file of the hook installed in this process, if any


def allowed_roots(data_dir: str | os.PathLike[str], extra: Iterable[str | os.PathLike[str]] = ()) -> tuple[str, ...]:
    """Real paths (ending in a separator) under which an open is expected."""
    roots = [data_dir, sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *SYSTEM_ROOTS]
    roots += [*site.getsitepackages(), site.getusersitepackages()]
    roots += _package_dirs()
    roots += list(extra)
    out = {os.path.join(os.path.realpath(os.fspath(r)), "") for r in roots if r}
    return tuple(sorted(out))


def _package_dirs() -> list[str]:
    """Where the tessera packages live: the repo's source folders in an editable install, site-packages otherwise."""
    here = Path(__file__).resolve().parent  # services/, imported as `tessera`
    dirs = [str(here)]
    for name in ("tessera.embedder", "tessera.index", "tessera.v1"):
        try:
            spec = importlib.util.find_spec(name)  # imports `tessera` (this package), not the subpackage
        except (ImportError, ValueError):
            continue
        dirs += list(spec.submodule_search_locations or []) if spec else []
    return dirs


def _stack() -> list[str]:
    frames = []
    frame = sys._getframe(2)  # skip the hook and its dispatcher
    while frame is not None and len(frames) < STACK_FRAMES:
        code = frame.f_code
        frames.append(f"{Path(code.co_filename).name}:{frame.f_lineno}:{code.co_name}")
        frame = frame.f_back
    return frames


def install(
    log_path: str | os.PathLike[str], data_dir: str | os.PathLike[str], extra_roots: Iterable[str] = ()
) -> None:
    """Log every open outside the allowed roots to `log_path` (one JSON line each) from now on."""
    if _installed:
        return  # audit hooks cannot be removed; a second one would log every open twice
    roots = allowed_roots(data_dir, extra_roots)
    temp_root = os.path.join(os.path.realpath(tempfile.gettempdir()), "")  # probes the temp dir before the hook
    # Opened before the hook exists and written with os.write: logging never triggers the hook itself.
    fd = os.open(os.fspath(log_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    lock = threading.Lock()
    busy = threading.local()

    def hook(event: str, args: tuple) -> None:
        if event != "open":  # builtin open, io.open, io.open_code and os.open all raise "open"
            return
        if getattr(busy, "on", False):
            return
        busy.on = True
        try:
            path = args[0]
            if isinstance(path, int) or path is None:
                return  # an already-open descriptor
            path = os.fsdecode(os.fspath(path))
            real = os.path.realpath(path)  # a few lstat calls; resolved each time, so a swapped symlink counts
            if real.startswith(roots) or os.path.join(real, "") in roots:
                return
            mode = args[1] if len(args) > 1 else None
            flags = args[2] if len(args) > 2 else None
            if isinstance(flags, int) and flags & _EXCLUSIVE == _EXCLUSIVE and real.startswith(temp_root):
                return  # a new temp file (tempfile's writability probe, mkstemp): nothing existing is read
            record = {"path": path, "real": real, "event": event, "mode": mode, "flags": flags, "stack": _stack()}
            line = (json.dumps(record, default=repr) + "\n").encode("utf-8", "backslashreplace")
            with lock:
                os.write(fd, line)
        except Exception:
            pass  # never change what the audited code does
        finally:
            busy.on = False

    sys.addaudithook(hook)
    _installed.append(os.fspath(log_path))


def install_from_env(data_dir: str | os.PathLike[str]) -> bool:
    """Install the hook when TESSERA_AUDIT_OPENS names a file; whether it did."""
    log_path = os.environ.get(ENV)
    if not log_path:
        return False
    install(log_path, data_dir)
    return True
