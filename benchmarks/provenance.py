"""Where a benchmark figure came from: the commit measured and when."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def git_commit() -> str:
    """The code measured: HEAD, marked "+dirty" when the tree has uncommitted changes.

    Results files are left out of the check: a benchmark that writes one dataset's results
    before measuring the next must not mark its own later figures dirty.
    """
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        code_only = ["--", ".", ":!benchmarks/results"]
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", *code_only], cwd=REPO, capture_output=True
        )
    except OSError:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if head.returncode == 0 else "unknown"


def now_utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
