from __future__ import annotations

import os
from pathlib import Path

import pytest

# Importing tessera.embedder.encoders first makes torchvision importable next to CPU torch
# (embedder/_torchvision_compat.py), before any test imports transformers.
import tessera.embedder.encoders  # noqa: F401  (installs the torchvision shim before transformers)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TESSERA_SHARED_DATA", REPO.parent / "shared" / "data"))
MEDIA = SHARED_DATA / "media"
FSDD = SHARED_DATA / "fsdd" / "recordings"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the shared data folder is missing at {SHARED_DATA}; set TESSERA_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
def minilm_space():
    from tessera.embedder import load_space

    return load_space("minilm")


@pytest.fixture(scope="session")
def bind_space():
    from tessera.embedder import load_space

    return load_space("minilm-bind-init")


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSERA_DATA", str(tmp_path / "tessera-data"))
