"""What every adapter attaches to a retrieved item, whatever the framework."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tessera.client import Hit
from tessera.errors import DeadlineExceeded, Unavailable


class TesseraUnavailableError(Unavailable):
    """The server could not be reached, or did not answer within the adapter's timeout."""


@contextmanager
def clear_connection_errors(address: str, timeout: float | None) -> Iterator[None]:
    """Turns 'no server' and 'too slow' into one error that says which server and how long was waited."""
    try:
        yield
    except Unavailable as exc:
        raise TesseraUnavailableError(
            f"no Tessera server answers at {address} ({exc.message}); start one with `tessera serve` "
            "or pass the right address"
        ) from exc
    except DeadlineExceeded as exc:
        raise TesseraUnavailableError(
            f"the Tessera server at {address} did not answer within {timeout} s; raise `timeout` "
            "or check the server's load"
        ) from exc


def hit_metadata(hit: Hit) -> dict[str, Any]:
    """The item's own metadata, plus where it came from and how it scored (Tessera's keys win a clash)."""
    metadata = dict(hit.metadata)
    metadata.update(
        {
            "tessera_id": hit.id,
            "corpus": hit.corpus,
            "modality": hit.modality,
            "raw_score": hit.raw_score,
            "calibrated_score": hit.calibrated_score,
        }
    )
    if hit.uri:
        metadata["uri"] = hit.uri
    return metadata
