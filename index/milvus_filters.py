"""The metadata filter language (index/filters.py) as a Milvus boolean expression.

The grammar and its errors are the local backend's: a filter is first compiled by
`compile_filter`, so a malformed one fails with the same `FilterError` on both backends. The
translation then keeps the local meaning, which is two-valued:

- metadata lives in one JSON field, `metadata`; a key is `metadata["key"]`, quoted as JSON;
- a missing key or null value matches nothing except `ne` and `exists: false`, and `not`
  inverts exactly. Milvus compares a missing key as NULL (three-valued: `not NULL` is NULL,
  which drops the row), so every comparison is guarded by `exists`, which is never NULL;
- on a list-valued field `eq` and `in` match when any element does (`json_contains`).

What Milvus cannot say is refused by name, never approximated: a range over a field that holds
lists (Milvus has no "any element in range" over JSON arrays).
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from typing import Any

from .filters import FilterError, compile_filter

METADATA_FIELD = "metadata"
RANGE_OPERATORS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def milvus_expression(spec: Mapping[str, Any] | None, list_fields: Collection[str] = ()) -> str:
    """The Milvus `filter` for a Tessera filter ("" for none); FilterError as the local backend raises it.

    `list_fields`: the metadata keys that hold lists in some stored item (a range over them is refused).
    """
    if compile_filter(spec) is None:  # validates: the same errors, with the same paths, as a local corpus
        return ""
    return _object(spec, "filter", frozenset(list_fields))


def _object(spec: Mapping[str, Any], path: str, list_fields: frozenset[str]) -> str:
    parts = []
    for key, value in spec.items():
        here = f"{path}.{key}"
        if key in ("and", "or"):
            inner = [_object(v, f"{here}[{i}]", list_fields) for i, v in enumerate(value)]
            parts.append("(" + f" {key} ".join(inner) + ")")
        elif key == "not":
            parts.append(f"(not {_object(value, here, list_fields)})")
        else:
            ((op, arg),) = value.items()
            parts.append(_leaf(key, op, arg, here, list_fields))
    return parts[0] if len(parts) == 1 else "(" + " and ".join(parts) + ")"


def _leaf(key: str, op: str, arg: Any, path: str, list_fields: frozenset[str]) -> str:
    field = f"{METADATA_FIELD}[{json.dumps(key, ensure_ascii=False)}]"
    present = f"(exists {field})"
    if op == "exists":
        return present if arg else f"(not {present})"
    if op in ("eq", "ne"):
        matches = _any_equal(field, [arg], path)
        return f"({present} and {matches})" if op == "eq" else f"(not ({present} and {matches}))"
    if op == "in":
        return f"({present} and {_any_equal(field, arg, path)})"
    if op == "range":
        if key in list_fields:
            raise FilterError(
                path,
                f"range over {json.dumps(key)}, a field that holds lists, cannot be expressed in Milvus "
                "(it has no 'any element in range' over JSON arrays); filter on eq or in, or keep this corpus local",
            )
        bounds = " and ".join(f"{field} {RANGE_OPERATORS[b]} {_literal(v, f'{path}.{b}')}" for b, v in arg.items())
        return f"({present} and {bounds})"
    raise AssertionError(f"compile_filter let operator {op!r} through")  # it refuses every other name


def _any_equal(field: str, values: list[Any], path: str) -> str:
    """The field equals one of `values`, or is a list holding one of them."""
    literals = [_literal(v, path) for v in values]
    scalar = " or ".join(f"{field} == {v}" for v in literals)
    return f"({scalar} or json_contains_any({field}, [{', '.join(literals)}]))"


def _literal(value: Any, path: str) -> str:
    """A JSON scalar as Milvus's expression grammar writes it (strings double-quoted with JSON escapes)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):  # stored metadata is finite (items.py), so such a value matches nothing
            raise FilterError(path, f"{value} is not a finite number; metadata values are finite")
        return repr(value)
    return json.dumps(value, ensure_ascii=False)
