"""JSON bodies to the API's protobuf requests and its responses back to JSON.

A request body is the proto3 JSON form of the gRPC request (`google.protobuf.json_format`: field
names as in tessera.proto or lowerCamelCase, bytes as base64), with three conveniences: an enum
may be written short (`"text"` for `MODALITY_TEXT`, `"rrf"` for `FUSION_RRF`), a vector may be a
plain list of numbers, and a search may give `"query": "some text"` for one text part. Responses
use the proto's field names, short lowercase enums, and vectors as lists of floats (or, with
`"encoding_format": "base64"`, as base64 of little-endian float32, as the gRPC `Vector.packed`).
"""

from __future__ import annotations

import base64
from typing import Any, TypeVar

import numpy as np
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from tessera.v1 import tessera_pb2 as pb

M = TypeVar("M", bound=Message)
ENUM_PREFIX = {"Modality": "MODALITY_", "Fusion": "FUSION_"}
VECTOR = pb.Vector.DESCRIPTOR.full_name
STRUCT = "google.protobuf.Struct"


def parse(body: Any, message_type: type[M], where: str = "request body") -> M:
    """`body` (decoded JSON) as a `message_type`; a body that does not fit raises ValueError saying where."""
    if not isinstance(body, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(body).__name__}")
    normalised = _normalise(body, message_type.DESCRIPTOR)
    message = message_type()
    try:
        _fill(message, normalised)  # the common, well-typed body, ~5x faster than ParseDict
        return message
    except _Unusual:
        message = message_type()
    try:
        json_format.ParseDict(normalised, message)  # everything else, and the error messages
    except json_format.ParseError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return message


class _Unusual(Exception):
    """A body the fast path does not take as it is: json_format.ParseDict decides."""


_INTEGERS = frozenset(
    {FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_INT64}
)
_FLOATS = frozenset({FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE})


def _fill(message: Message, data: dict[str, Any]) -> None:
    """Set `message` from `data` when every value has exactly its field's JSON type; else raise _Unusual."""
    descriptor = message.DESCRIPTOR
    by_name = descriptor.fields_by_name
    oneofs: set[str] = set()
    for key, value in data.items():
        field = by_name.get(key) or descriptor.fields_by_camelcase_name.get(key)
        if field is None or value is None:
            raise _Unusual
        if field.containing_oneof is not None:
            if field.containing_oneof.name in oneofs:
                raise _Unusual
            oneofs.add(field.containing_oneof.name)
        if _repeated(field):
            if not isinstance(value, list):
                raise _Unusual
            target = getattr(message, field.name)
            if field.message_type is not None:
                for item in value:
                    if not isinstance(item, dict):
                        raise _Unusual
                    _fill(target.add(), item)
            else:
                target.extend(_scalar(field, v) for v in value)
        elif field.message_type is not None:
            if not isinstance(value, dict):
                raise _Unusual
            child = getattr(message, field.name)
            if field.message_type.full_name == STRUCT:
                try:
                    child.update(value)
                except (ValueError, TypeError):
                    raise _Unusual from None
            else:
                _fill(child, value)
            if not value:
                child.SetInParent()  # `{}` sets the field, as ParseDict does
        else:
            setattr(message, field.name, _scalar(field, value))


def _scalar(field: FieldDescriptor, value: Any) -> Any:
    kind = field.type
    if field.enum_type is not None:
        found = field.enum_type.values_by_name.get(value) if isinstance(value, str) else None
        if found is None:
            raise _Unusual
        return found.number
    if kind == FieldDescriptor.TYPE_STRING and type(value) is str:
        return value
    if kind in _INTEGERS and type(value) is int and value >= 0:
        return value
    if kind in _FLOATS and type(value) in (int, float):
        return float(value)
    if kind == FieldDescriptor.TYPE_BOOL and type(value) is bool:
        return value
    if kind == FieldDescriptor.TYPE_BYTES and type(value) is str:
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            raise _Unusual from None
    raise _Unusual


_FIELDS: dict[str, dict[str, FieldDescriptor]] = {}


def _normalise(value: Any, descriptor: Descriptor) -> Any:
    """Short enum names and plain-list vectors rewritten into proto3 JSON, guided by the message's fields."""
    if not isinstance(value, dict):
        return value
    fields = _FIELDS.get(descriptor.full_name)
    if fields is None:
        fields = _FIELDS[descriptor.full_name] = {
            **descriptor.fields_by_name,
            **{f.json_name: f for f in descriptor.fields},
        }
    out = {}
    for key, item in value.items():
        field = fields.get(key)
        if field is None:
            out[key] = item  # ParseDict names the unknown field
            continue
        out[key] = (
            [_field(field, v) for v in item] if _repeated(field) and isinstance(item, list) else _field(field, item)
        )
    return out


def _repeated(field: FieldDescriptor) -> bool:
    return field.is_repeated


def _field(field: FieldDescriptor, value: Any) -> Any:
    if field.enum_type is not None and isinstance(value, str):
        prefix = ENUM_PREFIX.get(field.enum_type.name, "")
        return value if value.upper().startswith(prefix) else prefix + value.upper()
    if field.message_type is not None:
        if field.message_type.full_name == VECTOR and isinstance(value, list):
            return {"values": value}
        if field.message_type.full_name != STRUCT:
            return _normalise(value, field.message_type)
    return value


def search_body(body: Any) -> Any:
    """`{"query": "text"}` as one text part; anything else as it is."""
    if isinstance(body, dict) and "query" in body:
        body = dict(body)
        query = body.pop("query")
        if not isinstance(query, str):
            raise ValueError("request body: `query` is text; give media or vectors as `parts`")
        if "parts" in body:
            raise ValueError("request body: give `query` or `parts`, not both")
        body["parts"] = [{"content": {"modality": "MODALITY_TEXT", "text": query}}]
    return body


def to_json(message: Message, *, base64_vectors: bool = False) -> dict[str, Any]:
    """A response message as JSON: every field present, short enums, vectors as float lists or base64.

    Read field by field from the message (json_format.MessageToDict took ~0.8 ms for ten hits,
    more than the search itself); the output is what MessageToDict writes with proto field names
    and fields without presence always printed, except: enums short, 64-bit integers as numbers,
    whole Struct numbers as integers, and vectors as above.
    """
    return _message(message, base64_vectors)


def _message(message: Message, b64: bool) -> Any:
    descriptor = message.DESCRIPTOR
    if descriptor.full_name == STRUCT:
        return {k: _value(v) for k, v in sorted(message.fields.items())}  # type: ignore[attr-defined]
    if descriptor.full_name == VECTOR:
        packed = message.packed  # type: ignore[attr-defined]
        if b64:
            return base64.b64encode(packed).decode("ascii") if packed else _pack(message.values)  # type: ignore[attr-defined]
        return np.frombuffer(packed, dtype="<f4").tolist() if packed else list(message.values)  # type: ignore[attr-defined]
    out: dict[str, Any] = {}
    for name, kind, extra in _plan(descriptor):
        if kind == _SINGLE_MESSAGE:
            if message.HasField(name):
                out[name] = _message(getattr(message, name), b64)
            continue
        value = getattr(message, name)
        if kind == _ENUM:
            out[name] = extra.get(value, value)
        elif kind == _ENUMS:
            out[name] = [extra.get(v, v) for v in value]
        elif kind == _MESSAGES:
            out[name] = [_message(v, b64) for v in value]
        elif kind == _BYTES:
            out[name] = base64.b64encode(value).decode("ascii")
        elif kind == _LIST:
            out[name] = list(value)
        else:
            out[name] = value
    return out


_SCALAR, _ENUM, _ENUMS, _SINGLE_MESSAGE, _MESSAGES, _BYTES, _LIST = range(7)
_PLANS: dict[str, list[tuple[str, int, Any]]] = {}


def _plan(descriptor: Descriptor) -> list[tuple[str, int, Any]]:
    """(field name, how to write it, enum names) for each field of a message type, worked out once."""
    plan = _PLANS.get(descriptor.full_name)
    if plan is None:
        plan = []
        for field in descriptor.fields:
            extra = None
            if field.enum_type is not None:
                prefix = ENUM_PREFIX.get(field.enum_type.name, "")
                extra = {v.number: v.name[len(prefix) :].lower() for v in field.enum_type.values}
                kind = _ENUMS if _repeated(field) else _ENUM
            elif field.message_type is not None:
                kind = _MESSAGES if _repeated(field) else _SINGLE_MESSAGE
            elif field.type == FieldDescriptor.TYPE_BYTES:
                kind = _BYTES
            else:
                kind = _LIST if _repeated(field) else _SCALAR
            plan.append((field.name, kind, extra))
        _PLANS[descriptor.full_name] = plan
    return plan


def _value(value: Any) -> Any:
    """A google.protobuf.Value as Python; whole numbers as integers, as `wire.struct_to_dict` does."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return {k: _value(v) for k, v in sorted(value.struct_value.fields.items())}
    if kind == "list_value":
        return [_value(v) for v in value.list_value.values]
    return None


def _pack(values: Any) -> str:
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode("ascii")


# ---- OpenAPI schemas from the proto descriptors -------------------------------------------------
_SCALARS = {
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number"},
    FieldDescriptor.TYPE_DOUBLE: {"type": "number"},
}


def schemas() -> dict[str, Any]:
    """A JSON schema for each message of tessera.v1, as `components.schemas` of the OpenAPI document."""
    out: dict[str, Any] = {}
    for descriptor in pb.DESCRIPTOR.message_types_by_name.values():
        properties = {}
        for field in descriptor.fields:
            properties[field.name] = _schema(field)
        out[descriptor.name] = {"type": "object", "properties": properties}
    out["Vector"] = {
        "description": "a list of floats, or {packed: base64 little-endian float32} / {values: [...]}",
        "oneOf": [{"type": "array", "items": {"type": "number"}}, out["Vector"]],
    }
    return out


def _schema(field: FieldDescriptor) -> dict[str, Any]:
    if field.enum_type is not None:
        prefix = ENUM_PREFIX.get(field.enum_type.name, "")
        names = [v.name for v in field.enum_type.values]
        one: dict[str, Any] = {"type": "string", "enum": names + [n[len(prefix) :].lower() for n in names]}
    elif field.message_type is not None:
        one = (
            {"type": "object", "additionalProperties": True}
            if field.message_type.full_name == STRUCT
            else {"$ref": f"#/components/schemas/{field.message_type.name}"}
        )
    else:
        one = _SCALARS.get(field.type, {"type": "integer"})
    return {"type": "array", "items": one} if _repeated(field) else one
