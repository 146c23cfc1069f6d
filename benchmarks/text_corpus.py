"""Real English sentences, gathered offline from the docstrings of Python's standard library.

Docstrings are written by people, vary from three words to long paragraphs,
and mix prose with code, so they exercise tokenisation, truncation and
padding the way user text does. The same Python version gives the same list.
"""

from __future__ import annotations

import ast
import re
import sysconfig
from pathlib import Path

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")

# A few inputs docstrings lack: other scripts, emoji, and one far past MiniLM's 256-token limit.
EXTRA_SENTENCES = [
    "Le chat dort sur le canapé depuis ce matin.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "東京は日本の首都です。",
    "Мы встретимся завтра у вокзала.",
    "🚀 launch at dawn, weather permitting ☀️",
    "ok",
    " ".join(["This sentence keeps going well past the model's maximum sequence length."] * 40),
]


def _docstrings(path: Path) -> list[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return []
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)))]
    return [doc for node in nodes if (doc := ast.get_docstring(node))]


def _source_files(include_site_packages: bool) -> list[Path]:
    paths = sysconfig.get_paths()
    stdlib = Path(paths["stdlib"])
    files = [p for p in sorted(stdlib.rglob("*.py")) if "site-packages" not in p.parts]
    if include_site_packages:
        files += sorted(Path(paths["purelib"]).rglob("*.py"))
    return [p for p in files if "test" not in p.parts and "tests" not in p.parts]


def real_sentences(n: int, *, include_site_packages: bool = False) -> list[str]:
    """The first `n` distinct sentences (3 to 600 characters) in a fixed walk of the stdlib.

    The stdlib holds ~17,000; `include_site_packages` continues into the
    installed packages' docstrings (numpy, torch, transformers, ...) for more.
    """
    seen: set[str] = set()
    out = list(EXTRA_SENTENCES)
    seen.update(out)
    for path in _source_files(include_site_packages):
        for doc in _docstrings(path):
            for sentence in _SENTENCE_END.split(" ".join(doc.split())):
                if 3 <= len(sentence) <= 600 and sentence not in seen:
                    seen.add(sentence)
                    out.append(sentence)
                    if len(out) >= n:
                        return out
    if len(out) < n:
        raise RuntimeError(f"only {len(out)} distinct sentences in the scanned sources; asked for {n}")
    return out
