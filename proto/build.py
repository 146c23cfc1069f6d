"""Generate the Python stubs for proto/tessera/v1/*.proto exactly as grpcio-tools does.

    python proto/build.py            # rewrite the committed stubs
    python proto/build.py --check    # exit 1 if the committed stubs are stale

proto/ is protoc's include root, so the source is `tessera/v1/tessera.proto` (its path matches its
package, tessera.v1) and the stubs import each other as `tessera.v1`, the name the wheel installs
them under. The stubs are committed (so installing Tessera needs no protoc); tests/test_proto.py
regenerates them into a temporary directory and fails when they differ. This file is a
development script, not part of the installed package.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

INCLUDE_ROOT = Path(__file__).resolve().parent
PROTO_DIR = INCLUDE_ROOT / "tessera" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files() -> list[Path]:
    return sorted(PROTO_DIR.glob("*.proto"))


def generate(out_root: Path) -> list[Path]:
    """Run protoc (from grpcio-tools) with proto/ as include path; returns the files written."""
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
    sources = [str(p.relative_to(INCLUDE_ROOT)) for p in proto_files()]
    args = [
        "protoc",
        f"-I{INCLUDE_ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {sources}")
    return sorted(p for p in (out_root / "tessera" / "v1").iterdir() if p.name.endswith(GENERATED_SUFFIXES))


def stale_files() -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        return [
            p.name
            for p in fresh
            if not (PROTO_DIR / p.name).exists() or not filecmp.cmp(p, PROTO_DIR / p.name, shallow=False)
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report whether the committed stubs are stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print(f"stale generated stubs: {', '.join(stale)}; run `python proto/build.py`", file=sys.stderr)
            return 1
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        for path in generate(Path(tmp)):
            shutil.copyfile(path, PROTO_DIR / path.name)
            print(f"wrote {PROTO_DIR / path.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
