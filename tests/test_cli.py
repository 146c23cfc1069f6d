"""The `tessera` console script, run as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys


def _tessera(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "tessera.cli", *args], capture_output=True, text=True, timeout=300, env=env
    )


def test_help_explains_commands() -> None:
    result = _tessera("--help")
    assert result.returncode == 0
    assert "quickstart" in result.stdout and "spaces" in result.stdout


def test_quickstart_serves_fills_corpora_and_answers_queries() -> None:
    result = _tessera("quickstart")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "server on 127.0.0.1:" in out
    for modality in ("text", "image", "audio", "video", "vector"):
        assert f"\n  {modality} " in out
    assert "1.0000" in out
    for corpus, count in (("passages", 16), ("digit-images", 10), ("spoken-digits", 10)):
        assert re.search(rf"\n  {corpus} +\w+ +{count} items", out), out
    # The real MiniLM weights answer the text -> text query with an ANN-index passage.
    first_hit = out.split("text -> text")[1].splitlines()[1]
    assert "Inverted file indexes" in first_hit or "HNSW" in first_hit, first_hit
    assert "  digit-images  " in out.split("text -> image")[1].splitlines()[1]
    routed = out.split("routed, all corpora")[1].splitlines()[0]
    for corpus in ("passages", "digit-images", "spoken-digits"):
        assert corpus in routed
    # The default space is the shipped, trained `digits`: cross-modal queries find the seven.
    assert "space digits " in out and "untrained" not in out
    for title in ("text -> image", "audio -> image"):
        assert "image-7" in out.split(title)[1].splitlines()[1] or "digits/7.png" in out.split(title)[1].splitlines()[1]


def test_spaces_lists_builtins_and_weight_needs() -> None:
    result = _tessera("spaces")
    assert result.returncode == 0, result.stderr
    assert "minilm " in result.stdout and "ready" in result.stdout
    assert "needs weights" in result.stdout  # pretrained OpenCLIP tags are not cached offline


def test_unknown_space_is_a_clear_error_not_a_traceback() -> None:
    result = _tessera("quickstart", "--space", "nope")
    assert result.returncode == 2
    assert "unknown space 'nope'" in result.stderr and "Traceback" not in result.stderr


def test_serve_corpus_ingest_search_and_graceful_sigterm(tmp_path) -> None:
    import json
    import signal
    from pathlib import Path

    from tessera.index.wal import FILE_HEADER

    data = tmp_path / "data"
    server = subprocess.Popen(
        [sys.executable, "-m", "tessera.cli", "serve", "--data-dir", str(data), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stdout.readline()
        assert "tessera serving on" in line, server.stderr.read() if server.poll() is not None else line
        address = line.split(" on ")[1].split(" ")[0]
        created = _tessera("corpus", "create", "notes", "--space", "minilm", "--modality", "text", "--server", address)
        assert created.returncode == 0, created.stderr
        notes = tmp_path / "notes.jsonl"
        rows = [
            {"id": "a", "text": "The ferry leaves the harbour at dawn.", "metadata": {"kind": "travel"}},
            {"id": "b", "text": "Knead the dough for ten minutes.", "metadata": {"kind": "cooking"}},
        ]
        notes.write_text("\n".join(json.dumps(r) for r in rows))
        ingested = _tessera("ingest", "notes", str(notes), "--server", address)
        assert ingested.returncode == 0 and "upserted 2 items" in ingested.stdout, ingested.stderr
        found = _tessera("search", "boat departure", "--server", address, "--top-k", "1")
        assert found.returncode == 0 and "notes/a" in found.stdout, found.stderr
        missing = _tessera("corpus", "describe", "nope", "--server", address)
        assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
        listed = _tessera("corpus", "list", "--server", address)
        assert "notes" in listed.stdout and " 2 " in listed.stdout
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    # Graceful shutdown snapshotted the corpus: the log is empty and a snapshot holds both items.
    corpus_dir = Path(data) / "corpora" / "notes"
    assert list((corpus_dir / "snapshots").iterdir())
    assert (corpus_dir / "wal.log").stat().st_size == FILE_HEADER.size  # the header alone
