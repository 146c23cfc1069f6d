"""The errors of the embedding layer: input that cannot be decoded, weights that are not here."""

from __future__ import annotations

from .quoting import quote


class DecodeError(ValueError):
    """Raised when an input item cannot be decoded for its modality.

    It names the item (its position in the request, or its id when the caller
    gave one) and says why, so a caller can fix or drop exactly that item.
    """

    def __init__(self, modality: str, reason: str, item: int | str | None = None) -> None:
        self.modality = modality
        self.reason = reason
        self.item = item
        where = f"item {quote(item)}" if item is not None else "input"
        super().__init__(f"{modality} {where}: {reason}")

    def for_item(self, item: int | str) -> DecodeError:
        """The same error, re-labelled with the item's position or id."""
        return DecodeError(self.modality, self.reason, item)


class WeightsUnavailableError(RuntimeError):
    """A known space whose weights are not on this machine (not in the local cache, no network)."""
