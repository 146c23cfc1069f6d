"""The metadata filter language, compiled to pyarrow compute over a payload table.

A filter is JSON:

    {"genre": {"eq": "jazz"}}                         one field, one operator
    {"year": {"range": {"gte": 1990, "lt": 2000}}}    gt / gte / lt / lte, any subset
    {"tags": {"in": ["live", "remaster"]}}            any of the values
    {"rating": {"ne": 0}, "lang": {"exists": true}}   several fields in one object: all must hold
    {"and": [f, ...]}, {"or": [f, ...]}, {"not": f}   combinators, nested freely

On a list-valued field, `eq`, `in` and `range` match when any element matches.
A missing field or null value matches nothing except `ne` and `exists: false`.
Errors name the clause by its path, e.g. `filter.and[1].year: unknown operator 'gtt'`.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tessera.embedder.quoting import quote

COMBINATORS = ("and", "or", "not")
OPERATORS = ("eq", "ne", "in", "range", "exists")
RANGE_BOUNDS = {"gt": pc.greater, "gte": pc.greater_equal, "lt": pc.less, "lte": pc.less_equal}
MAX_DEPTH = 32

Mask = Callable[[pa.Table], np.ndarray]


class FilterError(ValueError):
    """A malformed filter; the message names the offending clause."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}")


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _element_mask(column: pa.ChunkedArray, test: Callable[[pa.Array], pa.Array]) -> np.ndarray:
    """Apply `test` to a column; for list columns a row matches when any element does."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        values = pc.list_flatten(array)
        parents = pc.list_parent_indices(array).to_numpy()
        hits = test(values).to_numpy(zero_copy_only=False)
        hits = np.nan_to_num(hits.astype(float), nan=0.0).astype(bool)
        return np.bincount(parents[hits], minlength=len(array)) > 0
    result = test(array)
    return pc.fill_null(result, False).to_numpy(zero_copy_only=False).astype(bool)


def _leaf(field: str, op: str, arg: Any, path: str) -> Mask:
    if op == "eq":
        if not _is_scalar(arg) or arg is None:
            raise FilterError(path, f"eq takes one non-null scalar, got {_show(arg)}")
        return _column_test(field, path, lambda a: pc.equal(a, pa.scalar(arg)))
    if op == "ne":
        equal = _leaf(field, "eq", arg, path)
        return lambda table: ~equal(table)
    if op == "in":
        if not isinstance(arg, list) or not arg or not all(_is_scalar(v) and v is not None for v in arg):
            raise FilterError(path, f"in takes a non-empty list of scalars, got {_show(arg)}")
        return _column_test(field, path, lambda a: pc.is_in(a, value_set=pa.array(arg)))
    if op == "range":
        if not isinstance(arg, Mapping) or not arg:
            raise FilterError(path, f"range takes an object of gt/gte/lt/lte bounds, got {_show(arg)}")
        bad = [k for k in arg if k not in RANGE_BOUNDS]
        if bad:
            raise FilterError(path, f"unknown range bound {quote(bad[0])}; use gt, gte, lt, lte")
        for bound, value in arg.items():
            if not isinstance(value, (int, float, str)) or isinstance(value, bool):
                raise FilterError(f"{path}.{bound}", f"a bound must be a number or string, got {_show(value)}")

        def in_range(array: pa.Array) -> pa.Array:
            result = None
            for bound, value in arg.items():
                part = RANGE_BOUNDS[bound](array, pa.scalar(value))
                result = part if result is None else pc.and_kleene(result, part)
            return result

        return _column_test(field, path, in_range)
    if op == "exists":
        if not isinstance(arg, bool):
            raise FilterError(path, f"exists takes true or false, got {_show(arg)}")

        def exists(table: pa.Table) -> np.ndarray:
            if field not in table.column_names:
                present = np.zeros(table.num_rows, dtype=bool)
            else:
                present = pc.is_valid(table.column(field)).to_numpy(zero_copy_only=False).astype(bool)
            return present if arg else ~present

        return exists
    raise FilterError(path, f"unknown operator {quote(op)}; use one of {', '.join(OPERATORS)}")


_SHORT_REPR = reprlib.Repr()  # keyword arguments arrived in Python 3.12
_SHORT_REPR.maxlevel, _SHORT_REPR.maxstring, _SHORT_REPR.maxother = 4, 60, 60


def _show(value: Any) -> str:
    """repr() cut to a readable size: an operand nested a thousand deep must not blow up its own error message."""
    return _SHORT_REPR.repr(value)


def _column_test(field: str, path: str, test: Callable[[pa.Array], pa.Array]) -> Mask:
    def mask(table: pa.Table) -> np.ndarray:
        if field not in table.column_names:
            return np.zeros(table.num_rows, dtype=bool)
        try:
            return _element_mask(table.column(field), test)
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            kind = table.schema.field(field).type
            raise FilterError(path, f"cannot compare field {quote(field)} of type {kind} this way ({exc})") from None

    return mask


def _all(masks: list[Mask]) -> Mask:
    def mask(table: pa.Table) -> np.ndarray:
        out = np.ones(table.num_rows, dtype=bool)
        for m in masks:
            out &= m(table)
        return out

    return mask


def _any(masks: list[Mask]) -> Mask:
    def mask(table: pa.Table) -> np.ndarray:
        out = np.zeros(table.num_rows, dtype=bool)
        for m in masks:
            out |= m(table)
        return out

    return mask


def _compile(spec: Any, path: str, depth: int) -> Mask:
    if depth > MAX_DEPTH:
        raise FilterError(path, f"filter nests deeper than {MAX_DEPTH} levels")
    if not isinstance(spec, Mapping) or not spec:
        raise FilterError(path, f"expected a non-empty JSON object, got {_show(spec)}")
    masks: list[Mask] = []
    for key, value in spec.items():
        here = f"{path}.{key}"
        if key in ("and", "or"):
            if not isinstance(value, list) or not value:
                raise FilterError(here, f"{key} takes a non-empty list of filters")
            parts = [_compile(v, f"{here}[{i}]", depth + 1) for i, v in enumerate(value)]
            masks.append(_all(parts) if key == "and" else _any(parts))
        elif key == "not":
            inner = _compile(value, here, depth + 1)
            masks.append(lambda table, inner=inner: ~inner(table))
        elif not isinstance(key, str) or not key:
            raise FilterError(path, f"field names must be non-empty strings, got {_show(key)}")
        else:
            if not isinstance(value, Mapping) or len(value) != 1:
                raise FilterError(here, f"expected one operator object such as {{'eq': ...}}, got {_show(value)}")
            ((op, arg),) = value.items()
            masks.append(_leaf(key, op, arg, here))
    return masks[0] if len(masks) == 1 else _all(masks)


class Filter:
    """A compiled filter: `mask(table)` is a boolean array, one entry per payload row."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = spec
        self._mask = _compile(spec, "filter", 0)

    def mask(self, table: pa.Table) -> np.ndarray:
        return self._mask(table)


def operators_used(spec: Any) -> set[str]:
    """The operators a (valid) filter applies, found by walking its structure: a field or a value that
    happens to be named like an operator does not count."""
    found: set[str] = set()
    if not isinstance(spec, Mapping):
        return found
    for key, value in spec.items():
        if key in ("and", "or") and isinstance(value, list):
            for part in value:
                found |= operators_used(part)
        elif key == "not":
            found |= operators_used(value)
        elif isinstance(value, Mapping):
            found.update(op for op in value if op in OPERATORS)
    return found


def compile_filter(spec: Mapping[str, Any] | None) -> Filter | None:
    """None or {} means no filter; anything else must be valid, or FilterError says where it is not."""
    if spec is None or (isinstance(spec, Mapping) and not spec):
        return None
    return Filter(spec)
