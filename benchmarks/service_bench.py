"""Service benchmark: search and embed over gRPC against the same work in-process, in the same run.

1. Search: a `tessera serve` process (its own process, so clients do not share
   its interpreter lock) holds an HNSW32 corpus of 100k MiniLM sentence vectors
   (benchmarks/.cache, as index_bench makes them; clustered synthetic vectors
   with --data synthetic). 1, 8 and 32 client threads each send one vector
   query at a time for a fixed number of queries; p50/p99 latency and QPS are
   compared with the same queries searched in-process through the same Router.
2. Embed: 32 concurrent single-text Embed calls (real MiniLM) against a server
   with micro-batching on and one with it off. The same sentences are embedded
   in-process, one per model call and in merged batches of 32 (the most 32
   clients can form): that ratio is what the hardware allows any batcher to
   gain, the ceiling for the server's ratio. The four alternate for
   --embed-rounds rounds, each keeping its best. Bars: the server reaches
   >= 90% of the ceiling (`share_of_ceiling`); on a GPU, >= 4x.
HTTP (`http_search`): one `tessera serve --http-port 0`, the same vector queries
   over gRPC and over HTTP/JSON (POST /v1/search) at 1 and 16 client threads,
   alternating; the bar: an HTTP call costs <= 1.5x a gRPC call. `--http-only`
   runs just this and merges it into --out.
Text search (`text_search`): `client.search(text)` with 8-word queries against a 2,000-sentence
   MiniLM corpus on `tessera serve` (its default inference path) at 1 and 16 client threads,
   against the hand-written loop (sentence-transformers `encode` plus FAISS search, one query
   at a time) in the same run; bars 1.5x and 3x. `--text-only` runs just this.

    python -m benchmarks.service_bench [--n 100000] [--queries 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from benchmarks.index_bench import clustered_vectors, minilm_vectors
from benchmarks.provenance import git_commit, now_utc
from benchmarks.text_corpus import real_sentences
from tessera.client import Client
from tessera.embedder import load_space
from tessera.index.catalog import Catalog
from tessera.index.routing import Query, QueryPart, Router

REPO = Path(__file__).resolve().parents[1]
SPACE = "minilm"
CONCURRENCY = (1, 8, 32)
EF_SEARCH = 64


def start_server(data_dir: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tessera.cli", "serve", "--data-dir", str(data_dir), "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    )
    line = proc.stdout.readline()
    if "serving on" not in line:
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, line.split(" on ")[1].split(" ")[0]


def stop_server(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)


def run_clients(call: Any, payloads: list[Any], threads: int) -> dict[str, float]:
    """Each thread sends its share one call at a time; latency per call, QPS over the whole run."""
    latencies = np.zeros(len(payloads))
    parts = np.array_split(np.arange(len(payloads)), threads)

    def work(rows: np.ndarray) -> None:
        for r in rows:
            start = time.perf_counter()
            call(payloads[r])
            latencies[r] = time.perf_counter() - start

    start = time.perf_counter()
    workers = [threading.Thread(target=work, args=(rows,)) for rows in parts]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    return {
        "qps": len(payloads) / elapsed,
        "p50_ms": float(np.percentile(latencies, 50) * 1e3),
        "p99_ms": float(np.percentile(latencies, 99) * 1e3),
    }


def bench_search(n: int, n_queries: int, data: str) -> tuple[list[dict[str, Any]], str]:
    xb, queries = minilm_vectors(n, 1000) if data == "minilm" else clustered_vectors(n, 1000)
    kind = "minilm-real-sentences" if data == "minilm" else "clustered-synthetic"
    queries = np.resize(queries, (n_queries, queries.shape[1]))
    with tempfile.TemporaryDirectory() as tmp:
        proc, address = start_server(Path(tmp))
        rows = []
        try:
            with Client(address, timeout=120) as client:
                client.create_corpus("bench", space=SPACE, modality="text", index="HNSW32", ef_search=EF_SEARCH)
                client.upsert(
                    "bench",
                    ({"id": str(i), "vector": xb[i]} for i in range(n)),
                    batch_size=1000,
                    progress=True,
                    total=n,
                )
                while client.describe_corpus("bench")["searching"] != "HNSW32":
                    time.sleep(1)
                client.search([("vector", queries[0])], space=SPACE, top_k=10)
                for threads in tqdm(CONCURRENCY, desc="gRPC search"):
                    grpc_stats = run_clients(
                        lambda q: client.search([("vector", q)], space=SPACE, top_k=10, corpora=["bench"]),
                        list(queries),
                        threads,
                    )
                    rows.append(
                        {
                            "concurrency": threads,
                            "grpc_qps": grpc_stats["qps"],
                            "grpc_p50_ms": grpc_stats["p50_ms"],
                            "grpc_p99_ms": grpc_stats["p99_ms"],
                        }
                    )
        finally:
            stop_server(proc)
        # In-process: the same corpus, reopened from what the server snapshotted, the same Router call.
        with Catalog(tmp) as catalog:
            router = Router(catalog)
            space_id = catalog.get("bench").space_id
            catalog.get("bench").wait_idle()
            for row in rows:
                local = run_clients(
                    lambda q: router.search(Query([QueryPart("vector", q)], space_id, top_k=10, corpora=["bench"])),
                    list(queries),
                    row["concurrency"],
                )
                row.update(
                    local_qps=local["qps"],
                    local_p50_ms=local["p50_ms"],
                    local_p99_ms=local["p99_ms"],
                    ratio=local["qps"] / row["grpc_qps"],
                )
    return rows, kind


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def batch_totals(metrics_port: int) -> tuple[float, float]:
    """(items, batches) embedded so far, from the server's own Prometheus batch-size histogram."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    values = dict(line.split(" ", 1) for line in text.splitlines() if line.startswith("tessera_embed_batch_size_"))
    return float(values.get("tessera_embed_batch_size_sum", "0")), float(
        values.get("tessera_embed_batch_size_count", "0")
    )


def bench_embed(calls: int, max_wait_ms: float, rounds: int = 3) -> dict[str, float]:
    """32 client threads of single-text Embed calls against a server batching and one not, and the model's
    own ceiling in-process, in `rounds` alternating rounds; each side keeps its best round.

    The machine is shared (and on a small one the clients share its cores): alternating and keeping
    the best round of each side compares the least disturbed runs, the same way for all four.
    """
    sentences = real_sentences(calls + 7)[7:]  # skip the over-length and non-English extras
    out: dict[str, float] = {"max_wait_ms": max_wait_ms, "rounds": rounds}
    modes = (("batching_on", ("--max-wait-ms", str(max_wait_ms))), ("batching_off", ("--no-batching",)))
    best: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        servers = {}
        try:
            for label, extra in modes:
                port = free_port()
                proc, address = start_server(Path(tmp) / label, "--metrics-port", str(port), *extra)
                servers[label] = (proc, Client(address, timeout=300), port)
                servers[label][1].embed(sentences[:8], space=SPACE)  # load the model before timing
            space = load_space(SPACE)
            prepared = [space.prepare("text", s) for s in sentences]
            space.embed_merged("text", prepared[:32])  # warm-up
            for _ in tqdm(range(rounds), desc="embed rounds"):
                for label, (_, client, port) in servers.items():
                    items0, batches0 = batch_totals(port)
                    stats = run_clients(lambda s, client=client: client.embed([s], space=SPACE), sentences, 32)
                    items1, batches1 = batch_totals(port)
                    if batches1 > batches0:
                        stats["mean_batch_size"] = (items1 - items0) / (batches1 - batches0)
                    if label not in best or stats["qps"] > best[label]["qps"]:
                        best[label] = stats
                for label, rate in model_ceiling(space, prepared).items():
                    out[label] = max(out.get(label, 0.0), rate)
        finally:
            for proc, client, _ in servers.values():
                client.close()
                stop_server(proc)
    for label, stats in best.items():
        out.update({f"{label}_{k}": v for k, v in stats.items()})
    out["ratio"] = out["batching_on_qps"] / out["batching_off_qps"]
    out["model_ceiling_ratio"] = out["model_batch32_items_per_s"] / out["model_batch1_items_per_s"]
    out["share_of_ceiling"] = out["ratio"] / out["model_ceiling_ratio"]
    out["inference"] = os.environ.get("TESSERA_INFERENCE") or "default (ONNX Runtime on the CPU)"
    return out


def model_ceiling(space: Any, prepared: list[Any], batch: int = 32) -> dict[str, float]:
    """Texts/s of the model alone, one text per call and in merged batches as the server's batcher forms them."""
    rates = {}
    for label, size in (("model_batch1", 1), (f"model_batch{batch}", batch)):
        start = time.perf_counter()
        for i in range(0, len(prepared), size):
            space.embed_merged("text", prepared[i : i + size])
        rates[f"{label}_items_per_s"] = len(prepared) / (time.perf_counter() - start)
    return rates


# ---- HTTP/JSON against gRPC: the same searches, the same server, the same run --------------------
HTTP_CONCURRENCY = (1, 16)


def start_server_http(data_dir: Path, *extra: str) -> tuple[subprocess.Popen[str], str, str]:
    """`tessera serve --http-port 0`: (process, gRPC address, HTTP address), from its two stdout lines."""
    proc, address = start_server(data_dir, "--http-port", "0", *extra)
    line = proc.stdout.readline()
    if "http on" not in line:
        raise RuntimeError(f"server did not start HTTP: {line!r}")
    return proc, address, line.split(" on ")[1].split(" ")[0]


def http_search_call(http_address: str) -> Any:
    """One keep-alive connection per client thread (stdlib http.client); the query vector sent packed
    (base64 little-endian float32, as the gRPC client sends `Vector.packed`); the JSON answer decoded."""
    import base64
    import http.client

    host, port = http_address.rsplit(":", 1)
    local = threading.local()

    def call(q: np.ndarray) -> Any:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(host, int(port), timeout=120)
            conn.connect()
            # http.client writes headers and body in two sends: without this, Nagle's algorithm holds the
            # body for the server's delayed ACK (~40 ms). urllib3 and httpx clients set it too.
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        vector = {"packed": base64.b64encode(np.ascontiguousarray(q, dtype="<f4").tobytes()).decode()}
        body = {
            "space": SPACE,
            "parts": [{"content": {"modality": "vector", "vector": vector}}],
            "top_k": 10,
            "corpora": ["bench"],
        }
        conn.request("POST", "/v1/search", json.dumps(body), {"content-type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP search failed: {response.status} {data[:200]!r}")
        return json.loads(data)["hits"]

    return call


def bench_http_search(n: int, n_queries: int, data: str, rounds: int = 2) -> dict[str, Any]:
    """Search over gRPC and over HTTP/JSON on one server, alternating, at 1 and 16 client threads.

    Each (transport, concurrency) runs `rounds` times, interleaved with the other transport, and keeps
    its best round: the machine is shared, and the best round is the one least disturbed by others.
    `http_cost_ratio` is gRPC QPS / HTTP QPS, the time one HTTP call costs in gRPC calls.
    """
    xb, queries = minilm_vectors(n, 1000) if data == "minilm" else clustered_vectors(n, 1000)
    kind = "minilm-real-sentences" if data == "minilm" else "clustered-synthetic"
    queries = list(np.resize(queries, (n_queries, queries.shape[1])))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        proc, address, http_address = start_server_http(Path(tmp))
        try:
            with Client(address, timeout=120) as client:
                client.create_corpus("bench", space=SPACE, modality="text", index="HNSW32", ef_search=EF_SEARCH)
                items = ({"id": str(i), "vector": xb[i]} for i in range(n))
                client.upsert("bench", items, batch_size=1000, progress=True, total=n)
                while client.describe_corpus("bench")["searching"] != "HNSW32":
                    time.sleep(1)
                over_http = http_search_call(http_address)
                grpc_hits = client.search([("vector", queries[0])], space=SPACE, top_k=10, corpora=["bench"]).hits
                assert [h["id"] for h in over_http(queries[0])] == [h.id for h in grpc_hits], "transports disagree"
                calls = {
                    "grpc": lambda q: client.search([("vector", q)], space=SPACE, top_k=10, corpora=["bench"]),
                    "http": over_http,
                }
                for threads in tqdm(HTTP_CONCURRENCY, desc="gRPC vs HTTP search"):
                    best: dict[str, dict[str, float]] = {}
                    for _ in range(rounds):
                        for name, call in calls.items():
                            stats = run_clients(call, queries, threads)
                            if name not in best or stats["qps"] > best[name]["qps"]:
                                best[name] = stats
                    row: dict[str, Any] = {"concurrency": threads}
                    for name, stats in best.items():
                        row.update({f"{name}_{k}": v for k, v in stats.items()})
                    row["http_cost_ratio"] = best["grpc"]["qps"] / best["http"]["qps"]
                    rows.append(row)
        finally:
            stop_server(proc)
    return {
        "n": n,
        "data": kind,
        "index": "HNSW32",
        "ef_search": EF_SEARCH,
        "queries": n_queries,
        "rounds": rounds,
        "http_client": "http.client keep-alive per thread (TCP_NODELAY), vector as base64 packed float32, JSON decoded",
        "ratio_is": "http_cost_ratio = gRPC QPS / HTTP QPS (bar: <= 1.5)",
        "rows": rows,
        "worst_http_cost_ratio": max(r["http_cost_ratio"] for r in rows),
        "git_commit": git_commit(),
        "measured_at": now_utc(),
    }


def http_only(args: argparse.Namespace) -> int:
    """`--http-only`: just the gRPC-vs-HTTP search comparison, merged into --out's other keys."""
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    previous["http_search"] = bench_http_search(args.http_n or args.n, args.queries, args.data)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(previous, indent=2))
    print(json.dumps(previous["http_search"], indent=2))
    return 0


# ---- end-to-end text search: embed plus search over gRPC, against the loop a user writes by hand -----
TEXT_CONCURRENCY = (1, 16)


def eight_word_queries(n: int, skip: int) -> list[str]:
    """`n` distinct 8-word queries: the first eight words of real sentences after the first `skip`."""
    out: list[str] = []
    pool = real_sentences(skip + 40 * n)[skip:]
    for sentence in pool:
        words = sentence.split()
        if len(words) >= 8 and (query := " ".join(words[:8])) not in out:
            out.append(query)
            if len(out) == n:
                return out
    raise RuntimeError(f"only {len(out)} 8-word queries found; asked for {n}")


def bench_text_search(n: int, n_queries: int, rounds: int = 2) -> dict[str, Any]:
    """`client.search(text)` against `tessera serve` (its default inference path: ONNX Runtime on the CPU)
    at 1 and 16 client threads, against the hand-written loop (sentence-transformers `encode` of one query,
    then FAISS search of the same vectors), one query at a time, in the same run.

    Both search the same `n` corpus vectors (made by the loop's model, stored with their text): the
    comparison is of embedding and serving the query. Rounds alternate the loop and the server; each
    keeps its best round. `ratio_cN` = server QPS at N clients / loop QPS.
    """
    import faiss
    from sentence_transformers import SentenceTransformer

    from tessera.embedder.encoders.minilm import minilm_model_dir

    corpus = real_sentences(n + 7)[7:]  # skip the over-length and non-English extras
    queries = eight_word_queries(n_queries, n + 7)
    model = SentenceTransformer(str(minilm_model_dir()), device="cpu", local_files_only=True)
    # Setup only: the corpus vectors come from Tessera's own path (faster here; min cosine to `encode`'s
    # is 0.9999+), and both sides search them. The timed loop below embeds its queries with `encode`.
    xb = load_space(SPACE, device="cpu").embed("text", corpus)
    index = faiss.IndexFlatIP(xb.shape[1])
    index.add(xb)

    def by_hand(q: str) -> Any:
        return index.search(model.encode([q], normalize_embeddings=True, convert_to_numpy=True), 10)

    out: dict[str, Any] = {"n": n, "queries": n_queries, "query_words": 8, "index": "Flat", "rounds": rounds}
    with tempfile.TemporaryDirectory() as tmp:
        metrics_port = free_port()
        proc, address = start_server(Path(tmp), "--metrics-port", str(metrics_port))
        try:
            with Client(address, timeout=300) as client:

                def served_by(threads: int) -> dict[str, float]:
                    """QPS and latency at `threads` clients, and the model batches the server formed meanwhile."""
                    items0, batches0 = batch_totals(metrics_port)
                    stats = run_clients(lambda q: client.search(q, corpora=["text"], top_k=10), queries, threads)
                    items1, batches1 = batch_totals(metrics_port)
                    if batches1 > batches0:
                        stats["mean_batch_size"] = (items1 - items0) / (batches1 - batches0)
                    return stats

                client.create_corpus("text", space=SPACE, modality="text", index="Flat")
                items = ({"id": str(i), "vector": xb[i], "text": s} for i, s in enumerate(corpus))
                client.upsert("text", items, batch_size=500)
                served = [h.id for h in client.search(queries[0], corpora=["text"], top_k=10).hits]
                _, ids = by_hand(queries[0])
                out["top10_agreement_first_query"] = len(set(served) & {str(i) for i in ids[0]}) / 10
                for q in queries[:8]:  # warm both sides
                    by_hand(q)
                    client.search(q, corpora=["text"], top_k=10)
                best: dict[str, dict[str, float]] = {}
                for _ in tqdm(range(rounds), desc="text search rounds"):
                    runs = {"loop": lambda: run_clients(by_hand, queries, 1)}
                    for threads in TEXT_CONCURRENCY:
                        runs[f"grpc_c{threads}"] = lambda threads=threads: served_by(threads)
                    for name, measure in runs.items():
                        stats = measure()
                        if name not in best or stats["qps"] > best[name]["qps"]:
                            best[name] = stats
        finally:
            stop_server(proc)
    for name, stats in best.items():
        out.update({f"{name}_{k}": v for k, v in stats.items()})
    for threads in TEXT_CONCURRENCY:
        out[f"ratio_c{threads}"] = out[f"grpc_c{threads}_qps"] / out["loop_qps"]
    return {
        **out,
        "baseline": "SentenceTransformer.encode([query]) + faiss.IndexFlatIP.search, one query at a time",
        "server_inference": os.environ.get("TESSERA_INFERENCE") or "default (ONNX Runtime on the CPU)",
        "bars": {"ratio_c1": 1.5, "ratio_c16": 3.0},
        "loadavg_at_end": list(os.getloadavg()),
        "commit": git_commit(),
        "measured_at": now_utc(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="vectors in the search corpus")
    parser.add_argument("--queries", type=int, default=2000, help="search calls per concurrency level")
    parser.add_argument("--embed-calls", type=int, default=640, help="single-text Embed calls per run")
    parser.add_argument("--max-wait-ms", type=float, default=0.0, help="micro-batching window for the server")
    parser.add_argument("--embed-rounds", type=int, default=3, help="alternating rounds of the embed part (best kept)")
    parser.add_argument("--skip-search", action="store_true", help="only the embed part (keeps --out's search part)")
    parser.add_argument("--skip-embed", action="store_true", help="only the search part (keeps --out's embed part)")
    parser.add_argument("--data", choices=["minilm", "synthetic"], default="minilm")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "service_bench.json")
    parser.add_argument("--http-only", action="store_true", help="only gRPC vs HTTP search, merged into --out")
    parser.add_argument("--skip-http", action="store_true", help="no gRPC vs HTTP search (keeps --out's)")
    parser.add_argument("--http-n", type=int, help="vectors in the gRPC-vs-HTTP corpus (default: --n)")
    parser.add_argument("--text-only", action="store_true", help="only end-to-end text search, merged into --out")
    parser.add_argument("--skip-text", action="store_true", help="no end-to-end text search (keeps --out's)")
    parser.add_argument("--text-n", type=int, default=2000, help="sentences in the text-search corpus")
    parser.add_argument("--text-queries", type=int, default=300, help="8-word text queries per run")
    args = parser.parse_args(argv)
    if args.embed_rounds < 1:
        parser.error(f"--embed-rounds must be at least 1, got {args.embed_rounds}")
    if args.http_only:
        return http_only(args)
    if args.text_only:
        previous = json.loads(args.out.read_text()) if args.out.exists() else {}
        previous["text_search"] = bench_text_search(args.text_n, args.text_queries)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(previous, indent=2))
        print(json.dumps(previous["text_search"], indent=2))
        return 0
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    # Parts this run does not produce (e.g. `embed_torch`, the torch-path run recorded earlier) are kept.
    result = {**previous, "benchmark": "service_bench", "machine": {"cpus": os.cpu_count()}}
    if args.skip_search and "search" in previous:
        result["search"] = previous["search"]
    else:
        search_rows, kind = bench_search(args.n, args.queries, args.data) if not args.skip_search else ([], "")
        result["search"] = {
            "n": args.n,
            "data": kind,
            "index": "HNSW32",
            "ef_search": EF_SEARCH,
            "queries": args.queries,
            "ratio_is": "in-process QPS / gRPC QPS",
            "rows": search_rows,
            "git_commit": git_commit(),
            "measured_at": now_utc(),
        }
    if args.skip_embed and "embed" in previous:
        result["embed"] = previous["embed"]
    elif not args.skip_embed:
        embed = bench_embed(args.embed_calls, args.max_wait_ms, args.embed_rounds)
        result["embed"] = {
            "concurrent_calls": 32,
            "calls": args.embed_calls,
            "space": SPACE,
            **embed,
            "git_commit": git_commit(),
            "measured_at": now_utc(),
        }
    if args.skip_http or args.skip_search:  # gRPC vs HTTP is a search measurement: --skip-search keeps it too
        if "http_search" in previous:
            result["http_search"] = previous["http_search"]
    else:
        result["http_search"] = bench_http_search(args.http_n or args.n, args.queries, args.data)
    if args.skip_text or args.skip_search:  # embed plus search: --skip-search keeps it too
        if "text_search" in previous:
            result["text_search"] = previous["text_search"]
    else:
        result["text_search"] = bench_text_search(args.text_n, args.text_queries)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
