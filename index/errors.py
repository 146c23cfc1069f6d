"""Errors of a whole corpus a caller can act on (kept apart so every corpus module can raise them)."""


class CorpusError(RuntimeError):
    """A corpus-level failure a caller can act on (read-only, closed, wrong format, too few vectors to train)."""


class CorpusNotFoundError(LookupError):
    """No corpus of that name (here, or in the Milvus server a catalog shares with other replicas)."""
