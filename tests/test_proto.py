"""The committed gRPC stubs are exactly what grpcio-tools generates from proto/tessera/v1/*.proto."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BUILD = Path(__file__).resolve().parents[1] / "proto" / "build.py"


def test_generated_stubs_are_up_to_date() -> None:
    # proto/build.py is a development script, not an installed module, so it runs as one.
    result = subprocess.run([sys.executable, str(BUILD), "--check"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_stubs_import_through_the_namespace() -> None:
    from tessera.v1 import tessera_pb2, tessera_pb2_grpc

    assert tessera_pb2.DESCRIPTOR.name == "tessera/v1/tessera.proto"
    assert tessera_pb2_grpc.tessera_dot_v1_dot_tessera__pb2 is tessera_pb2
