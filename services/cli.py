"""The `tessera` command. Each subcommand parses arguments and calls a library function; no logic lives here."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tessera.index.fusion import Fusion


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _cmd_spaces(args: argparse.Namespace) -> int:
    from tessera.embedder import list_spaces

    infos = list_spaces(include_all_openclip=args.all)
    width = max(len(i.name) for i in infos)
    print(f"{'space':<{width}}  {'status':<13}  {'modalities':<33}  note")
    for info in infos:
        status = "ready" if info.ready else "needs weights"
        print(f"{info.name:<{width}}  {status:<13}  {info.modalities:<33}  {info.note}")
    return 0


def _cmd_quickstart(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tessera.quickstart import format_report, print_and_hold, run_quickstart

    hold = print_and_hold if args.http_port is not None else None  # the console needs the server to stay up
    report = run_quickstart(
        args.space, data_dir=args.data_dir and Path(args.data_dir), http_port=args.http_port, on_ready=hold
    )
    if hold is None:
        print(format_report(report))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import replace
    from pathlib import Path

    from tessera.embedder.training import load_config, train
    from tessera.index.diskspace import DiskGuard

    config = load_config(args.config)
    if args.device:
        config.training = replace(config.training, device=args.device)
    # save_space removes its staging directory on failure; a full disk is reported as such, not as a crash.
    guard = DiskGuard(Path(config.output).resolve().parent, label="output directory")
    with guard.writing("writing a checkpoint or the space"):
        result = train(config, fresh=args.fresh, progress=not args.quiet)
    final = {k: v for k, v in result.final.items() if k.endswith("_r1") or k in ("train_loss", "eval_loss")}
    print(f"space written to {result.output}; load it with --space {result.output}")
    if final:
        print("final: " + "  ".join(f"{k}={v:.3f}" for k, v in final.items()))
    return 0


def _cmd_embed(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tessera.embed_job import EmbedOptions, run_embed

    options = EmbedOptions(
        input=Path(args.input),
        output=Path(args.output),
        space=args.space,
        modality=args.modality,
        column=args.column,
        id_column=args.id_column,
        passthrough=tuple(args.passthrough) if args.passthrough is not None else None,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        on_error=args.on_error,
        part_rows=args.part_rows,
        engine=args.engine,
        ray_address=args.ray_address,
        overwrite=args.overwrite,
    )
    print(run_embed(options, progress=not args.quiet).format())
    return 0


def _client(args: argparse.Namespace):
    from tessera.client import Client

    return Client(args.server, api_key=args.api_key, tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key)


def _cmd_serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tessera.engine import Limits
    from tessera.server import ServeOptions, TLSConfig, serve

    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    tls = None
    if args.tls_cert:
        tls = TLSConfig(
            Path(args.tls_cert), Path(args.tls_key), Path(args.tls_client_ca) if args.tls_client_ca else None
        )
    serve(
        ServeOptions(
            data_dir=Path(args.data_dir),
            host=args.host,
            port=args.port,
            api_keys_file=args.auth_keys and Path(args.auth_keys),
            tls=tls,
            metrics_port=args.metrics_port,
            http_port=args.http_port,
            batching=not args.no_batching,
            max_batch=args.max_batch,
            max_wait_ms=args.max_wait_ms,
            max_message_bytes=args.max_message_mb << 20,
            limits=Limits(
                max_items_per_request=args.max_items,
                max_query_parts=args.max_query_parts,
                max_top_k=args.max_top_k,
                max_batch_queries=args.max_batch_queries,
                max_message_bytes=args.max_message_mb << 20,
            ),
            min_free_bytes=int(args.min_free_mb * (1 << 20)),
            milvus_uri=args.milvus_uri,
            milvus_token=args.milvus_token,
            max_concurrent_rpcs=args.max_concurrent_rpcs,
            allow_space_paths=args.allow_space_paths,
        )
    )
    return 0


def _print_corpora(corpora: list[dict]) -> None:
    print(f"{'corpus':<20} {'modality':<8} {'count':>10} {'dim':>5}  {'space':<28} index (searching)")
    for c in corpora:
        if c.get("damaged"):
            print(f"{c['name']:<20} DAMAGED: {c['damage']}")
            continue
        state = "" if c.get("index_state") in ("", "built", "exact", None) else f", {c['index_state']}"
        where = " in milvus" if c.get("backend") == "milvus" else ""
        print(
            f"{c['name']:<20} {c['modality']:<8} {c['count']:>10,} {c['dim']:>5}  {c['space']:<28} "
            f"{c['index']} ({c['searching']}{state}){where}"
        )


def _cmd_corpus(args: argparse.Namespace) -> int:
    import json

    with _client(args) as client:
        if args.action == "create":
            info = client.create_corpus(
                args.name,
                space=args.space,
                modality=args.modality,
                index=args.index,
                nprobe=args.nprobe,
                ef_search=args.ef_search,
                ef_construction=args.ef_construction,
                backend=args.backend,
            )
            _print_corpora([info])
        elif args.action == "list":
            _print_corpora(client.list_corpora())
        elif args.action == "describe":
            print(json.dumps(client.describe_corpus(args.name), indent=2))
        elif args.action == "drop":
            client.drop_corpus(args.name)
            print(f"dropped {args.name}")
    return 0


def _cmd_corpus_verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tessera.index.repair import format_verification, verify_data_dir

    root = Path(args.data_dir)
    reports = verify_data_dir(root, args.name)
    print(format_verification(root, reports))
    return 0 if all(r.ok for r in reports) else 1


def _cmd_corpus_rebuild(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from tessera.index.catalog import Catalog

    with Catalog(Path(args.data_dir)) as catalog:
        print(
            f"building the index of {args.name} (FAISS reports no progress; large corpora take minutes) ...",
            file=sys.stderr,
        )
        info = catalog.rebuild(args.name)
    print(json.dumps(info["index"], indent=2))
    return 0


def _cmd_corpus_repair(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tessera.index.repair import format_repair, repair_corpus

    result = repair_corpus(Path(args.data_dir), args.name, accept_loss=args.accept_loss)
    print(format_repair(result))
    return 0 if result.ok else 1


def _cmd_ingest(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tessera.ingest import Chunking, IngestOptions, ingest

    corpus_name = args.corpus_option or args.corpus
    path = args.from_path or args.path
    if not corpus_name or not path:
        raise ValueError("name the corpus and the input: tessera ingest CORPUS PATH, or --corpus NAME --from PATH")
    options = IngestOptions(
        id_column=args.id_column,
        text_column=args.text_column,
        chunking=Chunking(args.chunk_size, args.chunk_overlap),
        on_error=args.on_error,
        errors_file=Path(args.errors_file) if args.errors_file else None,
        batch_size=args.batch_size,
    )
    with _client(args) as client:
        summary = ingest(
            client, corpus_name, Path(path), embeddings=bool(args.from_path), options=options, progress=True
        )
    print(summary.format())
    return 0


def _json_filter(text: str | None, flag: str = "--filter") -> dict | None:
    import json

    if text is None:
        return None
    shown = text if len(text) <= 80 else text[:77] + "..."
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{flag} is not valid JSON ({exc.msg} at column {exc.colno}): {shown}") from None
    if not isinstance(value, dict):
        raise ValueError(f'{flag} must be a JSON object such as \'{{"year": {{"eq": 2020}}}}\', not: {shown}')
    return value


def _cmd_search(args: argparse.Namespace) -> int:
    import json

    from tessera.ingest import query_part

    query_filter = _json_filter(args.filter)
    modality, value = query_part(args.query, args.modality)
    with _client(args) as client:
        result = client.search(
            [(modality, value)],
            space=args.space,
            top_k=args.top_k,
            corpora=args.corpus or None,
            filter=query_filter,
            fusion=args.fusion,
        )
    for rank, hit in enumerate(result.hits, 1):
        label = hit.text or hit.uri or json.dumps(hit.metadata)
        print(
            f"{rank:>3}. {hit.corpus}/{hit.id}  raw {hit.raw_score:+.3f}  calibrated {hit.calibrated_score:+.3f}  "
            f"{label[:80]}"
        )
    if not result.hits:
        where = f"in corpora {', '.join(result.searched)}" if result.searched else "(no corpus was searched)"
        print(f"no hits {where}" + (" matching --filter" if query_filter is not None and result.searched else ""))
    for corpus, reason in result.skipped:
        print(f"     skipped {corpus}: {reason}")
    return 0


def _cmd_rag(args: argparse.Namespace) -> int:
    from tessera.rag import build_context

    query_filter = _json_filter(args.filter)
    with _client(args) as client:
        context = build_context(
            client,
            args.question,
            space=args.space,
            corpora=args.corpus,
            top_k=args.top_k,
            filter=query_filter,
            timeout=args.timeout,
        )
    print(context.to_json() if args.format == "json" else context.to_markdown(), end="")
    return 0


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    import os

    parser.add_argument(
        "--server",
        default=os.environ.get("TESSERA_SERVER", "127.0.0.1:50051"),
        help="server address host:port, or a data directory to open in this process "
        "(default: $TESSERA_SERVER or %(default)s)",
    )
    parser.add_argument("--api-key", default=os.environ.get("TESSERA_API_KEY"), help="API key ($TESSERA_API_KEY)")
    parser.add_argument("--tls-ca", help="CA bundle that signed the server's certificate (turns TLS on)")
    parser.add_argument("--tls-cert", help="client certificate, for servers that require mutual TLS")
    parser.add_argument("--tls-key", help="client private key, with --tls-cert")


class _DeprecatedCorpora(argparse.Action):
    """`--corpora NAME`, the old spelling of `--corpus NAME`: one name per flag, so it never takes the question."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values, option_string=None):
        print(f"{parser.prog}: --corpora is deprecated; use --corpus NAME (repeatable)", file=sys.stderr)
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest) or []), values])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tessera",
        description="Tessera: embed text, images, audio, video and vectors into one shared space, and search it.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    spaces = sub.add_parser(
        "spaces",
        help="list the embedding spaces this machine can load",
        description="List built-in spaces, trained spaces under the data directory ($TESSERA_DATA/spaces), "
        "and OpenCLIP models, saying which still need weights downloaded.",
    )
    spaces.add_argument("--all", action="store_true", help="also list every OpenCLIP pretrained tag not yet cached")
    spaces.set_defaults(func=_cmd_spaces)

    quick = sub.add_parser(
        "quickstart",
        help="start a server, fill corpora from the bundled sample, and query them (offline)",
        description="Start a Tessera gRPC server on 127.0.0.1, embed the bundled text, image, audio, video and "
        "vector samples through it, create three corpora (passages, digit images, spoken digits), and run "
        "text->text, text->image, audio->image and a routed query across all corpora. Runs fully offline.",
    )
    quick.add_argument(
        "--data-dir", default=None, help="keep the corpora here (default: a temporary directory, removed afterwards)"
    )
    # Same default as tessera.quickstart.DEFAULT_SPACE; not imported so `--help` stays instant.
    quick.add_argument("--space", default="digits", help="space to use (default: %(default)s)")
    quick.add_argument(
        "--http-port",
        type=int,
        help="also serve the HTTP API and web console on this port (0: any free one), print its address, "
        "and keep serving until Ctrl-C",
    )
    quick.set_defaults(func=_cmd_quickstart)

    train = sub.add_parser(
        "train",
        help="align encoders into one space with a contrastive, GRAM or Symile loss",
        description="Train the encoders a YAML or TOML config names on a Parquet manifest of paired items "
        "(one column per modality: text, bytes, or a file path), log metrics each epoch, checkpoint after "
        "each epoch, and write a space directory that `--space DIR` and the server load. Re-running the same "
        "config resumes from its checkpoint. Sections: space, data, eval, encoders, loss (clip, anchored, "
        "gram, symile), optimizer, training, augment, output; see embedder/training/config.py and "
        "benchmarks/alignment_digits.py for a full example.",
    )
    train.add_argument("config", help="training config (.yaml, .yml or .toml)")
    train.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint and start over")
    train.add_argument("--device", help="cpu, cuda or cuda:N (default: the config's, else CUDA when present)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=_cmd_train)

    embed = sub.add_parser(
        "embed",
        help="embed a Parquet, JSONL or CSV table, or a folder of files, into a Parquet dataset (offline)",
        description=(
            "Embed every row of INPUT into OUTPUT, a Parquet dataset of parts: id, vector\n"
            "(fixed_size_list<float32>[dim]) and the pass-through columns; the schema metadata records the\n"
            "space, dim and modality. Input is streamed part by part, so memory stays flat. Media are decoded\n"
            "in worker processes while the model runs in batches (on CUDA when present). Re-running the same\n"
            "command after a crash or Ctrl-C skips the finished parts. Bad items stop the run, or with\n"
            "--on-error skip are listed in OUTPUT/_errors.jsonl. Load the result into a corpus with\n"
            "`tessera ingest --from OUTPUT --corpus NAME`."
        ),
        epilog="examples:\n"
        "  tessera embed docs.parquet out/ --column body --id-column doc_id\n"
        "  tessera embed ../shared/data/fsdd/recordings clips/ --space digits --on-error skip\n"
        "  tessera embed docs.jsonl out/ --engine ray --ray-address ray://head:10001",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    embed.add_argument("input", help="a .parquet, .jsonl/.ndjson or .csv file, or a folder of files")
    embed.add_argument("output", help="output directory (created; re-running resumes it)")
    embed.add_argument("--space", default="minilm", help="embedding space (default: %(default)s; see `tessera spaces`)")
    embed.add_argument(
        "--modality",
        choices=["text", "image", "audio", "video", "vector"],
        help="tables: what the content column holds (default text); folders: take every file as this "
        "modality (default: from the file suffixes)",
    )
    embed.add_argument("--column", help="table column with the content: text, bytes, or a file path (default: 'text')")
    embed.add_argument("--id-column", help="table column with ids (default: an 'id' column, else the row number)")
    embed.add_argument(
        "--passthrough",
        nargs="*",
        metavar="COLUMN",
        help="table columns copied to the output (default: every column but the content and id)",
    )
    embed.add_argument("--batch-size", type=int, help="items per model batch (default: the encoder's)")
    embed.add_argument(
        "--workers",
        type=int,
        help="decode processes (local engine; default: 0 for text, cores-1 for media) or encoder actors (ray)",
    )
    embed.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when present)")
    embed.add_argument(
        "--on-error",
        choices=["fail", "skip"],
        default="fail",
        help="a bad item stops the run (fail, default) or is listed in OUTPUT/_errors.jsonl and skipped",
    )
    embed.add_argument(
        "--part-rows", type=int, default=8192, help="rows per output part, the unit of resuming (default: %(default)s)"
    )
    embed.add_argument("--engine", choices=["local", "ray"], default="local", help="where the job runs")
    embed.add_argument("--ray-address", help="Ray cluster to join (default: start Ray on this machine)")
    embed.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it holds another job's output")
    embed.add_argument("--quiet", action="store_true", help="no progress bar")
    embed.set_defaults(func=_cmd_embed)

    serve = sub.add_parser(
        "serve",
        help="run the gRPC server",
        description="Serve the Tessera gRPC API (plus grpc.health.v1 and reflection) over the corpora in DIR. "
        "SIGTERM or Ctrl-C stops accepting calls, lets in-flight ones finish and snapshots every corpus.",
    )
    serve.add_argument("--data-dir", default="./tessera-data", help="where corpora live (default: %(default)s)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=50051, help="port (default: %(default)s; 0 picks a free one)")
    serve.add_argument(
        "--auth-keys", help="file of 'KEY ROLE' lines (roles: read, write, admin); or set TESSERA_API_KEYS=key:role,..."
    )
    serve.add_argument("--tls-cert", help="server certificate (PEM); with --tls-key turns TLS on")
    serve.add_argument("--tls-key", help="server private key (PEM)")
    serve.add_argument("--tls-client-ca", help="require client certificates signed by this CA (mutual TLS)")
    serve.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this HTTP port")
    serve.add_argument(
        "--http-port",
        type=int,
        help="also serve the HTTP/JSON API, OpenAI-compatible /v1/embeddings and the web console on this port "
        "(0 picks a free one; default: off)",
    )
    serve.add_argument("--max-batch", type=int, default=64, help="largest merged model batch (default: %(default)s)")
    serve.add_argument(
        "--max-wait-ms",
        type=float,
        default=0.0,
        help="how long a batch waits after its first call for others (default: %(default)s: it takes the calls "
        "that queued while the previous batch ran, and a lone call never waits)",
    )
    serve.add_argument("--no-batching", action="store_true", help="embed each call on its own")
    serve.add_argument(
        "--allow-space-paths",
        action="store_true",
        help="let requests name a space by directory or checkpoint path (off: only names, incl. DIR/spaces/<name>)",
    )
    limits = serve.add_argument_group("limits (a request over one gets RESOURCE_EXHAUSTED)")
    limits.add_argument("--max-message-mb", type=int, default=64, help="largest message, MiB (default: %(default)s)")
    limits.add_argument(
        "--max-items", type=int, default=1024, help="items per Embed/Upsert message (default: %(default)s)"
    )
    limits.add_argument("--max-top-k", type=int, default=1000, help="largest top_k (default: %(default)s)")
    limits.add_argument("--max-query-parts", type=int, default=8, help="parts in one query (default: %(default)s)")
    limits.add_argument(
        "--max-batch-queries", type=int, default=64, help="queries in one BatchSearch (default: %(default)s)"
    )
    limits.add_argument(
        "--max-concurrent-rpcs", type=int, help="calls in flight at once, streams included (default: no limit)"
    )
    limits.add_argument(
        "--min-free-mb",
        type=_non_negative_float,
        default=0.0,
        help="refuse upserts, new corpora and snapshots while the data directory has less than this many MiB free "
        "(default: %(default)s, refuse only when a write fails for lack of space)",
    )
    scale = serve.add_argument_group("scaling out (README, 'Scaling out')")
    scale.add_argument(
        "--milvus-uri",
        help="also serve the corpora of this Milvus server (e.g. http://127.0.0.1:19530), which every replica "
        "pointed at it shares; new corpora go there unless created with backend local",
    )
    scale.add_argument(
        "--milvus-token",
        default=os.environ.get("TESSERA_MILVUS_TOKEN"),
        help="Milvus credentials, 'user:password' or an API key (default: $TESSERA_MILVUS_TOKEN, which keeps "
        "them out of the process list)",
    )
    serve.set_defaults(func=_cmd_serve)

    corpus = sub.add_parser(
        "corpus",
        help="create, list, describe or drop corpora on a server or a data directory (--server); verify or "
        "repair their files offline",
        description="Manage corpora on a running server, or in a data directory opened in this process "
        "(--server PATH). `verify` and `repair` work on the data directory's files (--data-dir).",
    )
    corpus_sub = corpus.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = corpus_sub.add_parser(
        "create", help="create a corpus", description="Create a corpus of one modality in one space."
    )
    create.add_argument("name")
    create.add_argument("--space", required=True, help="embedding space, e.g. minilm (see `tessera spaces`)")
    create.add_argument("--modality", required=True, choices=["text", "image", "audio", "video", "vector"])
    create.add_argument("--index", default="auto", help="FAISS factory string, or auto (default)")
    create.add_argument("--nprobe", type=int, help="default IVF lists probed per query")
    create.add_argument("--ef-search", type=int, help="default HNSW beam width per query")
    create.add_argument(
        "--ef-construction", type=int, help="HNSW beam width while building the graph (FAISS's default: 40)"
    )
    create.add_argument(
        "--backend",
        choices=("local", "milvus"),
        help="local: FAISS on the server's data directory; milvus: the server's Milvus (--milvus-uri), shared by "
        "replicas (default: milvus when the server has one, else local)",
    )
    for action, text in (("list", "list corpora"), ("describe", "describe one corpus"), ("drop", "drop a corpus")):
        p = corpus_sub.add_parser(action, help=text, description=text.capitalize() + ".")
        if action != "list":
            p.add_argument("name")
    for p in corpus_sub.choices.values():
        _add_client_options(p)
        p.set_defaults(func=_cmd_corpus)
    # Offline, on the data directory itself: verify reads only (no lock, so also beside a server);
    # repair takes the directory's lock, so the server must be stopped.
    verify = corpus_sub.add_parser(
        "verify",
        help="check every file of the corpora in a data directory against its checksum (offline)",
        description="Check each corpus's manifest, snapshot files (size and xxh3 digest), index and write-ahead "
        "log (every record's CRC) without changing anything, print a per-file report and, for a damaged corpus, "
        "what `tessera corpus repair` can do. Exits 1 when anything is damaged, 0 when all is sound.",
    )
    verify.add_argument("name", nargs="?", help="one corpus (default: every corpus in the data directory)")
    repair = corpus_sub.add_parser(
        "repair",
        help="mend a damaged corpus where its files allow (offline, with the server stopped)",
        description="Rebuild what the corpus's other files can rebuild: a damaged index from the vectors, a lost "
        "manifest from the copy in its snapshot, a damaged snapshot from an older one plus the log. A damaged log "
        "is cut back to its last sound record only with --accept-loss (writes after the damage are lost). "
        "Exits 0 once every file verifies.",
    )
    repair.add_argument("name")
    repair.add_argument(
        "--accept-loss", action="store_true", help="also run repairs that drop data (a damaged log's later records)"
    )
    rebuild = corpus_sub.add_parser(
        "rebuild",
        help="build a corpus's index now, e.g. after a failed or interrupted build (offline, server stopped)",
        description="Build the corpus's configured index from its live items (compacting tombstones), snapshot it, "
        "and print the index's state. Automatic builds skip an index whose last attempt failed or was interrupted "
        "until the corpus has doubled; this tries at once. Takes the data directory's lock: stop the server first.",
    )
    rebuild.add_argument("name")
    for p, func in ((verify, _cmd_corpus_verify), (repair, _cmd_corpus_repair), (rebuild, _cmd_corpus_rebuild)):
        p.add_argument(
            "--data-dir", default="./tessera-data", help="the data directory of `tessera serve` (default: %(default)s)"
        )
        p.set_defaults(func=func)

    ingest = sub.add_parser(
        "ingest",
        help="upsert `tessera embed` output, a JSONL, CSV or Parquet file, or a folder of files into a corpus",
        description=(
            "Stream items into a corpus on a running server (or a data directory, see --server).\n\n"
            "--from loads `tessera embed` output: precomputed vectors, no re-embedding; refused unless its\n"
            "space and dim match the corpus.\n\n"
            "Tables (.jsonl/.ndjson, .csv, .parquet): each line or row is one item. Its `id` field (or\n"
            "--id-column) is the id; its content is `text` (or --text-column), `vector` (a list of numbers),\n"
            "or `path` (a file, relative to the table's folder, read and sent to be embedded); `uri` is\n"
            "stored as given. Every other top-level field becomes metadata (filterable), and a `metadata`\n"
            'object merges in over them: {"id": "a", "text": "...", "year": 2020} stores year.\n'
            "CSV cells are strings; empty cells are left out.\n\n"
            "Folders are read by file suffix (image, audio or video files for a media corpus; .txt, .md,\n"
            ".rst, .html documents for a text corpus) and embedded by the server. Text documents are split\n"
            "into overlapping chunks whose metadata keeps the source file and character offsets.\n\n"
            "Stored paths: an item read from a file stores the file's absolute, resolved path as its uri\n"
            "(folders, a table's `path`, and --from alike), whatever directory the command ran in.\n"
            "Ids, and the `path` / `source` metadata of a folder, are relative to the folder.\n\n"
            "Bad records (a line that is not JSON, no id, nothing to embed, an unreadable or undecodable\n"
            "file) are checked before they are sent: the first one stops the run, naming the file and\n"
            "line (--on-error fail, default), or with --on-error skip each is skipped, listed in the\n"
            "errors file (JSON Lines: source, line, error) and counted in the summary."
        ),
        epilog="examples:\n"
        "  tessera ingest notes notes.jsonl\n"
        "  tessera ingest photos ./photos --on-error skip --errors-file bad-photos.jsonl\n"
        "  tessera ingest --from docs-vectors/ --corpus docs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ingest.add_argument("corpus", nargs="?", help="corpus name (or --corpus)")
    ingest.add_argument("path", nargs="?", help="file or folder to upsert, embedded server-side")
    ingest.add_argument("--corpus", dest="corpus_option", metavar="NAME", help="corpus name")
    ingest.add_argument(
        "--from", dest="from_path", metavar="EMBEDDINGS", help="`tessera embed` output directory or part file"
    )
    ingest.add_argument("--id-column", default="id", help="tables: the field holding ids (default: %(default)s)")
    ingest.add_argument("--text-column", help="tables: the field holding the text to embed (default: text)")
    ingest.add_argument("--batch-size", type=int, default=256, help="items per upsert message (default: %(default)s)")
    ingest.add_argument(
        "--chunk-size", type=int, default=1000, help="text documents: characters per chunk (default: %(default)s)"
    )
    ingest.add_argument(
        "--chunk-overlap",
        type=int,
        default=200,
        help="text documents: characters shared by neighbouring chunks (default: %(default)s)",
    )
    ingest.add_argument(
        "--on-error",
        choices=["fail", "skip"],
        default="fail",
        help="a bad record or file stops the run (fail, default) or is skipped and listed in the errors file",
    )
    ingest.add_argument(
        "--errors-file",
        metavar="PATH",
        help="where skipped records are listed, one JSON line each (default with skip: "
        "./ingest-errors-CORPUS.jsonl, written only when something is skipped)",
    )
    _add_client_options(ingest)
    ingest.set_defaults(func=_cmd_ingest)

    search = sub.add_parser(
        "search",
        help="search a server or a data directory (--server)",
        description="Search across corpora: routed by modality unless --corpus names them. A query that is "
        "the path of an existing image, audio or video file (.png .jpg .jpeg .webp, .wav .flac .mp3, .mp4 .webm "
        ".mov, ...) is embedded as that modality; one with such a suffix that names no file is refused (pass "
        "--modality text to search the words). No hits prints a line saying so, and exits 0.",
    )
    search.add_argument("query", help="text, or the path of an image, audio or video file")
    search.add_argument(
        "--space",
        default=None,
        help="space to embed the query in (default: the one space the searched corpora share)",
    )
    search.add_argument(
        "--modality",
        choices=["text", "image", "audio", "video"],
        help="what the query is (default: a media file by its suffix, else text)",
    )
    search.add_argument("--top-k", type=int, default=10, help="how many hits (default: %(default)s)")
    search.add_argument("--corpus", action="append", metavar="NAME", help="search only this corpus (repeatable)")
    search.add_argument("--filter", help='JSON metadata filter, e.g. \'{"year": {"range": {"gte": 2020}}}\'')
    search.add_argument(
        "--fusion",
        default=Fusion.CALIBRATED.value,
        choices=[f.value for f in Fusion],
        help="how hits of several corpora merge (default: calibrated, which undoes the modality gap)",
    )
    _add_client_options(search)
    search.set_defaults(func=_cmd_search)

    rag = sub.add_parser(
        "rag",
        help="retrieve across corpora and print a prompt-ready context with citations",
        description="Search for the question (routed by modality across every corpus of the space, or only "
        "--corpus), then print the context a language model needs: numbered text passages with their "
        "source and character offsets, and references to the images, audio and video that matched. "
        "No model is called; --format json includes a ready prompt.",
    )
    rag.add_argument("question")
    rag.add_argument(
        "--corpus", action="append", metavar="NAME", help="search only this corpus (repeatable; default: route)"
    )
    rag.add_argument("--corpora", action=_DeprecatedCorpora, dest="corpus", metavar="NAME", help=argparse.SUPPRESS)
    rag.add_argument(
        "--space",
        default=None,
        help="space to embed the question in (default: the one space the searched corpora share)",
    )
    rag.add_argument("--top-k", type=int, default=8, help="how many items to cite (default: %(default)s)")
    rag.add_argument("--filter", help="JSON metadata filter, as for `tessera search`")
    rag.add_argument("--format", choices=["md", "json"], default="md", help="output format (default: %(default)s)")
    rag.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the server")
    _add_client_options(rag)
    rag.set_defaults(func=_cmd_rag)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import grpc

    from tessera.errors import TesseraError
    from tessera.index.diskspace import DiskFullError

    try:
        return int(args.func(args))
    except TesseraError as exc:  # before ValueError: InvalidArgument is one
        print(f"tessera {args.command}: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except DiskFullError as exc:  # `tessera embed` or `tessera train` writing locally: as a server would answer
        print(f"tessera {args.command}: RESOURCE_EXHAUSTED: {exc}", file=sys.stderr)
        return 1
    except grpc.RpcError as exc:
        print(f"tessera {args.command}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError, RuntimeError, ConnectionError) as exc:  # ConnectionError: --milvus-uri
        print(f"tessera {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = "; finished parts are kept, run the same command again to resume" if args.command == "embed" else ""
        print(f"tessera {args.command}: interrupted{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
