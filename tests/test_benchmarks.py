"""The benchmark scripts run end to end on a small input and write the documented JSON keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_embed_throughput_small_run_writes_ratio(tmp_path: Path) -> None:
    out = tmp_path / "embed_throughput.json"
    cmd = [sys.executable, "-m", "benchmarks.embed_throughput", "--n", "64", "--batch-size", "16", "--rounds", "1"]
    result = subprocess.run([*cmd, "--device", "cpu", "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["n"] == 64 and data["device"] == "cpu"
    assert data["raw_items_per_s"] > 0 and data["tessera_items_per_s"] > 0
    assert abs(data["ratio"] - data["tessera_items_per_s"] / data["raw_items_per_s"]) < 0.01
    assert data["min_cosine_vs_raw"] >= 0.9999


def test_recorded_results_meet_the_bar() -> None:
    recorded = json.loads((REPO / "benchmarks" / "results" / "embed_throughput.json").read_text())
    assert recorded["n"] == 10_000 and recorded["ratio"] >= 0.95
