"""The built wheel, installed into a fresh virtual environment, is the whole product.

A wheel once left out samples/digits and samples/spoken, and `tessera quickstart` printed
"digit-images image 0 items". These tests build the wheel from this source tree, check that it
ships every module and data file at its mapped path under the one import name `tessera`, install
it into a new virtual environment that sees the already installed dependencies but not the
editable install, and run the installed `tessera quickstart` from outside the repository.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Source folder -> its path inside the wheel (pyproject.toml, [tool.setuptools.package-dir]).
MAPPED = {
    "services": "tessera",
    "embedder": "tessera/embedder",
    "index": "tessera/index",
    "proto/tessera/v1": "tessera/v1",
}
# Package data: source folders shipped whole, and the stubs' data files.
DATA_FOLDERS = ("services/samples", "embedder/spaces")
STUB_PATTERNS = ("*.proto", "*_pb2*.py", "*.pyi")
# The repository folders that were top-level import names before the move to `tessera`.
OLD_NAMES = ("embedder", "index", "services", "proto")
# Left out of the copy the wheel is built from: local state that a fresh clone does not have.
NOT_SOURCE = (
    ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".pytest_cache",
    ".ruff_cache", ".hypothesis", ".benchmarks", "node_modules", "tessera-data", ".cache", ".whl", ".carry",
)  # fmt: skip
QUICKSTART_LIMIT_S = 60.0


def _source_files(folder: Path, pattern: str = "*") -> list[Path]:
    return sorted(p for p in folder.rglob(pattern) if p.is_file() and "__pycache__" not in p.parts)


def _wheel_path(source: Path) -> str:
    """Where a source file lies in the wheel."""
    rel = source.relative_to(REPO).as_posix()
    for src, dest in sorted(MAPPED.items(), key=lambda kv: -len(kv[0])):
        if rel.startswith(src + "/"):
            return dest + rel[len(src) :]
    raise AssertionError(f"{rel} is in no mapped folder")


def _expected_wheel_files() -> set[str]:
    sources: list[Path] = []
    for folder in ("services", "embedder", "index"):
        sources += _source_files(REPO / folder, "*.py")
    for folder in DATA_FOLDERS:
        sources += _source_files(REPO / folder)
    for pattern in (*STUB_PATTERNS, "__init__.py"):
        sources += _source_files(REPO / "proto/tessera/v1", pattern)
    sources.append(REPO / "services" / "py.typed")
    return {_wheel_path(p) for p in sources}


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without anything that would point Python at this venv or this repository."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    return {**env, "PYTHONNOUSERSITE": "1", **extra}


def _run(cmd: list[str], cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=_clean_env(**env), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory outside the repository, so its folders cannot be imported from cwd."""
    return tmp_path_factory.mktemp("cwd")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory, outside: Path) -> Path:
    # Built from a copy of the tree: setuptools builds in place, and a stale build/ folder in the
    # checkout (or a second test run at the same time) would leak into or race on the wheel.
    src = tmp_path_factory.mktemp("src") / "tessera"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    out = tmp_path_factory.mktemp("wheelhouse")
    # Offline: no build isolation (the installed setuptools builds it) and no index.
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
    result = _run([*cmd, "-w", str(out), str(src)], cwd=outside)
    assert result.returncode == 0, result.stdout + result.stderr
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path, outside: Path) -> dict[str, object]:
    """A fresh venv seeing this venv's dependencies (not the editable tessera), with the wheel installed."""
    root = tmp_path_factory.mktemp("venv") / "fresh"
    result = _run([sys.executable, "-m", "venv", "--without-pip", str(root)], cwd=outside)
    assert result.returncode == 0, result.stderr
    python = root / "bin" / "python"
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=outside)
    site_packages = Path(purelib.stdout.strip())
    assert site_packages.is_dir() and site_packages.is_relative_to(root), purelib
    # Plain path lines in a .pth go onto sys.path, but the .pth files in that folder are not
    # processed, so the editable install's finder (__editable__...pth) stays out.
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site_packages / "_tessera_test_deps.pth").write_text("".join(f"{p}\n" for p in ours))
    before = _run([str(python), "-c", "import tessera; print(tessera.__file__)"], cwd=outside)
    # --ignore-installed: the editable tessera-multimodal's metadata is visible through the .pth, and
    # pip would otherwise call the wheel already installed (or try to uninstall the editable one).
    cmd = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index"]
    result = _run([*cmd, "--ignore-installed", str(wheel)], cwd=outside)
    assert result.returncode == 0, result.stdout + result.stderr
    return {"root": root, "python": python, "site_packages": site_packages, "before": before}


@pytest.mark.slow
def test_wheel_has_one_top_level_name_and_every_module_and_data_file(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        dist_info = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
        assert dist_info == {"tessera_multimodal-0.1.0.dist-info"}, dist_info
        top_level = zf.read(f"{dist_info.pop()}/top_level.txt").decode().split()
    files = [n for n in names if not n.split("/")[0].endswith(".dist-info")]
    print(f"\nwheel {wheel.name}: {len(names)} files, {len(files)} under tessera/")
    assert [n for n in files if not n.startswith("tessera/")] == []
    assert top_level == ["tessera"]
    expected = _expected_wheel_files()
    # The data the quickstart and the built-in `digits` space read, by name, so a test of an empty
    # source tree cannot pass.
    for needed in (
        "tessera/samples/sentences.txt",
        "tessera/samples/clip.mp4",
        "tessera/samples/digits/7.png",
        "tessera/samples/spoken/7_jackson_0.wav",
        "tessera/embedder/spaces/digits/space.json",
        "tessera/embedder/spaces/digits/weights.safetensors",
        "tessera/v1/tessera.proto",
        "tessera/v1/tessera_pb2.pyi",
        "tessera/v1/tessera_pb2_grpc.py",
        "tessera/py.typed",
    ):
        assert needed in expected, needed
    assert sorted(expected - set(files)) == []


@pytest.mark.slow
def test_fresh_venv_imports_tessera_only(venv: dict[str, object], outside: Path) -> None:
    before = venv["before"]
    assert isinstance(before, subprocess.CompletedProcess)
    # Before the wheel went in, the fresh venv saw the dependencies but not the editable tessera.
    assert before.returncode != 0 and "ModuleNotFoundError: No module named 'tessera'" in before.stderr, (
        before.stdout + before.stderr
    )
    probe = f"""
import importlib, json, sys
import tessera
import numpy  # a dependency, seen through the .pth
heavy = sorted(m for m in ("torch", "faiss") if m in sys.modules)
old = {{}}
for name in {OLD_NAMES!r}:
    try:
        old[name] = getattr(importlib.import_module(name), "__file__", None) or "namespace package"
    except ModuleNotFoundError:
        old[name] = None
print(json.dumps({{"tessera": tessera.__file__, "heavy": heavy, "old": old}}))
"""
    result = _run([str(venv["python"]), "-c", probe], cwd=outside)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert Path(found["tessera"]).is_relative_to(venv["site_packages"]), found
    assert found["heavy"] == [], found
    assert found["old"] == dict.fromkeys(OLD_NAMES), found


@pytest.mark.slow
def test_installed_quickstart_fills_every_corpus_offline_in_under_a_minute(
    venv: dict[str, object], outside: Path, tmp_path: Path
) -> None:
    tessera = Path(str(venv["root"])) / "bin" / "tessera"
    assert tessera.is_file()
    helped = _run([str(tessera), "quickstart", "--help"], cwd=outside)
    assert helped.returncode == 0 and "--data-dir" in helped.stdout, helped.stdout + helped.stderr

    offline = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    start = time.perf_counter()
    result = _run([str(tessera), "quickstart", "--data-dir", str(tmp_path / "data")], cwd=outside, **offline)
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout

    corpora_block = out.split("\nCorpora:\n")[1].split("\n\n")[0]
    counts = {
        m["name"]: int(m["count"])
        for m in re.finditer(r"^  (?P<name>\S+) +(?P<modality>\w+) +(?P<count>\d+) items  index ", corpora_block, re.M)
    }
    print(f"\ninstalled quickstart: {seconds:.1f} s; corpora {counts}")
    samples = REPO / "services" / "samples"
    sentences = [s for s in (samples / "sentences.txt").read_text().splitlines() if s.strip()]
    expected = {
        "passages": len(sentences),
        "digit-images": len(list((samples / "digits").glob("*.png"))),
        "spoken-digits": len(list((samples / "spoken").glob("*.wav"))),
    }
    assert all(n > 0 for n in expected.values()), expected
    assert counts == expected, corpora_block
    for modality in ("text", "image", "audio", "video", "vector"):
        assert f"\n  {modality} " in out, out
    assert seconds < QUICKSTART_LIMIT_S, f"installed quickstart took {seconds:.1f} s"


def test_quickstart_refuses_incomplete_samples(tmp_path: Path) -> None:
    from tessera.quickstart import run_quickstart, samples_dir

    for missing in ("digits", "spoken"):
        folder = tmp_path / missing
        shutil.copytree(samples_dir(), folder)
        shutil.rmtree(folder / missing)
        (folder / missing).mkdir()  # present but empty is as incomplete as absent
        with pytest.raises(FileNotFoundError, match=rf"{missing}.*installation is incomplete"):
            run_quickstart(folder=folder, data_dir=tmp_path / "data")
