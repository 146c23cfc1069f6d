"""The `tessera` console script, run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys


def _tessera(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args], capture_output=True, text=True, timeout=300, env=env
    )


def test_help_explains_commands() -> None:
    result = _tessera("--help")
    assert result.returncode == 0
    assert "quickstart" in result.stdout and "spaces" in result.stdout


def test_quickstart_embeds_every_modality() -> None:
    result = _tessera("quickstart")
    assert result.returncode == 0, result.stderr
    for modality in ("text", "image", "audio", "video", "vector"):
        assert f"\n{modality} " in result.stdout
    assert "1.0000" in result.stdout
    # The real MiniLM weights put the spoken-number sentence first.
    first_hit = result.stdout.split("text search for")[1].splitlines()[1]
    assert "says the word seven" in first_hit


def test_spaces_lists_builtins_and_weight_needs() -> None:
    result = _tessera("spaces")
    assert result.returncode == 0, result.stderr
    assert "minilm " in result.stdout and "ready" in result.stdout
    assert "needs weights" in result.stdout  # pretrained OpenCLIP tags are not cached offline


def test_unknown_space_is_a_clear_error_not_a_traceback() -> None:
    result = _tessera("quickstart", "--space", "nope")
    assert result.returncode == 2
    assert "unknown space 'nope'" in result.stderr and "Traceback" not in result.stderr
