"""The `tessera` command. Each subcommand parses arguments and calls a library function; no logic lives here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _cmd_spaces(args: argparse.Namespace) -> int:
    from embedder import list_spaces

    infos = list_spaces(include_all_openclip=args.all)
    width = max(len(i.name) for i in infos)
    print(f"{'space':<{width}}  {'status':<13}  {'modalities':<33}  note")
    for info in infos:
        status = "ready" if info.ready else "needs weights"
        print(f"{info.name:<{width}}  {status:<13}  {info.modalities:<33}  {info.note}")
    return 0


def _cmd_quickstart(args: argparse.Namespace) -> int:
    from embedder import load_space
    from services.quickstart import format_report, run_quickstart

    print(format_report(run_quickstart(load_space(args.space))))
    return 0


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
        help="embed the bundled sample of every modality (offline)",
        description="Embed the bundled text, image, audio, video and vector samples into one space and "
        "print each vector's shape and norm, plus a small text search. Runs fully offline.",
    )
    # Same default as services.quickstart.DEFAULT_SPACE; not imported so `--help` stays instant.
    quick.add_argument("--space", default="minilm-bind-init", help="space to use (default: %(default)s)")
    quick.set_defaults(func=_cmd_quickstart)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"tessera {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
