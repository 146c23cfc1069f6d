"""Structured logs: one JSON object per line, so log shippers need no parsing rules.

`configure()` makes a process's stderr JSON lines only (`tessera serve` calls it):
the root logger writes JSON; progress bars of the model libraries are turned off
(transformers draws one while it loads weights); Python warnings and uncaught
exceptions become log records; and whatever else writes text to `sys.stderr` has
each of its lines wrapped into a JSON record of logger "stderr".
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
import threading
import time
from typing import IO, Any


class JsonFormatter(logging.Formatter):
    """`log.info({"event": ...})` merges the dict into the line; a plain message goes under "message"."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if isinstance(record.msg, dict):
            line.update(record.msg)
        else:
            line["message"] = record.getMessage()
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class JsonLinesStderr(io.TextIOBase):
    """A stand-in for sys.stderr: JSON object lines pass through, any other line becomes one.

    Carriage returns end a line too, so a progress bar that slipped through yields records,
    not a line of control characters.
    """

    def __init__(self, target: IO[str], formatter: logging.Formatter) -> None:
        self.target, self.formatter = target, formatter
        self._pending = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            *lines, self._pending = re.split(r"[\r\n]", self._pending + text)
            for line in lines:
                self._emit(line)
        return len(text)

    def _emit(self, line: str) -> None:
        if not line.strip():
            return
        if not _is_json_object(line):
            record = logging.LogRecord("stderr", logging.WARNING, __file__, 0, line.rstrip(), None, None)
            line = self.formatter.format(record)
        self.target.write(line + "\n")
        self.target.flush()

    def flush(self) -> None:
        self.target.flush()

    def close(self) -> None:  # the process's stderr stays open
        with self._lock:
            if self._pending:
                self._emit(self._pending)
                self._pending = ""
        self.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.target.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.target, "encoding", "utf-8")


def _is_json_object(line: str) -> bool:
    if not line.lstrip().startswith("{"):
        return False
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _no_progress_bars() -> None:
    """Model libraries draw tqdm bars on stderr (transformers: "Loading weights"); not in a JSON log."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read when huggingface_hub / transformers import
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()


def configure(level: int = logging.INFO) -> None:
    """Send every log record, warning, uncaught exception and stray stderr line out as one JSON line."""
    target = sys.stderr.target if isinstance(sys.stderr, JsonLinesStderr) else sys.stderr
    formatter = JsonFormatter()
    handler = logging.StreamHandler(target)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)
    _no_progress_bars()
    sys.stderr = JsonLinesStderr(target, formatter)
    crash = logging.getLogger("tessera.crash")
    sys.excepthook = lambda kind, exc, tb: crash.critical("uncaught exception", exc_info=(kind, exc, tb))
    threading.excepthook = lambda args: crash.critical(
        {"event": "uncaught exception in a thread", "thread": getattr(args.thread, "name", None)},
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )
