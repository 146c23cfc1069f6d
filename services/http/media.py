"""Uploaded files as query parts and items, and stored media bytes back with a content type."""

from __future__ import annotations

import json
import mimetypes
from typing import Any

from starlette.datastructures import FormData, UploadFile

from tessera.v1 import tessera_pb2 as pb

MODALITY_OF_TYPE = {"image": pb.MODALITY_IMAGE, "audio": pb.MODALITY_AUDIO, "video": pb.MODALITY_VIDEO}
SIGNATURES = (  # (offset, magic bytes, media type): enough to show a stored item in a browser
    (0, b"\x89PNG", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF8", "image/gif"),
    (8, b"WEBP", "image/webp"),
    (0, b"BM", "image/bmp"),
    (8, b"WAVE", "audio/wav"),
    (0, b"fLaC", "audio/flac"),
    (0, b"OggS", "audio/ogg"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"\xff\xfb", "audio/mpeg"),
    (4, b"ftyp", "video/mp4"),
    (0, b"\x1a\x45\xdf\xa3", "video/webm"),
)


def media_type(data: bytes) -> str:
    for offset, magic, kind in SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return kind
    return "application/octet-stream"


def upload_modality(upload: UploadFile, given: str | None, where: str) -> int:
    """The modality a form names, else the one the file's content type (or name) says."""
    if given:
        name = given.upper()
        name = name if name.startswith("MODALITY_") else f"MODALITY_{name}"
        if name not in pb.Modality.keys():
            raise ValueError(f"{where}: unknown modality {given!r}; use image, audio, video or text")
        return pb.Modality.Value(name)
    kind = upload.content_type or ""
    if not kind or kind == "application/octet-stream":
        kind = mimetypes.guess_type(upload.filename or "")[0] or ""
    modality = MODALITY_OF_TYPE.get(kind.split("/", 1)[0])
    if modality is None:
        raise ValueError(
            f"{where}: cannot tell the modality of {upload.filename or 'the file'!r} (content type {kind or 'none'}); "
            "send a `modality` field: image, audio or video"
        )
    return modality


def uploads(form: FormData, field: str = "file") -> list[UploadFile]:
    return [v for v in form.getlist(field) if isinstance(v, UploadFile)]


def form_json(form: FormData, field: str) -> Any:
    value = form.get(field)
    if value is None or value == "":
        return None
    try:
        return json.loads(str(value))
    except json.JSONDecodeError as exc:
        raise ValueError(f"form field {field!r} is not valid JSON ({exc})") from None


def form_list(form: FormData, field: str) -> list[str]:
    """A repeated field, or one with comma-separated values."""
    out: list[str] = []
    for value in form.getlist(field):
        out += [v.strip() for v in str(value).split(",") if v.strip()]
    return out


async def search_request(form: FormData) -> dict[str, Any]:
    """A SearchRequest (JSON form) from a multipart search: `file` parts and/or a `text` field, plus options."""
    parts: list[dict[str, Any]] = []
    text = form.get("text")
    if isinstance(text, str) and text.strip():
        parts.append({"content": {"modality": "MODALITY_TEXT", "text": text}})
    modalities = form.getlist("modality")
    for i, upload in enumerate(uploads(form)):
        given = str(modalities[i]) if i < len(modalities) else None
        modality = upload_modality(upload, given, f"file {i}")
        data = await upload.read()
        parts.append({"content": {"modality": pb.Modality.Name(modality), "data": _b64(data)}})
    if not parts:
        raise ValueError("a multipart search needs a `file` part or a `text` field")
    body: dict[str, Any] = {"parts": parts}
    for field in ("space", "fusion"):
        if form.get(field):
            body[field] = str(form.get(field))
    for field in ("top_k", "nprobe", "ef_search"):
        if form.get(field):
            try:
                body[field] = int(str(form.get(field)))
            except ValueError:
                raise ValueError(
                    f"form field {field!r}: give a whole number, got {str(form.get(field))[:40]!r}"
                ) from None
    if form_list(form, "corpora"):
        body["corpora"] = form_list(form, "corpora")
    if form_list(form, "target_modalities"):
        body["target_modalities"] = form_list(form, "target_modalities")
    filter_ = form_json(form, "filter")
    if filter_ is not None:
        body["filter"] = filter_
    return body


async def upsert_items(form: FormData) -> list[dict[str, Any]]:
    """Items (JSON form) from a multipart upsert: one per `file` part, with optional `id` and `metadata` fields
    in the same order (by default the id is the file name and there is no metadata)."""
    files = uploads(form)
    if not files:
        raise ValueError("a multipart upsert needs one or more `file` parts")
    ids = [str(v) for v in form.getlist("id")]
    metadata = [str(v) for v in form.getlist("metadata")]
    items = []
    for i, upload in enumerate(files):
        item: dict[str, Any] = {
            "id": ids[i] if i < len(ids) else (upload.filename or f"file-{i}"),
            "content": {"data": _b64(await upload.read())},
        }
        if i < len(metadata) and metadata[i]:
            try:
                item["metadata"] = json.loads(metadata[i])
            except json.JSONDecodeError as exc:
                raise ValueError(f"metadata of file {i}: not valid JSON ({exc})") from None
        items.append(item)
    return items


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")
