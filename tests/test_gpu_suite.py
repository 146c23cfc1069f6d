"""The GPU suite's dry run: every part's code path at tiny sizes on the CPU, with sane figures in the JSON.

What the figures say about a GPU is for the real run (benchmarks/results/gpu_suite.json); here the
point is that the one command a lent GPU machine gets has run end to end before device time is spent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PARTS = {"faiss", "encoders", "micro_batching", "batch_embed"}


def test_dry_run_writes_every_part_with_sane_figures(tmp_path: Path) -> None:
    out = tmp_path / "gpu_suite.json"
    cmd = [sys.executable, "-m", "benchmarks.gpu_suite", "--dry-run", "--out", str(out)]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["dry_run"] is True and data["device"] == "cpu"
    assert data["commit"] and data["measured_at"].endswith("Z")
    assert set(data["parts"]) == PARTS
    for name, part in data["parts"].items():
        assert part["error"] is None, (name, part["error"])
        assert part["seconds"] > 0 and part["budget_s"] > 0 and isinstance(part["within_budget"], bool)
        assert part["commit"] == data["commit"] and part["measured_at"]

    faiss = data["parts"]["faiss"]
    rows = {row["factory"]: row for row in faiss["rows"]}
    assert list(rows) == ["Flat", "IVF16,Flat", "IVF16,PQ8x4"]
    for row in rows.values():
        assert "error" not in row and "skipped" not in row, row
        assert row["n"] == 5000 and row["dim"] == 384
        assert 0.0 <= row["recall_at_10"] <= 1.0 and 0.0 <= row["raw_recall_at_10"] <= 1.0
        for key in ("raw_qps_single", "qps_single", "raw_qps_batch", "qps_batch", "ratio_single", "ratio_batch"):
            assert row[key] > 0, (row["factory"], key)
        assert row["ratio_single"] == row["raw_qps_single"] / row["qps_single"]
        assert row["raw_build_s"] > 0 and row["tessera_build_s"] >= row["tessera_ingest_s"] > 0
        assert row["ratio_single_bar"]["met"] == (row["ratio_single"] <= 1.10)
        # faiss CPU here: the corpus asked for the GPU and says why it did not get one.
        assert row["raw_on_gpu"] is False and row["tessera_on_gpu"] is False
    flat = rows["Flat"]
    assert flat["same_ids"] is True and flat["same_ids_as_cpu"] == flat["raw_same_ids_as_cpu"] == 1.0
    assert flat["recall_at_10"] == flat["raw_recall_at_10"] == 1.0  # exact is exact, both ways
    assert rows["IVF16,Flat"]["tessera_searching"] == "IVF16,Flat"
    assert rows["IVF16,Flat"]["tessera_gpu_note"] == "faiss sees no GPU"
    assert rows["IVF16,Flat"]["tessera_nprobe_via"] == "search(nprobe=...)"
    # The same FAISS index type underneath, trained on the same vectors: recall agrees closely.
    assert abs(rows["IVF16,Flat"]["recall_at_10"] - rows["IVF16,Flat"]["raw_recall_at_10"]) <= 0.05

    encoders = data["parts"]["encoders"]["rows"]
    assert [(r["space"], r["modality"]) for r in encoders] == [
        ("minilm", "text"),
        ("openclip:ViT-B-32/random", "text"),
        ("openclip:ViT-B-32/random", "image"),
    ]
    for row in encoders:
        assert "error" not in row, row
        assert row["items_per_s"] > 0 and row["cpu_items_per_s"] > 0 and row["speedup_vs_cpu"] > 0
        assert row["min_cosine_vs_cpu"] >= 0.999 and row["cosine_bar"]["met"] is True

    batching = data["parts"]["micro_batching"]
    assert batching["concurrent_calls"] == 32 and batching["calls"] > 0
    assert batching["batching_on_qps"] > 0 and batching["batching_off_qps"] > 0 and batching["ratio"] > 0
    assert batching["model_ceiling_ratio"] > 0 and batching["ratio_bar"]["bar"] == 4.0

    embed = data["parts"]["batch_embed"]
    assert embed["texts"] > 0 and embed["raw_items_per_s"] > 0 and embed["tessera_items_per_s"] > 0
    assert embed["ratio"] > 0 and embed["min_cosine_vs_raw"] >= 0.999 and embed["ratio_bar"]["bar"] == 0.90

    # Every bar is also in one flat list, each with a met flag; the suite-time bar is the GPU run's.
    bars = data["bars"]
    assert bars and all(isinstance(b["met"], bool) and b["op"] in ("<=", ">=") for b in bars)
    assert {b["part"] for b in bars} == PARTS


def test_dry_run_by_default_writes_an_ignored_file_not_the_results() -> None:
    from benchmarks.gpu_suite import DRY_RUN_OUT, RESULTS

    assert DRY_RUN_OUT != RESULTS
    ignored = subprocess.run(["git", "check-ignore", "-q", str(DRY_RUN_OUT)], cwd=REPO)
    assert ignored.returncode == 0, f"{DRY_RUN_OUT} is not ignored by git"
