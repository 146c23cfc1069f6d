"""Every ```python block of README.md runs here, so a stale snippet fails CI.

The blocks of one section (the text under one heading) run in order in one namespace, in a
fresh interpreter whose working directory is an empty temporary folder, as a reader would paste
them: `tessera.connect("./tessera-data")` lands in that folder. An ```text block right after an
`<!-- output -->` line is what the python block before it prints; the test compares the two
(numbers with a decimal point to within 0.01, so another CPU's rounding does not fail it;
everything else exactly).

The server part of the tour talks to "127.0.0.1:50051" (and over HTTP to "127.0.0.1:8080"). The
test starts one real `python -m tessera serve --port 0 --http-port 0` for the whole module and
replaces those literals in the code with the addresses the server printed, so the snippets run
against a live server on a free port.
Sections that use it run in README order (a later one may use a corpus an earlier one made).

The README's test command is checked too: it must sit in a bash block after
`<!-- test-command -->`, and the awk program in .ci/run must extract exactly that command.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SERVER_LITERAL = "127.0.0.1:50051"  # what the README's server snippets connect to
HTTP_LITERAL = "127.0.0.1:8080"  # and its HTTP/JSON snippets (`tessera serve --http-port 8080`)
TEST_COMMAND = (
    "(command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)) && "
    'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[cpu,dev]" && python -m pytest'
)
MAIN_JOB = 'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[cpu]" && tessera quickstart'
NUMBER = re.compile(r"[-+]?\d+\.\d+")
TOLERANCE = 0.01


@dataclass
class Block:
    line: int  # the README line of the opening fence
    code: str
    expected: str | None = None  # the output shown after it, if any


@dataclass
class Section:
    title: str
    line: int
    blocks: list[Block] = field(default_factory=list)

    @property
    def uses_server(self) -> bool:
        return any(SERVER_LITERAL in b.code or HTTP_LITERAL in b.code for b in self.blocks)


def parse_fences(text: str) -> list[tuple[int, str, str, str]]:
    """(line of the opening fence, info string, body, heading it is under) for every fenced block."""
    blocks, heading, lines = [], "", text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            info, start, body = line[3:].strip(), i + 1, []
            i += 1
            while i < len(lines) and lines[i].rstrip() != "```":
                body.append(lines[i])
                i += 1
            assert i < len(lines), f"README.md:{start}: a ``` block is never closed"
            blocks.append((start, info, "\n".join(body) + "\n", heading))
        elif line.startswith("#"):
            heading = line.lstrip("#").strip()
        i += 1
    return blocks


def parse_sections(text: str) -> list[Section]:
    lines = text.splitlines()
    sections: list[Section] = []
    for start, info, body, heading in parse_fences(text):
        before = next((lines[j] for j in range(start - 2, -1, -1) if lines[j].strip()), "")
        if before.strip() == "<!-- output -->":
            assert info == "text", f"README.md:{start}: the block after <!-- output --> must be ```text"
            assert sections and sections[-1].blocks, f"README.md:{start}: output shown before any python block"
            last = sections[-1].blocks[-1]
            assert last.expected is None, f"README.md:{start}: two outputs for the block at line {last.line}"
            last.expected = body
        elif info == "python":
            if not sections or sections[-1].title != heading:
                sections.append(Section(heading, start))
            sections[-1].blocks.append(Block(start, body))
    return sections


SECTIONS = parse_sections(README.read_text(encoding="utf-8"))

# Runs in the snippet's interpreter: executes the blocks in one namespace, compiled with the
# README's own line numbers, and records what each block printed.
RUNNER = r"""
import contextlib, io, json, sys
blocks = json.loads(open(sys.argv[1], encoding="utf-8").read())
namespace = {"__name__": "__main__"}
printed = []
for block in blocks:
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            exec(compile("\n" * block["line"] + block["code"], sys.argv[3], "exec"), namespace)
    finally:
        printed.append(buffer.getvalue())
        with open(sys.argv[2], "w", encoding="utf-8") as out:
            json.dump(printed, out)
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}  # a reader's clean shell
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


class Server:
    def __init__(self, data_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tessera", "serve", "--data-dir", str(data_dir), "--port", "0", "--http-port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        line = self.proc.stdout.readline()
        if "tessera serving on" not in line:
            self.proc.kill()
            raise AssertionError(f"tessera serve did not start: {line!r} {self.proc.stderr.read()[-2000:]}")
        self.address = line.split(" on ")[1].split(" ")[0]
        self.http_address = self.proc.stdout.readline().split(" on ")[1].split(" ")[0]  # "tessera http on ..."
        self.done: set[int] = set()  # the server sections already run against it

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def readme_server(tmp_path_factory: pytest.TempPathFactory):
    server = Server(tmp_path_factory.mktemp("readme-server") / "server-data")
    yield server
    server.stop()


def _matches(expected: str, actual: str) -> bool:
    def lines(text: str) -> list[str]:
        return [line.rstrip() for line in text.rstrip().splitlines()]

    want, got = lines(expected), lines(actual)
    if len(want) != len(got):
        return False
    for w, g in zip(want, got, strict=True):
        if NUMBER.split(w) != NUMBER.split(g):
            return False
        numbers = zip(NUMBER.findall(w), NUMBER.findall(g), strict=True)
        if any(abs(float(a) - float(b)) > TOLERANCE for a, b in numbers):
            return False
    return True


def run_section(section: Section, cwd: Path, address: str | None, http_address: str | None = None) -> None:
    cwd.mkdir(parents=True, exist_ok=True)
    blocks = []
    for block in section.blocks:
        code = block.code.replace(SERVER_LITERAL, address) if address else block.code
        code = code.replace(HTTP_LITERAL, http_address) if http_address else code
        blocks.append({"line": block.line, "code": code})
    spec, printed = cwd.parent / f"{cwd.name}-blocks.json", cwd.parent / f"{cwd.name}-printed.json"
    spec.write_text(json.dumps(blocks), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, str(spec), str(printed), str(README)],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    outputs = json.loads(printed.read_text(encoding="utf-8")) if printed.exists() else []
    assert result.returncode == 0, (
        f"README.md section {section.title!r} (line {section.line}) failed:\n"
        f"{result.stderr[-6000:]}\nit printed:\n{''.join(outputs)[-2000:]}"
    )
    assert len(outputs) == len(section.blocks)
    for block, out in zip(section.blocks, outputs, strict=True):
        if block.expected is not None and not _matches(block.expected, out):
            pytest.fail(
                f"README.md:{block.line}: the output shown is not what the block prints.\n"
                f"shown:\n{block.expected}\nprinted:\n{out}",
                pytrace=False,
            )


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40]


def test_readme_has_python_blocks() -> None:
    assert sum(len(s.blocks) for s in SECTIONS) >= 8
    assert any(s.uses_server for s in SECTIONS)
    assert all(b.expected is not None for s in SECTIONS[:3] for b in s.blocks), "the tour shows what it prints"


@pytest.mark.parametrize("index", range(len(SECTIONS)), ids=[_slug(s.title) for s in SECTIONS])
def test_readme_section_runs(index: int, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    section = SECTIONS[index]
    if not section.uses_server:
        run_section(section, tmp_path / "work", None)
        return
    server: Server = request.getfixturevalue("readme_server")
    for earlier in range(index + 1):  # the earlier server sections first, as a reader runs them
        if SECTIONS[earlier].uses_server and earlier not in server.done:
            run_section(SECTIONS[earlier], tmp_path / f"work-{earlier}", server.address, server.http_address)
            server.done.add(earlier)


def test_readme_test_command_is_what_ci_runs() -> None:
    text = README.read_text(encoding="utf-8")
    marker = text.index("<!-- test-command -->\n")
    assert text[marker:].startswith(f"<!-- test-command -->\n```bash\n{TEST_COMMAND}\n```\n")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    program = re.search(r"command=\$\(awk '([^']+)' README\.md\)", ci)
    assert program, ".ci/run no longer extracts the command with awk"
    extracted = subprocess.run(
        ["awk", program.group(1), "README.md"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert extracted == TEST_COMMAND + "\n"


def test_readme_keeps_the_main_job_command() -> None:
    fences = parse_fences(README.read_text(encoding="utf-8"))
    assert any(info == "bash" and MAIN_JOB in body for _, info, body, _ in fences)
