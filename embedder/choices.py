"""String enums that parse from their names: one rule for Modality, Similarity and Fusion."""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

from .quoting import quote

C = TypeVar("C", bound="Choice")


class Choice(str, Enum):
    """Members equal their names as strings; `parse` takes a member or a name in any case."""

    @classmethod
    def parse(cls: type[C], value: str | C) -> C:
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            raise ValueError(cls.refusal(value)) from None

    @classmethod
    def refusal(cls, value: object) -> str:
        return f"{cls.__name__.lower()} must be one of {', '.join(m.value for m in cls)}, not {quote(value)}"

    def __str__(self) -> str:
        return self.value
