"""The benchmark scripts run end to end on a small input and write the documented JSON keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_embed_throughput_small_run_writes_ratio(tmp_path: Path) -> None:
    out = tmp_path / "embed_throughput.json"
    cmd = [sys.executable, "-m", "benchmarks.embed_throughput", "--n", "64", "--batch-size", "16", "--rounds", "1"]
    cmd += ["--single-calls", "3", "--tower-n", "16"]
    result = subprocess.run([*cmd, "--device", "cpu", "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["n"] == 64 and data["device"] == "cpu"
    assert data["raw_items_per_s"] > 0 and data["tessera_items_per_s"] > 0
    raw, ours = data["raw_items_per_s"], data["tessera_items_per_s"]
    # Both rates are rounded to 0.1 items/s, which on a busy machine (a few items/s) moves their
    # quotient by more than the ratio's own rounding.
    slack = 0.05 / raw + 0.05 * ours / raw**2 + 0.001
    assert abs(data["ratio"] - ours / raw) <= slack
    assert data["min_cosine_vs_raw"] >= 0.9999
    assert data["inference"] == "onnx"  # the CPU default
    assert abs(data["single_speedup"] - data["single_raw_ms"] / data["single_tessera_ms"]) < 0.01
    for tower in ("image", "audio"):
        assert data[f"{tower}_min_cosine_onnx_vs_torch"] >= 0.9999 and data[f"{tower}_speed_ratio"] > 0
    assert data["commit"] and data["measured_at"]


def test_recorded_results_meet_the_bar() -> None:
    recorded = json.loads((REPO / "benchmarks" / "results" / "embed_throughput.json").read_text())
    assert recorded["n"] == 10_000 and recorded["inference"] == "onnx"
    assert recorded["ratio"] >= 1.6 and recorded["min_cosine_vs_raw"] >= 0.9999  # batch, against raw encode
    assert recorded["single_speedup"] >= 2.0  # one 8-word query
    for tower in ("image", "audio"):  # the digits CNN towers, ONNX Runtime against torch
        assert recorded[f"{tower}_min_cosine_onnx_vs_torch"] >= 0.9999


def test_index_bench_small_run_compares_against_raw_faiss(tmp_path: Path) -> None:
    out = tmp_path / "index_bench.json"
    cmd = [sys.executable, "-m", "benchmarks.index_bench", "--sizes", "3000", "--indexes", "Flat", "HNSW32"]
    cmd += ["--rounds", "2", "--min-seconds", "0.2", "--data", "synthetic", "--out", str(out)]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    flat, hnsw = data["runs"]
    assert flat["recall_at_10"] == 1.0 and flat["raw_recall_at_10"] == 1.0  # exact is exact, both ways
    assert hnsw["recall_at_10"] == hnsw["raw_recall_at_10"]  # the same FAISS index underneath
    for row in data["runs"]:
        assert row["qps_1t"] > 0 and row["ratio_1t"] == row["raw_qps_1t"] / row["qps_1t"]
    assert flat["qps_rounds"] == 2
    batched = data["batched_exact"][0]
    assert batched["same_ids_as_faiss"] > 0.99 and batched["limit_s"] > 0


def test_recorded_index_and_routing_results_meet_the_bars() -> None:
    index = json.loads((REPO / "benchmarks" / "results" / "index_bench.json").read_text())
    assert {r["n"] for r in index["runs"]} == {100_000, 1_000_000}
    assert {r["index"] for r in index["runs"]} == {"Flat", "HNSW32", "IVF-PQ"}
    assert index["max_ratio"] <= 1.10
    for batched in index["batched_exact"]:
        assert batched["ratio_tessera_to_limit"] <= 1.5 and batched["speedup_vs_faiss"] > 1.0
    routing = json.loads((REPO / "benchmarks" / "results" / "routing_bench.json").read_text())
    methods = routing["methods"]
    assert methods["calibrated"]["ndcg_at_10"] > methods["mixed_raw"]["ndcg_at_10"]


def test_service_bench_small_run_measures_grpc_against_in_process(tmp_path: Path) -> None:
    out = tmp_path / "service_bench.json"
    cmd = [sys.executable, "-m", "benchmarks.service_bench", "--n", "2000", "--queries", "64", "--embed-calls", "32"]
    cmd += ["--skip-text"]  # measured on its own below
    result = subprocess.run(
        [*cmd, "--data", "synthetic", "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert [r["concurrency"] for r in data["search"]["rows"]] == [1, 8, 32]
    for row in data["search"]["rows"]:
        assert row["grpc_qps"] > 0 and row["grpc_p99_ms"] >= row["grpc_p50_ms"] > 0
        assert abs(row["ratio"] - row["local_qps"] / row["grpc_qps"]) < 1e-9
    embed = data["embed"]
    assert embed["batching_on_mean_batch_size"] > 1  # concurrent calls really were merged
    assert abs(embed["ratio"] - embed["batching_on_qps"] / embed["batching_off_qps"]) < 1e-9
    assert embed["model_ceiling_ratio"] == embed["model_batch32_items_per_s"] / embed["model_batch1_items_per_s"]
    assert abs(embed["share_of_ceiling"] - embed["ratio"] / embed["model_ceiling_ratio"]) < 1e-9
    search_before = data["search"]
    http = data["http_search"]  # the same searches over HTTP/JSON and gRPC, one server, one run
    assert [r["concurrency"] for r in http["rows"]] == [1, 16] and all(r["http_qps"] > 0 for r in http["rows"])

    # --skip-search re-measures only the embed part and keeps the search part already in the file.
    again = subprocess.run(
        [*cmd, "--skip-search", "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr
    merged = json.loads(out.read_text())
    assert merged["search"] == search_before and merged["http_search"] == http
    assert merged["embed"]["measured_at"] >= embed["measured_at"]


def test_recorded_service_results_cover_the_documented_runs() -> None:
    data = json.loads((REPO / "benchmarks" / "results" / "service_bench.json").read_text())
    assert data["search"]["n"] == 100_000 and data["search"]["index"] == "HNSW32"
    assert [r["concurrency"] for r in data["search"]["rows"]] == [1, 8, 32]
    # Micro-batching with torch paid for itself; the 4x is not met on 2 CPU cores (README).
    torch_run, onnx_run = data["embed_torch"], data["embed"]
    assert torch_run["concurrent_calls"] == 32 and torch_run["ratio"] > 1.0
    # The recorded server ratio is within reach of what the model itself gains from batching here.
    assert torch_run["share_of_ceiling"] > 0.8
    # With ONNX Runtime (the CPU default) the server reaches 90% of what the model gains from batching (#21).
    assert "ONNX Runtime" in onnx_run["inference"] and onnx_run["max_wait_ms"] == 0.0 and onnx_run["rounds"] >= 3
    assert abs(onnx_run["share_of_ceiling"] - onnx_run["ratio"] / onnx_run["model_ceiling_ratio"]) < 1e-9
    assert onnx_run["share_of_ceiling"] >= 0.9 and onnx_run["batching_on_mean_batch_size"] > 1
    text = data["text_search"]  # end-to-end text search against the hand-written loop
    assert text["ratio_c1"] >= 1.5 and text["ratio_c16"] >= 3.0
    assert text["ratio_c16"] == text["grpc_c16_qps"] / text["loop_qps"]
    assert text["grpc_c16_mean_batch_size"] > 1  # the 16 clients' queries were embedded in shared batches
    # Search over HTTP/JSON costs at most 1.5x a gRPC call, at 1 and 16 clients (tessera.http).
    assert [r["concurrency"] for r in data["http_search"]["rows"]] == [1, 16]
    assert data["http_search"]["worst_http_cost_ratio"] <= 1.5


def test_service_bench_text_search_small_run_compares_with_the_hand_written_loop(tmp_path: Path) -> None:
    out = tmp_path / "service_bench.json"
    cmd = [sys.executable, "-m", "benchmarks.service_bench", "--text-only", "--text-n", "200", "--text-queries", "16"]
    result = subprocess.run([*cmd, "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    text = json.loads(out.read_text())["text_search"]
    assert text["n"] == 200 and text["queries"] == 16 and text["query_words"] == 8
    assert text["top10_agreement_first_query"] >= 0.9  # both sides search the same vectors
    for clients in (1, 16):
        assert text[f"grpc_c{clients}_qps"] > 0
        assert text[f"ratio_c{clients}"] == text[f"grpc_c{clients}_qps"] / text["loop_qps"]
        # Every search embeds its one text through the micro-batcher: at least one text per model batch.
        assert text[f"grpc_c{clients}_mean_batch_size"] >= 1.0
    assert text["grpc_c1_mean_batch_size"] == 1.0  # one client never has a second call to merge
    assert text["commit"] and text["measured_at"]


def test_milvus_backend_small_run_compares_tessera_over_milvus_with_raw_pymilvus(tmp_path: Path) -> None:
    out = tmp_path / "milvus_backend.json"
    cmd = [sys.executable, "-m", "benchmarks.milvus_backend", "--n", "2000", "--queries", "30", "--rounds", "1"]
    result = subprocess.run([*cmd, "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["n"] == 2000 and data["queries"] == 30 and data["commit"] and data["measured_at"]
    for name in ("raw", "tessera-grpc", "tessera-inprocess", "local-grpc"):
        row = data["systems"][name]
        assert row["recall_at_10"] >= 0.8 and row["qps_1c"] > 0 and row["qps_8c"] > 0, name  # HNSW16, 2k
    assert data["ratio"] == data["systems"]["raw"]["qps_1c"] / data["systems"]["tessera-grpc"]["qps_1c"]
    for side in ("raw", "tessera", "local"):
        assert data["ingest"][side]["ingest_per_s"] > 0


def test_recorded_milvus_backend_results_meet_the_bar() -> None:
    data = json.loads((REPO / "benchmarks" / "results" / "milvus_backend.json").read_text())
    assert data["n"] == 100_000 and data["commit"] and data["measured_at"]
    assert data["overhead_ratio_inprocess_1c"] <= 1.10 and data["overhead_ratio_grpc_1c"] <= 1.10
    assert data["ingest"]["tessera"]["ingest_per_s"] > 0 and data["ingest"]["local"]["ingest_per_s"] > 0


def test_alignment_digits_small_run_trains_and_scores_a_fold(tmp_path: Path) -> None:
    out = tmp_path / "alignment_digits.json"
    cmd = [sys.executable, "-m", "benchmarks.alignment_digits", "--losses", "clip", "--speakers", "theo"]
    cmd += ["--epochs", "1", "--jobs", "1", "--out", str(out)]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    (fold,) = data["per_fold"]
    assert fold["loss"] == "clip" and fold["test_speaker"] == "theo"
    for key in ("audio_to_text_accuracy", "image_to_text_accuracy", "audio_to_image_r1", "image_to_audio_r1"):
        assert 0.0 <= fold[key] <= 1.0
    assert data["best_loss"] == "clip" and data["losses"][0]["folds"] == 1


def test_recorded_alignment_results_cover_every_loss_and_speaker() -> None:
    data = json.loads((REPO / "benchmarks" / "results" / "alignment_digits.json").read_text())
    assert [row["loss"] for row in data["losses"]] == ["clip", "anchored", "gram", "symile"]
    assert len(data["per_fold"]) == 20 and {f["test_speaker"] for f in data["per_fold"]} == {
        "george",
        "jackson",
        "lucas",
        "nicolas",
        "theo",
    }
    best = max(data["losses"], key=lambda row: row["audio_to_text_accuracy_mean"])
    assert data["best_loss"] == best["loss"] and data["shipped"]["loss"] == best["loss"]
    assert data["best_audio_to_text_accuracy_mean"] == best["audio_to_text_accuracy_mean"]
    assert data["bar_audio_to_text_accuracy"] == 0.85 and best["audio_to_text_accuracy_mean"] >= 0.85
    assert all(row["train_seconds_max"] < 600 for row in data["losses"])  # every run within the 10-minute budget


def test_alignment_higher_order_small_run_scores_composites_with_the_loss_similarity(tmp_path: Path) -> None:
    out = tmp_path / "higher_order.json"
    cmd = [sys.executable, "-m", "benchmarks.alignment_higher_order", "--tasks", "parity", "--losses", "symile+clip"]
    cmd += ["--speakers", "theo", "--epochs", "1", "--jobs", "1", "--out", str(out)]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    (fold,) = data["per_fold"]
    assert (fold["task"], fold["loss"], fold["test_speaker"]) == ("parity", "symile+clip", "theo")
    for key in ("higher_order_accuracy", "read_digits_then_compute_accuracy", "audio_to_text_accuracy"):
        assert 0.0 <= fold[key] <= 1.0
    assert data["losses"][0]["similarity"] == "mip" and "pairwise_temperature" in fold
    assert data["candidate_texts"] == {"parity": ["the sum is even", "the sum is odd"]}


def test_higher_order_manifest_states_the_sum_of_the_clip_and_the_image(tmp_path: Path, shared_data: Path) -> None:
    import pyarrow.parquet as pq

    from benchmarks.alignment_digits import fsdd_clips, image_split
    from benchmarks.alignment_higher_order import write_manifest

    clips = fsdd_clips(shared_data)[::60]  # every digit and speaker
    assert {s for _, _, s in clips} >= {"theo", "george"}
    task_rows = 2
    write_manifest(tmp_path / "m.parquet", clips, "parity", holdout="theo", seed=0, task_rows=task_rows)
    rows = pq.read_table(tmp_path / "m.parquet").to_pylist()
    assert len(rows) == len(clips) * (1 + task_rows)  # one plain digits row per clip, then its task rows
    pngs, labels, _, test_idx = image_split()
    label_of = {png: int(label) for png, label in zip(pngs, labels, strict=True)}
    digit_of = {str(p.resolve()): d for p, d, _ in clips}
    task_bs = []
    for row in rows:
        a, image_digit = digit_of[row["audio"]], label_of[row["image"]]
        kind, _, key = row["pairing"].partition(":")
        if kind == "digit":
            assert key == str(a) and image_digit == a
        else:
            assert kind == "parity" and key == f"{a}{image_digit}"  # b is the image's digit
            assert ("odd" in row["text"]) == ((a + image_digit) % 2 == 1)
            task_bs.append(image_digit)
    assert len(task_bs) == len(clips) * task_rows and len(set(task_bs)) > 5  # b drawn apart from a
    test_pngs = {pngs[i] for i in test_idx}
    for row in rows:  # the held-out speaker sees only test images, the others only training images
        assert (row["image"] in test_pngs) == (row["speaker"] == "theo")


def test_recorded_higher_order_results_cover_every_loss_task_and_speaker() -> None:
    from benchmarks.alignment_higher_order import DEFAULT_LOSSES, against_shipped_digits, summarise, verdicts

    data = json.loads((REPO / "benchmarks" / "results" / "alignment_higher_order.json").read_text())
    for task in ("parity", "mod10"):
        losses = [row["loss"] for row in data["losses"] if row["task"] == task]
        assert set(DEFAULT_LOSSES) <= set(losses), task
        folds = [f for f in data["per_fold"] if f["task"] == task]
        assert {f["test_speaker"] for f in folds} == {"george", "jackson", "lucas", "nicolas", "theo"}
    assert summarise(data["per_fold"]) == data["losses"]  # the table is the folds' summary
    bars = {**verdicts(data["losses"]), **against_shipped_digits(data["losses"])}
    assert {k: data[k] for k in bars} == bars
    if data["shipped"]["path"]:  # what --ship wrote is the packaged combined space
        assert data["shipped"]["path"] == "embedder/spaces/digits-sum" and data["shipped"]["loss"] == "symile+clip"
    assert all(row["train_seconds_max"] < 600 for row in data["losses"])  # every run within the 10-minute budget
    assert data["commit"] and data["measured_at"] and data["seconds"] > 0


def test_recorded_50_epoch_parity_run_is_its_folds_summary_and_meets_the_parity_bars() -> None:
    from benchmarks.alignment_higher_order import against_shipped_digits, summarise, verdicts

    data = json.loads((REPO / "benchmarks" / "results" / "alignment_higher_order_50_epochs.json").read_text())
    assert data["epochs"] == 50 and {row["task"] for row in data["losses"]} == {"parity"}
    assert {row["loss"] for row in data["losses"]} == {"clip", "symile", "symile+clip"}
    for loss in ("clip", "symile", "symile+clip"):
        speakers = {f["test_speaker"] for f in data["per_fold"] if f["loss"] == loss}
        assert speakers == {"george", "jackson", "lucas", "nicolas", "theo"}, loss
    assert summarise(data["per_fold"]) == data["losses"]
    bars = {**verdicts(data["losses"]), **against_shipped_digits(data["losses"])}
    assert {k: data[k] for k in bars} == bars
    # The parity bar, recomputed from the folds: a higher-order loss >= 0.90, CLIP all-pairs <= 0.60.
    by_loss = {row["loss"]: row["higher_order_accuracy_mean"] for row in data["losses"]}
    assert by_loss["symile"] >= 0.90 and by_loss["clip"] <= 0.60 and data["parity_bar_met"]
    assert data["parity_symile+clip_meets_both"]  # within 0.05 of Symile, audio->text within 0.03 of CLIP
    assert data["shipped"] == {**data["shipped"], "path": "embedder/spaces/digits-sum", "loss": "symile+clip"}
    assert data["shipped"]["train_seconds"] < 600
    mod10 = json.loads((REPO / "benchmarks" / "results" / "alignment_higher_order_mod10_50_epochs.json").read_text())
    assert mod10["epochs"] == 50 and summarise(mod10["per_fold"]) == mod10["losses"]
    assert {f["test_speaker"] for f in mod10["per_fold"]} == {"george", "jackson", "lucas", "nicolas", "theo"}
    assert all(row["train_seconds_max"] < 600 for row in mod10["losses"])
    assert all(row["train_seconds_max"] < 600 for row in data["losses"])  # every run within the 10-minute budget


def test_batch_embed_bench_small_run_compares_against_raw_encode(tmp_path: Path) -> None:
    out = tmp_path / "batch_embed_bench.json"
    cmd = [sys.executable, "-m", "benchmarks.batch_embed_bench", "--texts", "200", "--rss-rows", "300", "900"]
    result = subprocess.run(
        [*cmd, "--parts", "text", "rss", "--out", str(out)], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["text_n"] == 200 and data["raw_items_per_s"] > 0 and data["tessera_items_per_s"] > 0
    assert data["inference"] == "onnx"  # `tessera embed` runs the CPU default path
    assert data["min_cosine_vs_raw"] >= 0.9999
    # The rates are rounded to 0.1 items/s; the ratio is not.
    assert data["ratio"] == pytest.approx(data["tessera_items_per_s"] / data["raw_items_per_s"], rel=0.01)
    assert data["rss_rows_small"] == 300 and data["rss_rows_large"] == 900
    assert data["rss_growth"] == round(data["rss_peak_mb_large"] / data["rss_peak_mb_small"], 4)
    assert "fsdd_items_per_s" not in data  # a part not run is not invented


def test_recorded_batch_embed_results_meet_the_bars() -> None:
    recorded = json.loads((REPO / "benchmarks" / "results" / "batch_embed_bench.json").read_text())
    assert recorded["text_n"] == 20_000 and recorded["ratio"] >= 0.90
    assert recorded["inference"] == "onnx" and recorded["min_cosine_vs_raw"] >= 0.9999  # re-run on the CPU default
    assert recorded["rss_rows_small"] == 20_000 and recorded["rss_rows_large"] == 200_000
    assert recorded["rss_growth"] <= 1.20
    assert recorded["fsdd_n"] == 2500 and recorded["fsdd_items_per_s"] > 0


def test_recorded_reliability_results_meet_the_bars() -> None:
    data = json.loads((REPO / "benchmarks" / "results" / "reliability.json").read_text())
    assert data["crash_trials"] >= 20 and data["lost"] == 0 and data["crash_unloadable"] == 0
    assert all(data[f"crash_killed_during_{p}"] > 0 for p in ("upsert", "snapshot", "rebuild"))
    assert data["crash_resurrected"] == 0 and data["crash_count_mismatch"] == 0
    assert data["fuzz_requests"] >= 5000 and data["fuzz_unexpected"] == 0 and data["fuzz_server_up"]
    assert data["load_clients"] == 16 and data["load_seconds"] >= 60 and data["load_errors"] == 0
    assert data["ok"]


def test_verify_cost_small_run_times_loads_with_and_without_checksums(tmp_path: Path) -> None:
    out = tmp_path / "verify_cost.json"
    cmd = [sys.executable, "-m", "benchmarks.verify_cost", "--vectors", "3000", "--dim", "32", "--rounds", "1"]
    result = subprocess.run([*cmd, "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["vectors"] == 3000 and data["dim"] == 32
    assert data["load_s_without_verify"] > 0 and data["load_s_with_verify"] > 0
    assert data["ratio"] > 0 and data["xxh3_gb_per_s"] > 0 and data["bytes_verified"] > 3000 * 32 * 4
    assert data["commit"] and data["measured_at"]


def test_recorded_verify_cost_is_for_a_million_vectors() -> None:
    data = json.loads((REPO / "benchmarks" / "results" / "verify_cost.json").read_text())
    assert data["vectors"] == 1_000_000 and data["dim"] == 384
    assert data["load_s_with_verify"] >= data["load_s_without_verify"] * 0.8 and data["ratio"] > 0
