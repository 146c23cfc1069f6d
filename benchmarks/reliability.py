"""Reliability: SIGKILL trials, a gRPC fuzz run and a mixed load, each against a real `tessera serve`.

    python -m benchmarks.reliability                                  # 20 trials, 5,000 requests, 16 clients x 60 s
    python -m benchmarks.reliability --trials 3 --fuzz 400 --load-seconds 10   # the CI-sized run

1. Crash safety. A writer streams upserts (raw 32-d vectors with metadata) and
   deletes into an HNSW corpus, recording every write the server acknowledged. The
   server snapshots every ~1 MB of log (TESSERA_SNAPSHOT_WAL_MB=1) and rebuilds its
   index as deletes pile up tombstones. Each trial SIGKILLs it: at a random moment,
   as soon as a snapshot starts, or as soon as an index build starts (the phase at
   the kill is read from the server's structured log). Then it restarts on the same
   data directory and every acknowledged id must be there with its exact vector and
   metadata, every acknowledged delete must stay deleted, the corpus count must
   equal what `Get` finds, and each sampled item must be its own nearest neighbour.
2. Fuzz: `benchmarks.fuzz_grpc.run_grpc_fuzz` sends malformed and edge-case
   requests; only documented status codes may come back, the server must stay up,
   and its RSS must stay bounded.
3. Load: 16 clients for 60 s mixing text searches, embeds and upserts; throughput,
   p50/p99 latency, errors (must be 0) and the server's RSS growth.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tessera.client import Client
from tessera.errors import TesseraError

REPO = Path(__file__).resolve().parents[1]
DIM = 32
CRASH_CORPUS = "crash"
PHASES = ("upsert", "snapshot", "rebuild")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class ServerProcess:
    """`tessera serve` as a subprocess on a free port, with its JSON log lines collected as they come."""

    def __init__(self, data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        command = [sys.executable, "-m", "tessera.cli", "serve", "--data-dir", str(data_dir), "--port", "0", *extra]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, **(env or {})},
        )
        line = self.process.stdout.readline()  # type: ignore[union-attr]
        if "tessera serving on" not in line:
            raise RuntimeError(f"tessera serve did not start: {line}{self.process.stderr.read()}")  # type: ignore[union-attr]
        self.address = line.split(" on ")[1].split(" ")[0]
        self.events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _read_log(self) -> None:
        for line in self.process.stderr:  # type: ignore[union-attr]
            try:
                self.events.append(json.loads(line))
            except json.JSONDecodeError:
                self.events.append({"event": "text", "message": line.rstrip()})

    @property
    def pid(self) -> int:
        return self.process.pid

    def in_progress(self) -> str:
        """What the server was doing, judged from the last start/finish events of snapshots and builds."""
        open_snapshots = open_builds = 0
        for event in list(self.events):
            name = event.get("event")
            open_snapshots += {"snapshot_started": 1, "snapshot_written": -1}.get(name, 0)
            open_builds += {"index_build_started": 1, "index_built": -1}.get(name, 0)
        return "snapshot" if open_snapshots > 0 else "rebuild" if open_builds > 0 else "upsert"

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)


@dataclass
class Ledger:
    """What the server acknowledged: live items, deleted ids, and writes whose outcome the kill left unknown."""

    items: dict[str, tuple[np.ndarray, dict[str, Any]]] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    uncertain: set[str] = field(default_factory=set)
    acknowledged_writes: int = 0


def _writer(address: str, ledger: Ledger, trial: int, stop: threading.Event, rng: np.random.Generator) -> None:
    with Client(address, timeout=30) as client:
        batch = 0
        while not stop.is_set():
            ids = [f"t{trial}-b{batch}-{i}" for i in range(64)]
            vectors = rng.standard_normal((len(ids), DIM)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            metas = [{"trial": trial, "batch": batch, "row": i, "tag": f"x{rng.integers(1 << 30)}"} for i in range(64)]
            items = [{"id": i, "vector": v, "metadata": m} for i, v, m in zip(ids, vectors, metas, strict=True)]
            try:
                client.upsert(CRASH_CORPUS, items, modality="vector")
            except TesseraError:
                ledger.uncertain.update(ids)
                return
            ledger.items.update({i: (v, m) for i, v, m in zip(ids, vectors, metas, strict=True)})
            ledger.acknowledged_writes += 1
            batch += 1
            if batch % 3 == 0 and len(ledger.items) > 200:
                # Deletes pile up HNSW tombstones, which drive background rebuilds.
                doomed = rng.choice(sorted(ledger.items), size=64, replace=False).tolist()
                try:
                    client.delete(CRASH_CORPUS, ids=doomed)
                except TesseraError:
                    for i in doomed:
                        ledger.items.pop(i, None)
                    ledger.uncertain.update(doomed)
                    return
                for i in doomed:
                    ledger.items.pop(i)
                ledger.deleted.update(doomed)
                ledger.acknowledged_writes += 1


def _wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.002)
    return False


def verify(address: str, ledger: Ledger, rng: np.random.Generator) -> dict[str, int]:
    """Everything acknowledged is there, exactly; deletes stay deleted; count and search agree."""
    lost = wrong = resurrected = 0
    with Client(address, timeout=120) as client:
        count = client.describe_corpus(CRASH_CORPUS)["count"]
        known = sorted(ledger.items)
        for start in range(0, len(known), 500):
            ids = known[start : start + 500]
            found = {i["id"]: i for i in client.get(CRASH_CORPUS, ids, include_vectors=True)}
            for item_id in ids:
                if item_id not in found:
                    lost += 1
                    continue
                vector, metadata = ledger.items[item_id]
                got = found[item_id]
                if not np.allclose(got["vector"], vector, atol=1e-6) or got["metadata"] != metadata:
                    wrong += 1
        gone = sorted(ledger.deleted)
        for start in range(0, len(gone), 500):
            resurrected += len(client.get(CRASH_CORPUS, gone[start : start + 500]))
        # _settle_uncertain has already adopted or dropped every write the kill cut short.
        count_mismatch = int(count != len(known) - lost)
        search_misses = 0
        for item_id in rng.choice(known, size=min(20, len(known)), replace=False).tolist() if known else []:
            hits = client.search([("vector", ledger.items[item_id][0])], space=f"vectors:{DIM}", corpora=[CRASH_CORPUS])
            search_misses += int(not hits.hits or hits.hits[0].id != item_id)
    return {
        "count": count,
        "lost": lost,
        "wrong": wrong,
        "resurrected": resurrected,
        "count_mismatch": count_mismatch,
        "search_misses": search_misses,
    }


def _settle_uncertain(address: str, ledger: Ledger) -> None:
    """After a restart, an unknown write is whatever the server kept: adopt it, so later trials check it too."""
    maybe = sorted(ledger.uncertain)
    with Client(address, timeout=120) as client:
        for start in range(0, len(maybe), 500):
            for item in client.get(CRASH_CORPUS, maybe[start : start + 500], include_vectors=True):
                ledger.items[item["id"]] = (np.asarray(item["vector"], dtype=np.float32), item["metadata"])
    ledger.deleted.difference_update(ledger.items)
    ledger.deleted.update(i for i in maybe if i not in ledger.items)
    ledger.uncertain.clear()


def crash_trials(trials: int, work: Path, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    chooser = random.Random(seed)
    data = work / "crash-data"
    env = {"TESSERA_SNAPSHOT_WAL_MB": "1"}
    ledger = Ledger()
    server = ServerProcess(data, env=env)
    with Client(server.address) as client:
        client.create_corpus(CRASH_CORPUS, space=f"vectors:{DIM}", modality="vector", index="HNSW32")
    phases = {p: 0 for p in PHASES}
    totals = {"lost": 0, "wrong": 0, "resurrected": 0, "count_mismatch": 0, "search_misses": 0, "unloadable": 0}
    for trial in range(trials):
        target = PHASES[trial % len(PHASES)]
        stop = threading.Event()
        writer = threading.Thread(target=_writer, args=(server.address, ledger, trial, stop, rng), daemon=True)
        started = len(server.events)
        writer.start()
        if target == "upsert":
            time.sleep(chooser.uniform(0.3, 2.5))
        else:
            event = "snapshot_started" if target == "snapshot" else "index_build_started"
            _wait_for(lambda e=event, s=started, p=server: any(x.get("event") == e for x in p.events[s:]), timeout=60)
        phase = server.in_progress()
        server.kill()
        stop.set()
        writer.join(60)
        phases[phase] += 1
        try:
            server = ServerProcess(data, env=env)
        except RuntimeError as exc:
            totals["unloadable"] += 1
            raise RuntimeError(f"trial {trial}: the data directory does not load after SIGKILL: {exc}") from exc
        _settle_uncertain(server.address, ledger)
        result = verify(server.address, ledger, rng)
        for key in ("lost", "wrong", "resurrected", "count_mismatch", "search_misses"):
            totals[key] += result[key]
        print(f"trial {trial + 1}/{trials}: killed during {phase} (aimed at {target}); {result}", flush=True)
    server.stop()
    return {
        "crash_trials": trials,
        **{f"crash_killed_during_{p}": n for p, n in phases.items()},
        "crash_acknowledged_writes": ledger.acknowledged_writes,
        "crash_items_checked": len(ledger.items),
        "crash_deletes_checked": len(ledger.deleted),
        **{f"crash_{k}": v for k, v in totals.items()},
        "lost": totals["lost"] + totals["wrong"],
    }


def fuzz(requests: int, work: Path, seed: int = 0) -> dict[str, Any]:
    from benchmarks.fuzz_grpc import run_grpc_fuzz

    server = ServerProcess(work / "fuzz-data")
    try:
        # A short warm-up run loads the model and the corpus first, so the RSS figures compare like with like.
        run_grpc_fuzz(server.address, 100, seed + 1)
        before = rss_mb(server.pid)
        report = run_grpc_fuzz(server.address, requests, seed)
        after = rss_mb(server.pid)
        alive = server.process.poll() is None
    finally:
        server.stop()
    return {
        "fuzz_requests": report["requests"],
        "fuzz_unexpected": report["unexpected"],
        "fuzz_server_up": bool(report["server_up"] and alive),
        "fuzz_by_code": report["by_code"],
        "fuzz_rss_mb_before": round(before, 1),
        "fuzz_rss_mb_after": round(after, 1),
    }


def load(clients: int, seconds: float, work: Path, seed: int = 0) -> dict[str, Any]:
    from benchmarks.text_corpus import real_sentences

    sentences = real_sentences(2000)
    server = ServerProcess(work / "load-data")
    with Client(server.address, timeout=60) as admin:
        admin.create_corpus("load-text", space="minilm", modality="text")
        admin.create_corpus("load-vectors", space=f"vectors:{DIM}", modality="vector")
        admin.upsert("load-text", [{"id": f"s{i}", "text": t} for i, t in enumerate(sentences[:500])])
        admin.search("warm up", space="minilm", corpora=["load-text"])
    rss_start = rss_mb(server.pid)
    latencies: dict[str, list[float]] = {"search": [], "embed": [], "upsert": []}
    errors: list[str] = []
    deadline = time.monotonic() + seconds

    def client_loop(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        with Client(server.address, timeout=60) as client:
            i = 0
            while time.monotonic() < deadline:
                op = rng.choices(("search", "embed", "upsert"), weights=(5, 2, 3))[0]
                started = time.perf_counter()
                try:
                    if op == "search":
                        client.search(rng.choice(sentences), space="minilm", corpora=["load-text"], top_k=10)
                    elif op == "embed":
                        client.embed(rng.sample(sentences, rng.randint(1, 4)))
                    elif rng.random() < 0.5:
                        client.upsert("load-text", [{"id": f"c{n}-{i}", "text": rng.choice(sentences)}])
                    else:
                        vectors = np.random.default_rng(rng.randint(0, 1 << 30)).standard_normal((16, DIM))
                        items = [{"id": f"v{n}-{i}-{j}", "vector": v} for j, v in enumerate(vectors)]
                        client.upsert("load-vectors", items, modality="vector")
                except TesseraError as exc:
                    errors.append(f"{op}: {exc.code}: {exc.message}")
                    continue
                latencies[op].append(time.perf_counter() - started)
                i += 1

    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    rss_end = rss_mb(server.pid)
    server.stop()
    every = np.array([x for values in latencies.values() for x in values]) * 1000
    out: dict[str, Any] = {
        "load_clients": clients,
        "load_seconds": round(elapsed, 1),
        "load_requests": int(every.size),
        "load_qps": round(every.size / elapsed, 1),
        "load_p50_ms": round(float(np.percentile(every, 50)), 1) if every.size else None,
        "load_p99_ms": round(float(np.percentile(every, 99)), 1) if every.size else None,
        "load_errors": len(errors),
        "load_error_examples": errors[:5],
        "load_rss_mb_start": round(rss_start, 1),
        "load_rss_mb_end": round(rss_end, 1),
        "load_rss_growth_mb": round(rss_end - rss_start, 1),
    }
    for op, values in latencies.items():
        ms = np.array(values) * 1000
        out[f"load_{op}_requests"] = int(ms.size)
        out[f"load_{op}_p50_ms"] = round(float(np.percentile(ms, 50)), 1) if ms.size else None
        out[f"load_{op}_p99_ms"] = round(float(np.percentile(ms, 99)), 1) if ms.size else None
    return out


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20, help="SIGKILL trials (default: %(default)s)")
    parser.add_argument("--fuzz", type=int, default=5000, help="fuzzed requests (default: %(default)s)")
    parser.add_argument("--load-clients", type=int, default=16)
    parser.add_argument("--load-seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=["crash", "fuzz", "load"],
        default=["crash", "fuzz", "load"],
        help="what to run; results of parts not run are kept from the existing --out file",
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "reliability.json")
    args = parser.parse_args()
    results: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    results |= {"benchmark": "reliability", "machine": f"{os.cpu_count()} CPU cores", "seed": args.seed}
    with tempfile.TemporaryDirectory(prefix="tessera-reliability-") as tmp:
        work = Path(tmp)
        if "crash" in args.parts:
            results.update(crash_trials(args.trials, work, args.seed))
        if "fuzz" in args.parts:
            results.update(fuzz(args.fuzz, work, args.seed))
        if "load" in args.parts:
            results.update(load(args.load_clients, args.load_seconds, work, args.seed))
    results["ok"] = (
        results["lost"] == 0
        and results["crash_resurrected"] == 0
        and results["crash_count_mismatch"] == 0
        and results["crash_unloadable"] == 0
        and results["fuzz_unexpected"] == 0
        and results["fuzz_server_up"]
        and results["load_errors"] == 0
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
