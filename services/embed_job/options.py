"""What a `tessera embed` job is asked to do: its options, checked, and the key a resumed run must match.

Its own module so both engines (`job.py` local, `ray_engine.py`) import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tessera.embedder import Space

from .sources import InputError, input_fingerprint

ENGINES = ("local", "ray")
ON_ERROR = ("skip", "fail")
DEFAULT_PART_ROWS = 8192


@dataclass(frozen=True)
class EmbedOptions:
    input: Path
    output: Path
    space: str = "minilm"
    modality: str | None = None  # None: from the file suffixes (folders), text (tables)
    column: str | None = None  # table content column; None: "text"
    id_column: str | None = None  # None: row numbers (tables), relative paths (folders)
    passthrough: tuple[str, ...] | None = None  # None: every other column
    batch_size: int | None = None  # None: the encoder's default
    workers: int | None = None  # decode processes (local) or encoder actors (ray); None: auto
    device: str | None = None  # None: CUDA when present
    on_error: str = "fail"
    part_rows: int = DEFAULT_PART_ROWS
    engine: str = "local"
    ray_address: str | None = None
    overwrite: bool = False

    def validate(self) -> None:
        if self.on_error not in ON_ERROR:
            raise InputError(f"--on-error must be one of {ON_ERROR}, not {self.on_error!r}")
        if self.engine not in ENGINES:
            raise InputError(f"--engine must be one of {ENGINES}, not {self.engine!r}")
        for name in ("part_rows", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1, not {value}")
        if self.workers is not None and self.workers < 0:
            raise InputError(f"--workers must be 0 or more, not {self.workers}")

    def space_ref(self) -> str:
        """The space as every process can load it: directories by absolute path."""
        return str(Path(self.space).resolve()) if Path(self.space).is_dir() else self.space

    def job_key(self, space: Space) -> dict[str, Any]:
        """What decides the output's content; a re-run with the same key resumes, another is refused."""
        source = self.input.resolve()
        return {
            "input": str(source),
            "input_fingerprint": input_fingerprint(source),
            "space": space.id,
            "modality": self.modality,
            "column": self.column,
            "id_column": self.id_column,
            "passthrough": list(self.passthrough) if self.passthrough is not None else None,
            "part_rows": self.part_rows,
            "on_error": self.on_error,
        }
