"""Offline batch embedding of datasets (`tessera embed`): streaming, resumable, local or on Ray Data."""

from .encode import BadItem, BadItemError
from .job import EmbedOptions, EmbedSummary, run_embed
from .output import OutputMismatchError, read_output_metadata
from .sources import InputError

__all__ = [
    "BadItem",
    "BadItemError",
    "EmbedOptions",
    "EmbedSummary",
    "InputError",
    "OutputMismatchError",
    "read_output_metadata",
    "run_embed",
]
