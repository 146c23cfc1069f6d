"""The multimodal context builder behind `tessera rag`: retrieve, then assemble a prompt-ready context.

It does not call a language model. `build_context` routes the question across
corpora (or searches the named ones), numbers what it found, and returns text
passages with citations (source file and character offsets, when ingest chunked
them) plus references to the images, audio and video that matched. Render it as
Markdown or JSON, or pass `generate`, any callable from prompt to answer, to have
the answer filled in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tessera.client import Client, Hit


@dataclass(frozen=True)
class Citation:
    number: int
    id: str
    corpus: str
    modality: str
    score: float  # calibrated: comparable across corpora and modalities
    raw_score: float
    text: str = ""
    uri: str = ""
    source: str = ""
    start: int | None = None
    end: int | None = None

    @property
    def where(self) -> str:
        place = self.source or self.uri or f"{self.corpus}/{self.id}"
        return f"{place}, characters {self.start}-{self.end}" if self.start is not None else place


@dataclass
class RagContext:
    question: str
    passages: list[Citation] = field(default_factory=list)
    media: list[Citation] = field(default_factory=list)
    searched: list[str] = field(default_factory=list)
    answer: str | None = None

    def prompt(self) -> str:
        """The context and the question, with the instruction to cite by number."""
        lines = ["Answer the question using only the context below. Cite sources as [n].", "", "Context:"]
        lines += [f"[{c.number}] ({c.where}) {c.text}" for c in self.passages]
        lines += [f"[{c.number}] ({c.modality}: {c.uri or c.id}, corpus {c.corpus})" for c in self.media]
        return "\n".join([*lines, "", f"Question: {self.question}"])

    def to_markdown(self) -> str:
        out = [f"## Question\n\n{self.question}\n"]
        if self.answer is not None:
            out.append(f"## Answer\n\n{self.answer}\n")
        out.append("## Context\n")
        if not self.passages and not self.media:
            out.append(f"Nothing relevant was found in {', '.join(self.searched) or 'any corpus'}.\n")
        for c in self.passages:
            out.append(f"**[{c.number}]** {c.text}\n\n> {c.where} · corpus `{c.corpus}` · score {c.score:+.3f}\n")
        if self.media:
            out.append("## Media\n")
            out += [
                f"- **[{c.number}]** {c.modality} `{c.uri or c.id}` · corpus `{c.corpus}` · score {c.score:+.3f}"
                for c in self.media
            ]
        return "\n".join(out).rstrip() + "\n"

    def to_json(self) -> str:
        return json.dumps(
            {
                "question": self.question,
                "answer": self.answer,
                "searched": self.searched,
                "passages": [asdict(c) for c in self.passages],
                "media": [asdict(c) for c in self.media],
                "prompt": self.prompt(),
            },
            indent=2,
        )


def _citation(number: int, hit: Hit) -> Citation:
    meta = hit.metadata
    start, end = meta.get("start"), meta.get("end")
    return Citation(
        number=number,
        id=hit.id,
        corpus=hit.corpus,
        modality=hit.modality,
        score=hit.calibrated_score,
        raw_score=hit.raw_score,
        text=hit.text,
        uri=hit.uri,
        source=str(meta.get("source") or meta.get("path") or ""),
        start=int(start) if start is not None else None,
        end=int(end) if end is not None else None,
    )


def build_context(
    client: Client,
    question: str,
    *,
    space: str | None = None,
    corpora: Sequence[str] | None = None,
    top_k: int = 8,
    filter: dict[str, Any] | None = None,
    generate: Callable[[str], str] | None = None,
    timeout: float | None = None,
) -> RagContext:
    """Retrieve for `question` from `corpora` (default: all); `space` defaults to the one they share."""
    if not question.strip():
        raise ValueError("ask a question: the text is empty")
    result = client.search(
        [("text", question)], space=space, corpora=list(corpora or []), top_k=top_k, filter=filter, timeout=timeout
    )
    context = RagContext(question=question, searched=list(result.searched))
    for number, hit in enumerate(result.hits, 1):
        citation = _citation(number, hit)
        (context.passages if hit.modality == "text" else context.media).append(citation)
    if generate is not None:
        context.answer = generate(context.prompt())
    return context
