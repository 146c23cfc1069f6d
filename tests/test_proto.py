"""The committed gRPC stubs are exactly what grpcio-tools generates from proto/tessera/v1/*.proto."""

from __future__ import annotations

from proto.build import proto_files, stale_files


def test_generated_stubs_are_up_to_date() -> None:
    assert proto_files(), "no .proto sources found"
    stale = stale_files()
    assert not stale, f"stale generated stubs {stale}: run `python -m proto.build` and commit the result"
