"""`POST /v1/embeddings` as OpenAI's embeddings API answers it, on the Service's Embed.

`input` is a string or a list of strings (text only: other modalities go through `/v1/embed`),
`model` names a Tessera space ("minilm", "digits", ...), `encoding_format` is "float" (default)
or "base64" (little-endian float32, what the `openai` package asks for and decodes itself).
`dimensions`, when given, must be the space's own dimension: vectors are not truncated.
`usage` counts whitespace-separated words, an estimate: Tessera has no billing tokens.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from tessera.service import Service
from tessera.v1 import tessera_pb2 as pb

FORMATS = ("float", "base64")


def embed_request(body: Any) -> tuple[pb.EmbedRequest, list[str], str, str]:
    """(the Embed request, the texts, the model as asked, the encoding format) for an OpenAI request body."""
    if not isinstance(body, dict):
        raise ValueError("request body: expected a JSON object with `input` and `model`")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ValueError("`model`: name a Tessera space, e.g. 'minilm'; GET /v1/spaces lists them")
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError(
            "`input`: give a string or a non-empty list of strings (token arrays and other modalities are not "
            "accepted here; POST /v1/embed takes images, audio, video and vectors)"
        )
    encoding = body.get("encoding_format") or "float"
    if encoding not in FORMATS:
        raise ValueError(f"`encoding_format`: use 'float' or 'base64', not {str(encoding)[:40]!r}")
    request = pb.EmbedRequest(space=model, items=[pb.Content(modality=pb.MODALITY_TEXT, text=t) for t in texts])
    return request, texts, model, encoding


async def embeddings(service: Service, body: Any) -> dict[str, Any]:
    request, texts, model, encoding = embed_request(body)
    response = await service.Embed(request)
    dimensions = body.get("dimensions")
    if dimensions is not None and dimensions != response.dim:
        raise ValueError(f"`dimensions`: space {model!r} has {response.dim}; vectors are not truncated")
    data = []
    for i, vector in enumerate(response.vectors):
        if encoding == "base64":
            embedding: Any = base64.b64encode(vector.packed).decode("ascii")
        else:
            embedding = np.frombuffer(vector.packed, dtype="<f4").tolist()
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    words = sum(len(t.split()) for t in texts)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": words, "total_tokens": words},
    }
