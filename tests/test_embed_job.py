"""`tessera embed` on real data: parity with Space.embed, SIGKILL and resume, Ray, bad items, ingest --from."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from benchmarks.text_corpus import real_sentences
from tessera.embed_job import (
    BadItemError,
    EmbedOptions,
    InputError,
    OutputMismatchError,
    read_output_metadata,
    run_embed,
)
from tests.conftest import FSDD

REPO = Path(__file__).resolve().parents[1]


def _read(out: Path) -> tuple[list[str], np.ndarray, pa.Table]:
    table = pq.read_table(out)
    dim = table.schema.field("vector").type.list_size
    vectors = table.column("vector").combine_chunks().flatten().to_numpy().reshape(-1, dim)
    return table.column("id").to_pylist(), vectors, table


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tessera.cli", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return real_sentences(2000)


@pytest.fixture(scope="module")
def text_parquet(tmp_path_factory: pytest.TempPathFactory, texts: list[str]) -> Path:
    path = tmp_path_factory.mktemp("inputs") / "docs.parquet"
    table = pa.table({"doc_id": [f"doc-{i:04d}" for i in range(len(texts))], "text": texts, "n": range(len(texts))})
    pq.write_table(table, path, row_group_size=300)  # row groups that do not line up with the parts
    return path


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, text_parquet: Path) -> Path:
    out = tmp_path_factory.mktemp("runs") / "whole"
    summary = run_embed(
        EmbedOptions(text_parquet, out, id_column="doc_id", part_rows=200, device="cpu"), progress=False
    )
    assert summary.embedded == 2000 and summary.failed == 0 and summary.resumed == 0
    return out


def test_text_parquet_matches_space_embed(uninterrupted: Path, texts: list[str], minilm_space) -> None:
    ids, vectors, table = _read(uninterrupted)
    assert ids == [f"doc-{i:04d}" for i in range(2000)]
    assert table.column("n").to_pylist() == list(range(2000))  # pass-through, in input order
    assert table.column("text").to_pylist() == texts  # text rides along for the corpus to show
    reference = minilm_space.embed("text", texts)
    cosines = (vectors * reference).sum(axis=1)
    assert cosines.min() >= 0.9999, cosines.min()
    meta = read_output_metadata(uninterrupted)
    assert meta["space"] == minilm_space.id and meta["dim"] == "384" and meta["modality"] == "text"
    assert table.schema.field("vector").type == pa.list_(pa.float32(), 384)
    manifest = json.loads((uninterrupted / "_manifest.json").read_text())
    assert manifest["complete"] and manifest["num_parts"] == 10 and manifest["rows"] == 2000


def test_fsdd_folder_with_worker_processes_matches_space_embed(tmp_path: Path) -> None:
    from tessera.embedder import load_space

    summary = run_embed(EmbedOptions(FSDD, tmp_path / "fsdd", space="digits", workers=1, device="cpu"), progress=False)
    ids, vectors, _ = _read(tmp_path / "fsdd")
    assert summary.embedded == 2500 and len(ids) == 2500 and len(set(ids)) == 2500
    assert ids == sorted(p.name for p in FSDD.glob("*.wav"))
    space = load_space("digits", device="cpu")
    reference = space.embed("audio", [(FSDD / i).read_bytes() for i in ids])
    cosines = (vectors * reference).sum(axis=1)
    assert cosines.min() >= 0.9999, cosines.min()
    assert read_output_metadata(tmp_path / "fsdd")["modality"] == "audio"


def test_sigkill_halfway_then_resume_gives_every_id_once_with_the_same_vectors(
    tmp_path: Path, text_parquet: Path, uninterrupted: Path
) -> None:
    out = tmp_path / "killed"
    args = ("embed", str(text_parquet), str(out), "--id-column", "doc_id", "--part-rows", "200", "--device", "cpu")
    run = _cli(*args, "--quiet")
    manifest = out / "_manifest.json"
    deadline = time.monotonic() + 240
    done = 0
    while time.monotonic() < deadline and run.poll() is None:
        if manifest.exists():
            done = len(json.loads(manifest.read_text())["parts"])
            if done >= 4:
                break
        time.sleep(0.05)
    assert run.poll() is None, f"the run ended before it could be killed: {run.communicate()}"
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    killed = json.loads(manifest.read_text())
    assert 4 <= len(killed["parts"]) < 10 and not killed["complete"]

    resumed = _cli(*args)
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert f"skipped {killed['rows']:,} already written" in stdout
    ids, vectors, _ = _read(out)
    whole_ids, whole_vectors, _ = _read(uninterrupted)
    assert len(ids) == len(set(ids)) == 2000
    assert ids == whole_ids
    np.testing.assert_allclose(vectors, whole_vectors, atol=1e-6)
    assert not list(out.glob("*.tmp"))


def test_ray_engine_gives_the_same_ids_and_vectors_as_local(tmp_path: Path, texts: list[str]) -> None:
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps({"text": t, "lang": "en"}) + "\n" for t in texts[:1000]))
    local = run_embed(EmbedOptions(source, tmp_path / "local", part_rows=250, device="cpu"), progress=False)
    ray = run_embed(
        EmbedOptions(source, tmp_path / "ray", part_rows=250, device="cpu", engine="ray", overwrite=True),
        progress=False,
    )
    assert local.embedded == ray.embedded == 1000 and ray.engine == "ray"
    local_ids, local_vectors, _ = _read(tmp_path / "local")
    ray_ids, ray_vectors, ray_table = _read(tmp_path / "ray")
    assert ray_ids == local_ids == [str(i) for i in range(1000)]
    assert (local_vectors * ray_vectors).sum(axis=1).min() >= 0.9999
    np.testing.assert_allclose(ray_vectors, local_vectors, atol=1e-5)
    assert ray_table.schema.metadata == pq.read_schema(next((tmp_path / "local").glob("part-*"))).metadata


def _folder_with_bad_files(root: Path) -> tuple[Path, set[str]]:
    folder = root / "clips"
    folder.mkdir()
    for digit in range(10):
        for speaker in ("george", "jackson", "lucas", "theo"):
            shutil.copy(FSDD / f"{digit}_{speaker}_0.wav", folder)
    good = (FSDD / "3_nicolas_0.wav").read_bytes()
    bad = {
        "0_empty.wav": b"",
        "1_text.wav": b"this is not audio at all\n",
        "5_noise.wav": np.random.default_rng(0).bytes(4000),
        "7_header_only.wav": good[:36],
        "9_png_named_wav.wav": (REPO / "services" / "samples" / "digit_7.png").read_bytes(),
    }
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    return folder, set(bad)


def test_bad_items_skip_lists_exactly_the_bad_files_and_fail_names_the_first(tmp_path: Path) -> None:
    folder, bad = _folder_with_bad_files(tmp_path)
    summary = run_embed(
        EmbedOptions(folder, tmp_path / "skip", space="digits", on_error="skip", workers=0), progress=False
    )
    ids, vectors, _ = _read(tmp_path / "skip")
    assert summary.embedded == 40 and summary.failed == 5
    assert sorted(ids) == sorted(p.name for p in folder.iterdir() if p.name not in bad)
    assert np.isfinite(vectors).all()
    errors = [json.loads(line) for line in (tmp_path / "skip" / "_errors.jsonl").read_text().splitlines()]
    assert {e["id"] for e in errors} == bad and len(errors) == 5
    assert all(e["reason"] and e["source"].endswith(e["id"]) for e in errors)

    run = _cli("embed", str(folder), str(tmp_path / "fail"), "--space", "digits", "--quiet")
    _, stderr = run.communicate(timeout=300)
    first_bad = sorted(p.name for p in folder.iterdir())
    first_bad_name = next(name for name in first_bad if name in bad)
    assert run.returncode != 0
    assert first_bad_name in stderr and "--on-error skip" in stderr and "Traceback" not in stderr
    with pytest.raises(BadItemError, match=r"0_empty\.wav"):
        run_embed(EmbedOptions(folder, tmp_path / "fail2", space="digits", workers=0), progress=False)


def test_jsonl_csv_and_parquet_give_the_same_rows(tmp_path: Path, texts: list[str], minilm_space) -> None:
    rows = [{"text": t, "topic": f"t{i % 3}"} for i, t in enumerate(texts[:60])]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pcsv.write_csv(pa.Table.from_pylist(rows), tmp_path / "a.csv")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    outputs = {}
    for suffix in ("jsonl", "csv", "parquet"):
        run_embed(EmbedOptions(tmp_path / f"a.{suffix}", tmp_path / f"out-{suffix}", part_rows=25), progress=False)
        outputs[suffix] = _read(tmp_path / f"out-{suffix}")
    for suffix, (ids, vectors, table) in outputs.items():
        assert ids == [str(i) for i in range(60)], suffix
        assert table.column("topic").to_pylist() == [r["topic"] for r in rows], suffix
        np.testing.assert_allclose(vectors, outputs["parquet"][1], atol=1e-6)
    assert (outputs["csv"][1] * minilm_space.embed("text", texts[:60])).sum(axis=1).min() >= 0.9999


def test_a_different_job_is_refused_and_overwrite_replaces_it(tmp_path: Path, texts: list[str]) -> None:
    source = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": texts[:20]}), source)
    out = tmp_path / "out"
    run_embed(EmbedOptions(source, out), progress=False)
    with pytest.raises(OutputMismatchError, match="differs in: space"):
        run_embed(EmbedOptions(source, out, space="digits"), progress=False)
    pq.write_table(pa.table({"text": texts[20:45]}), source)  # the input changed under the output
    with pytest.raises(OutputMismatchError, match="input_fingerprint"):
        run_embed(EmbedOptions(source, out), progress=False)
    assert run_embed(EmbedOptions(source, out, overwrite=True), progress=False).embedded == 25
    assert len(_read(out)[0]) == 25
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(OutputMismatchError, match="not a `tessera embed` output"):
        run_embed(EmbedOptions(source, tmp_path / "mine", overwrite=True), progress=False)
    assert (tmp_path / "mine" / "notes.txt").exists()
    with pytest.raises(InputError, match="--column"):
        run_embed(EmbedOptions(source, tmp_path / "x", column="body"), progress=False)


def test_ingest_from_loads_vectors_and_refuses_another_space(tmp_path: Path, uninterrupted: Path) -> None:
    from tessera.background import ServerThread
    from tessera.client import Client

    server = ServerThread(tmp_path / "data").start()
    try:
        with Client(server.address) as client:
            client.create_corpus("docs", space="minilm", modality="text")
            client.create_corpus("pictures", space="digits", modality="image")
        env = {**os.environ, "TESSERA_SERVER": server.address}
        run = _cli("ingest", "--from", str(uninterrupted), "--corpus", "docs", env=env)
        stdout, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr
        assert "upserted 2,000 items into docs" in stdout
        ids, vectors, table = _read(uninterrupted)
        with Client(server.address) as client:
            assert client.describe_corpus("docs")["count"] == 2000
            stored = client.get("docs", [ids[123]], include_vectors=True)[0]
            np.testing.assert_allclose(stored["vector"], vectors[123], atol=1e-6)
            assert stored["text"] == table.column("text")[123].as_py()
            assert stored["metadata"]["n"] == 123
            hits = client.search(
                [("text", table.column("text")[123].as_py())], space="minilm", corpora=["docs"], top_k=1
            ).hits
            assert hits[0].id == ids[123]
        run = _cli("ingest", "--from", str(uninterrupted), "--corpus", "pictures", env=env)
        _, stderr = run.communicate(timeout=300)
        assert run.returncode != 0
        assert "space minilm@all-MiniLM-L6-v2" in stderr and "digits" in stderr and "Traceback" not in stderr
        with Client(server.address) as client:
            assert client.describe_corpus("pictures")["count"] == 0
    finally:
        server.stop()
