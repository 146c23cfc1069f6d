"""Long documents -> overlapping chunks that remember where they came from.

A chunk is at most `size` characters and overlaps the previous one by about
`overlap`. It ends at the best boundary in the second half of its window: a blank
line, else a sentence end, else whitespace, so chunks rarely cut a word or a
sentence. `start` and `end` are offsets into the document's text, so a citation
can point back to the exact passage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

DOCUMENT_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".rst", ".html", ".htm"})
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s")


@dataclass(frozen=True)
class Chunk:
    index: int
    start: int
    end: int
    text: str


def _boundary(text: str, lo: int, hi: int) -> int:
    """The best place to end a chunk in text[lo:hi]; hi when there is none."""
    window = text[lo:hi]
    blank = window.rfind("\n\n")
    if blank >= 0:
        return lo + blank
    sentences = list(_SENTENCE_END.finditer(window))
    if sentences:
        return lo + sentences[-1].end()
    space = max(window.rfind(" "), window.rfind("\n"))
    return lo + space if space >= 0 else hi


def chunk_text(text: str, size: int = 1000, overlap: int = 200) -> list[Chunk]:
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"chunk size must be >= 1 and 0 <= overlap < size (got size {size}, overlap {overlap})")
    chunks: list[Chunk] = []
    start, n = 0, len(text)
    while start < n:
        end = n if start + size >= n else _boundary(text, start + size // 2, start + size)
        piece = text[start:end]
        stripped = piece.strip()
        if stripped:
            lead = len(piece) - len(piece.lstrip())
            chunks.append(Chunk(len(chunks), start + lead, start + lead + len(stripped), stripped))
        if end >= n:
            break
        next_start = max(end - overlap, start + 1)
        if overlap:
            # Start the overlap at a word, not in the middle of one.
            space = text.find(" ", next_start, end)
            next_start = space + 1 if space >= 0 else next_start
        start = next_start
    return chunks


class _TextOfHTML(HTMLParser):
    BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "pre"})
    SKIP = frozenset({"script", "style", "head", "noscript"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _TextOfHTML()
    parser.feed(html)
    parser.close()
    text = re.sub(r"[ \t]+", " ", "".join(parser.parts))
    return re.sub(r"\s*\n\s*\n\s*", "\n\n", text).strip()


def read_document(path: Path) -> str:
    """The text of a .txt, .md or .html file (HTML without its tags, scripts and styles)."""
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return html_to_text(raw) if path.suffix.lower() in (".html", ".htm") else raw
