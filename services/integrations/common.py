"""What every adapter attaches to a retrieved item, whatever the framework."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from tessera.client import Client, Hit
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
            "modality": str(hit.modality),  # a plain string in stored metadata, not the enum
            "raw_score": hit.raw_score,
            "calibrated_score": hit.calibrated_score,
        }
    )
    if hit.uri:
        metadata["uri"] = hit.uri
    return metadata


def client_option_names() -> list[str]:
    """The keyword options of `tessera.Client`, which the adapters pass through."""
    parameters = inspect.signature(Client.__init__).parameters.values()
    return [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]


def check_options(
    owner: str, given: Iterable[str], own: list[str], renames: dict[str, str], client_in: str = "keywords"
) -> None:
    """A TypeError now, naming the right argument, rather than a failure (or nothing) at the first search."""
    client = client_option_names()
    for name in given:
        if name in own or name in client:
            continue
        message = f"{owner} got an unexpected keyword argument {name!r}"
        if name in renames:
            raise TypeError(f"{message}; {renames[name]}")
        close = difflib.get_close_matches(name, own + client, 1)
        if close:
            raise TypeError(f"{message}; did you mean {close[0]}?")
        options = f"and as {client_in} the tessera.Client options {', '.join(client)}"
        raise TypeError(f"{message}; it takes {', '.join(own)}, {options}")
