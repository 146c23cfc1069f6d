"""What `tessera ingest`, `search`, `rag` and `serve` say when things go right, go wrong, or find nothing.

The commands run in this process (`tessera.cli.main`) against a real server on 127.0.0.1,
on real files; `serve` runs as its own process, as a user starts it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from tessera.background import ServerThread
from tessera.cli import main
from tessera.client import Client

SAMPLES = Path(str(resources.files("services").joinpath("samples")))
SEVEN_PNG, SEVEN_WAV, CLIP_MP4 = SAMPLES / "digit_7.png", SAMPLES / "seven_george.wav", SAMPLES / "clip.mp4"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    running = ServerThread(tmp_path_factory.mktemp("outcomes")).start()
    with Client(running.address) as client:
        client.create_corpus("digit-images", space="digits", modality="image")
        images = [{"id": f"{d}.png", "path": SAMPLES / "digits" / f"{d}.png"} for d in range(10)]
        client.upsert("digit-images", images, modality="image")
    yield running
    running.stop()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _corpus(server: ServerThread, name: str, space: str = "minilm", modality: str = "text") -> None:
    with Client(server.address) as client:
        client.create_corpus(name, space=space, modality=modality)


def _write_jsonl(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


# ---- 1. every other field of a table row is metadata -------------------------------------------
def test_jsonl_and_csv_fields_besides_id_and_content_become_metadata(
    server: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _corpus(server, "fields")
    jsonl = _write_jsonl(
        tmp_path / "notes.jsonl",
        [
            {"id": "a", "text": "The ferry leaves at dawn.", "kind": "travel", "year": 2020},
            {"id": "b", "text": "Knead the dough.", "kind": "cooking", "year": 2021, "metadata": {"kind": "baking"}},
        ],
    )
    csv = tmp_path / "rows.csv"
    csv.write_text('id,text,kind,lang\nc,"Tides follow the moon, mostly.",science,en\nd,Oil the chain.,bikes,\n')
    for path in (jsonl, csv):
        code, out, err = _run(capsys, "ingest", "fields", str(path), "--server", server.address)
        assert code == 0, err
        assert "upserted 2 items into fields" in out
    with Client(server.address) as client:
        stored = {item["id"]: item for item in client.get("fields", ["a", "b", "c", "d"])}
        travel = client.search("boat", corpora=["fields"], filter={"kind": {"eq": "travel"}}).hits
    assert stored["a"]["metadata"] == {"kind": "travel", "year": 2020}
    assert stored["b"]["metadata"] == {"kind": "baking", "year": 2021}  # the metadata object wins a clash
    assert stored["c"]["metadata"] == {"kind": "science", "lang": "en"}
    assert stored["d"]["metadata"] == {"kind": "bikes"}  # CSV: an empty cell is no field
    assert stored["c"]["text"] == "Tides follow the moon, mostly."
    assert [h.id for h in travel] == ["a"]  # top-level fields are filterable
    with pytest.raises(SystemExit):
        main(["ingest", "--help"])
    help_text = capsys.readouterr().out
    assert "Every other top-level field becomes metadata" in help_text and "object merges in over them" in help_text


# ---- 2. bad input ends in an error naming the file, the line and the fix -----------------------
def test_missing_file_bad_json_and_missing_id_name_the_file_line_and_fix(
    server: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _corpus(server, "strict")
    monkeypatch.chdir(tmp_path)
    _write_jsonl(tmp_path / "broken.jsonl", [{"id": "a", "text": "fine"}, '{"id": "b", "text": "cut off",'])
    _write_jsonl(tmp_path / "noid.jsonl", [{"text": "who am I?"}])
    expected = {
        "missing.jsonl": "missing.jsonl: no such file or directory; give a folder, a .jsonl, .csv or .parquet file",
        "broken.jsonl": "broken.jsonl:2: not valid JSON (Expecting property name enclosed in double quotes",
        "noid.jsonl": "noid.jsonl:1: no 'id' field; every record needs an id (or name the id field with --id-column)",
    }
    for name, message in expected.items():
        code, _, err = _run(capsys, "ingest", "strict", name, "--server", server.address)
        assert code == 2, err
        assert f"tessera ingest: error: {message}" in err
        assert "Exception iterating requests" not in err and "UNKNOWN" not in err
    assert "pass --on-error skip" in err
    with Client(server.address) as client:
        assert client.describe_corpus("strict")["count"] == 0  # the bad line's message was never sent


# ---- 3. --on-error skip lists bad records and files; fail stops at the first -------------------
def test_on_error_skip_lists_bad_lines_and_files_and_fail_stops_at_the_first(
    server: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _corpus(server, "pictures", space="digits", modality="image")
    folder = tmp_path / "pictures"
    folder.mkdir()
    for digit in (1, 7):
        shutil.copy(SAMPLES / "digits" / f"{digit}.png", folder / f"{digit}.png")
    (folder / "garbage.png").write_bytes(b"this is not a PNG")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image, ignored by suffix")

    code, _, err = _run(capsys, "ingest", "pictures", str(folder), "--server", server.address)
    assert code == 2
    assert f"tessera ingest: error: {folder}/empty.jpg: the file is empty. Fix it and run again" in err

    errors = tmp_path / "bad.jsonl"
    args = ("--on-error", "skip", "--errors-file", str(errors), "--server", server.address)
    code, out, err = _run(capsys, "ingest", "pictures", str(folder), *args)
    assert code == 0, err
    assert out.splitlines() == [
        "upserted 2 items into pictures",
        f"  skipped 2 bad records or files, listed in {errors}",
        "  ignored 1 files with other suffixes (e.g. notes.txt)",
    ]
    listed = [json.loads(line) for line in errors.read_text().splitlines()]
    assert [(e["source"], e["line"]) for e in listed] == [
        (f"{folder}/empty.jpg", None),
        (f"{folder}/garbage.png", None),
    ]
    assert "not a readable image file" in listed[1]["error"]

    _corpus(server, "lines")
    table = _write_jsonl(
        tmp_path / "lines.jsonl",
        [{"id": "ok", "text": "a good line"}, "{not json", {"text": "no id"}, {"id": "v", "vector": "oops"}],
    )
    code, out, err = _run(capsys, "ingest", "lines", str(table), *args)
    assert code == 0, err
    assert out.splitlines()[:2] == [
        "upserted 1 items into lines",
        f"  skipped 3 bad records or files, listed in {errors}",
    ]
    listed = [json.loads(line) for line in errors.read_text().splitlines()]
    assert [(e["source"], e["line"]) for e in listed] == [(str(table), 2), (str(table), 3), (str(table), 4)]
    assert listed[1]["error"].startswith("no 'id' field")


# ---- 4. one rule for stored paths: absolute and resolved ----------------------------------------
def test_folder_ingest_and_ingest_from_store_the_same_absolute_paths(
    server: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "clips").mkdir()
    for digit in (3, 7):
        shutil.copy(SAMPLES / "spoken" / f"{digit}_jackson_0.wav", tmp_path / "clips" / f"{digit}.wav")
    _corpus(server, "clips-direct", space="digits", modality="audio")
    _corpus(server, "clips-from", space="digits", modality="audio")
    code, _, err = _run(capsys, "ingest", "clips-direct", "clips", "--server", server.address)  # a relative path
    assert code == 0, err
    code, _, err = _run(capsys, "embed", "clips", "clips-out", "--space", "digits", "--quiet")
    assert code == 0, err
    code, _, err = _run(capsys, "ingest", "--from", "clips-out", "--corpus", "clips-from", "--server", server.address)
    assert code == 0, err
    with Client(server.address) as client:
        direct = {i["id"]: i["uri"] for i in client.get("clips-direct", ["3.wav", "7.wav"])}
        loaded = {i["id"]: i["uri"] for i in client.get("clips-from", ["3.wav", "7.wav"])}
    wanted = {f"{d}.wav": str((tmp_path / "clips" / f"{d}.wav").resolve()) for d in (3, 7)}
    assert direct == loaded == wanted


# ---- 5. no hits says so -------------------------------------------------------------------------
def test_a_search_without_hits_says_where_it_looked(server: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    nothing = '{"path": {"eq": "no-such-file.png"}}'
    code, out, err = _run(
        capsys, "search", "a seven", "--space", "digits", "--corpus", "digit-images", "--filter", nothing,
        "--server", server.address,
    )  # fmt: skip
    assert code == 0, err
    assert out == "no hits in corpora digit-images matching --filter\n"


# ---- 6. a media file as the query -----------------------------------------------------------------
@pytest.mark.parametrize(("query", "modality"), [(SEVEN_PNG, "image"), (SEVEN_WAV, "audio"), (CLIP_MP4, "video")])
def test_a_media_file_query_is_embedded_as_its_modality(
    server: ServerThread, capsys: pytest.CaptureFixture[str], query: Path, modality: str
) -> None:
    code, out, err = _run(
        capsys, "search", str(query), "--space", "digits", "--corpus", "digit-images", "--top-k", "1",
        "--server", server.address,
    )  # fmt: skip
    assert code == 0, err
    with Client(server.address) as client:
        as_media = client.search([(modality, query.read_bytes())], space="digits", corpora=["digit-images"], top_k=1)
        as_text = client.search(str(query), space="digits", corpora=["digit-images"], top_k=1)
    top = as_media.hits[0]
    assert out.startswith(f"  1. digit-images/{top.id}  raw {top.raw_score:+.3f}  ")
    assert abs(as_text.hits[0].raw_score - top.raw_score) > 1e-3  # so the line above is not the text query's
    if modality in ("image", "audio"):
        assert top.id == "7.png"  # the trained digits space aligns a drawn and a spoken seven with the image


def test_a_media_path_that_does_not_exist_is_refused_not_searched_as_text(
    server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "search", "recordings/seven.wav", "--space", "digits", "--server", server.address)
    assert code == 2 and out == ""
    assert (
        "tessera search: error: 'recordings/seven.wav' looks like the path of an audio file (.wav), but there is "
        "no such file; give an existing file, or pass --modality text to search these words as text"
    ) in err
    code, out, err = _run(
        capsys, "search", "recordings/seven.wav", "--modality", "text", "--space", "digits",
        "--corpus", "digit-images", "--top-k", "1", "--server", server.address,
    )  # fmt: skip
    assert code == 0 and out.startswith("  1. digit-images/"), err


# ---- 7. serve writes JSON lines only ----------------------------------------------------------------
def test_serve_writes_only_json_lines_to_stderr_while_loading_models(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "tessera.cli", "serve", "--data-dir", str(tmp_path / "data"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = server.stdout.readline()
        assert "tessera serving on" in line, server.stderr.read() if server.poll() is not None else line
        address = line.split(" on ")[1].split(" ")[0]
        with Client(address) as client:  # loads MiniLM through sentence-transformers, and the digits towers
            assert client.embed(["a red bicycle"], space="minilm").shape == (1, 384)
            assert client.embed([SEVEN_PNG.read_bytes()], modality="image", space="digits").shape[0] == 1
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=60)
    assert server.returncode == 0, err
    lines = err.splitlines()
    records = [json.loads(line) for line in lines]  # every line, or this raises on the one that is not JSON
    assert all(isinstance(r, dict) and r.get("level") and r.get("logger") for r in records)
    assert any(r["logger"].startswith("sentence_transformers") for r in records)  # a model did load
    assert [r.get("event") for r in records][-2:] == ["shutting_down", "stopped"]


def test_the_json_log_turns_warnings_bars_and_stray_text_into_json_lines() -> None:
    script = (
        "import sys, warnings\n"
        "from tessera.logs import configure\n"
        "from tqdm import tqdm\n"
        "configure()\n"
        "warnings.warn('a library warning')\n"
        "print('plain text from a library', file=sys.stderr)\n"
        "for _ in tqdm(range(3), desc='a bar'): pass\n"
        "raise RuntimeError('boom')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert records[0]["logger"] == "py.warnings" and "a library warning" in records[0]["message"]
    assert records[1] == {**records[1], "logger": "stderr", "message": "plain text from a library"}
    assert any("a bar" in r.get("message", "") for r in records[2:-1])
    assert records[-1]["message"] == "uncaught exception" and "RuntimeError: boom" in records[-1]["error"]


# ---- 8. bad --filter JSON names the flag ------------------------------------------------------------
@pytest.mark.parametrize("command", ["search", "rag"])
def test_invalid_filter_json_names_the_flag_and_shows_the_input(
    server: ServerThread, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    bad = "{year: 2020, " + "kind: " * 30 + "}"
    code, out, err = _run(capsys, command, "ferries", "--filter", bad, "--server", server.address)
    assert code == 2 and out == ""
    assert err == (
        f"tessera {command}: error: --filter is not valid JSON (Expecting property name enclosed in double quotes "
        f"at column 2): {bad[:77]}...\n"
    )


# ---- 9. rag takes --corpus NAME, repeatable, and keeps the question -------------------------------
def test_rag_corpus_option_is_repeatable_and_leaves_the_question_alone(
    server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    _corpus(server, "handbook")
    _corpus(server, "faq")
    with Client(server.address) as client:
        client.upsert("handbook", [{"id": "keys", "text": "Rotate the API keys every ninety days."}])
        client.upsert("faq", [{"id": "tea", "text": "The kitchen has green tea."}])
    question = "how do I rotate the API keys?"
    code, out, err = _run(
        capsys, "rag", "--corpus", "handbook", "--corpus", "faq", question, "--format", "json",
        "--server", server.address,
    )  # fmt: skip
    assert code == 0, err
    context = json.loads(out)
    assert context["question"] == question and sorted(context["searched"]) == ["faq", "handbook"]
    assert {p["id"] for p in context["passages"]} == {"keys", "tea"}  # one hit from each corpus named
    code, out, err = _run(
        capsys, "rag", "--corpora", "handbook", question, "--format", "json", "--server", server.address
    )
    assert code == 0 and json.loads(out)["searched"] == ["handbook"]
    assert "--corpora is deprecated; use --corpus NAME (repeatable)" in err
