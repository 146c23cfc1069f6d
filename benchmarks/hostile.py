"""Hostile requests from a client holding a valid admin key, against a real `tessera serve` (issue 19).

One list of cases, shared with tests/test_hostile.py: each is (class, rpc, messages, allowed status codes).
The classes are the issue's: index factory strings, path-shaped and unknown space names, corpus names, ids,
oversized strings in every field, an Upsert stream that switches corpus, unknown enum values, media whose
headers lie, invisible-only text, ListSpaces' ids and dims, out-of-range numbers, BatchSearch and EmbedStream
carrying the above, and empty or unparseable messages to every RPC. Round 0 is fixed (the test sends it);
each further round adds seeded random variants of the same classes.

Every answer must
- carry one of the case's allowed codes, and never INTERNAL or UNKNOWN (gRPC's own answer to a unary message
  it cannot parse excepted, as benchmarks/fuzz_grpc.py documents);
- have a message of at most MAX_DETAILS characters that does not echo a long input;
and after each request the server must still answer Health and must not have opened a file outside its data
directory and the installed package (services/audit.py, enabled by TESSERA_AUDIT_OPENS, logs such opens).
Files named `planted.pt` and a valid space directory `planted_space/` lie in the server's working directory
and beside its data directory, so a request that reaches the filesystem finds something to open. Over the
whole run the server's RSS may grow by at most RSS_BUDGET_MB (measured after the warm-up loads its spaces).

    python -m benchmarks.hostile [--n-rounds 3] [--out benchmarks/results/hostile.json]

writes flat JSON: requests, distinct_requests, internal, unknown, deaths, files_opened_outside,
rss_start_mb, rss_end_mb, rss_growth_mb, by_code, by_class, failures (the first 20), commit, measured_at.
A server that dies (or swells past RSS_GUARD_MB, which would starve the machine) is counted and restarted,
so one defect does not hide the rest.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import text_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks.fuzz_grpc import DESERIALIZE_FAILURE, UNKNOWN_ENUMS, _wire_varint, raw_caller
from benchmarks.provenance import git_commit, now_utc
from benchmarks.reliability import rss_mb
from tessera.audit import ENV as AUDIT_ENV
from tessera.auth import METADATA_KEY
from tessera.v1 import tessera_pb2 as pb
from tessera.v1 import tessera_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parents[1]
API_KEY = "k-hostile-admin-7f3a"
MAX_DETAILS = 1000  # an error message longer than this is an echo in the making
ECHO = 300  # a message holding this much of a long input echoes it (a short quote is fine)
RSS_BUDGET_MB = 100.0
RSS_GUARD_MB = 2500.0  # above the start: restart the server before it takes the machine down
CALL_TIMEOUT_S = 30.0
NAME_GRAMMAR = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
LONG = 10_000
INTERNALS = ("faiss::", ".cpp:", "Error in ", "Traceback", 'File "/')  # never in a client's message
HUGE = 100_000

OK = frozenset({"OK"})
BAD = frozenset({"INVALID_ARGUMENT"})
MISSING = frozenset({"INVALID_ARGUMENT", "NOT_FOUND"})
OK_OR_BAD = frozenset({"OK", "INVALID_ARGUMENT"})
LOOKUP = frozenset({"OK", "INVALID_ARGUMENT", "NOT_FOUND"})  # Get/Delete of ids that may simply not be there
LIMIT = frozenset({"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"})
UNPARSEABLE = frozenset({"UNKNOWN", "INVALID_ARGUMENT"})  # UNKNOWN only as gRPC's deserialize failure

# The corpora the cases run against (created by `prepare`): text in MiniLM, raw 8-d vectors, and a second
# vector corpus for the Upsert stream that switches corpus.
TEXT = "notes"
VEC = "vecs"
VEC_B = "vecs-b"
DIM = 8
VEC_SPACE = f"vectors:{DIM}"
PLANTED_SPACE_SPEC = {
    "format": 1,
    "name": "planted",
    "version": "1",
    "dim": DIM,
    "similarity": "cosine",
    "encoders": {"vector": {"type": "identity_vector"}},
}


# ---- the server ---------------------------------------------------------------------------------------
class _ApiKey(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the admin key to every call, so fuzz_grpc's raw_caller works on a keyed server."""

    def __init__(self, key: str) -> None:
        self._metadata = ((METADATA_KEY, key),)

    def _details(self, details: Any) -> Any:
        return details._replace(metadata=[*(details.metadata or ()), *self._metadata])

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


class HostileServer:
    """One `tessera serve` on 127.0.0.1 with an admin key, the open audit on, and bait planted around it.

    Layout under `root`: cwd/ (the server's working directory), data/ (its --data-dir), planted.pt and
    planted_space/ both in cwd/ and in root/ (beside data/), cwd/tessera-data/spaces/planted_space/ (where a
    server that ignored --data-dir would look for saved spaces), audit.jsonl and server-N.log.
    """

    def __init__(self, root: Path, *extra_args: str) -> None:
        self.root = root
        self.extra_args = extra_args
        self.prepared = False  # whether `prepare` ran, so a restart warms up again
        self.cwd = root / "cwd"
        self.data_dir = root / "data"
        self.audit_file = root / "audit.jsonl"
        self.process: subprocess.Popen[bytes] | None = None
        self.address = ""
        self.starts = 0
        self.deaths = 0  # exits nobody asked for
        self.guard_restarts = 0
        self.planted = plant(root)

    def start(self) -> HostileServer:
        env = {**os.environ, AUDIT_ENV: str(self.audit_file), "TESSERA_API_KEYS": f"{API_KEY}:admin"}
        env.pop("TESSERA_DATA", None)  # as a user runs it: only --data-dir says where the data is
        env.setdefault("HF_HUB_OFFLINE", "1")
        self.starts += 1
        out = self.root / f"server-{self.starts}.out"
        with open(out, "wb") as stdout, open(self.root / f"server-{self.starts}.log", "wb") as stderr:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tessera.cli",
                    "serve",
                    "--data-dir",
                    str(self.data_dir),
                    "--port",
                    "0",
                    *self.extra_args,
                ],
                cwd=self.cwd,
                env=env,
                stdout=stdout,
                stderr=stderr,
            )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            match = re.search(r"tessera serving on (\S+)", out.read_text(errors="replace"))
            if match:
                self.address = match.group(1)
                break
            if self.process.poll() is not None:
                raise RuntimeError(f"tessera serve exited {self.process.returncode}: {self.log_tail()}")
            time.sleep(0.1)
        else:
            raise RuntimeError(f"tessera serve did not start in 180 s: {self.log_tail()}")
        options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
        self.channel = grpc.insecure_channel(self.address, options=options)
        self.authed = grpc.intercept_channel(self.channel, _ApiKey(API_KEY))
        self.stub = pb_grpc.TesseraStub(self.authed)
        self._health = health_pb2_grpc.HealthStub(self.channel)
        self._callers: dict[str, Callable[[list[bytes], float], Any]] = {}
        if not self.healthy(60):
            raise RuntimeError(f"tessera serve is not SERVING: {self.log_tail()}")
        return self

    def caller(self, rpc: str) -> Callable[[list[bytes], float], Any]:
        if rpc not in self._callers:
            self._callers[rpc] = raw_caller(self.authed, rpc)
        return self._callers[rpc]

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def healthy(self, timeout: float = 10.0) -> bool:
        try:
            answer = self._health.Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError:
            return False
        return answer.status == health_pb2.HealthCheckResponse.SERVING

    def rss_mb(self) -> float:
        try:
            return rss_mb(self.pid)
        except OSError:
            return float("nan")

    def audit_lines(self) -> list[dict[str, Any]]:
        if not self.audit_file.exists():
            return []
        return [json.loads(line) for line in self.audit_file.read_text().splitlines() if line.strip()]

    def audit_size(self) -> int:
        return self.audit_file.stat().st_size if self.audit_file.exists() else 0

    def log_tail(self, chars: int = 2000) -> str:
        log = self.root / f"server-{self.starts}.log"
        return log.read_text(errors="replace")[-chars:] if log.exists() else ""

    def restart(self, fresh: bool = False) -> None:
        """Stop and start again; `fresh` sets the data directory aside and starts on an empty one."""
        self.stop()
        if fresh and self.data_dir.exists():
            self.data_dir.rename(self.root / f"data-set-aside-{self.starts}")
        self.start()
        if self.prepared:
            prepare(self, create=fresh)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 60 s; the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        self.channel.close()
        return self.process.returncode


def plant(root: Path) -> list[Path]:
    """Bait files a request must never make the server open: a real torch checkpoint and a valid space dir."""
    import torch

    cwd = root / "cwd"
    planted = []
    for folder in (cwd, root, cwd / "tessera-data" / "spaces"):
        folder.mkdir(parents=True, exist_ok=True)
        checkpoint = folder / "planted.pt"
        torch.save({"state_dict": {"planted": torch.zeros(1)}}, checkpoint)
        space = folder / "planted_space"
        space.mkdir(exist_ok=True)
        (space / "space.json").write_text(json.dumps(PLANTED_SPACE_SPEC))
        planted += [checkpoint, space / "space.json"]
    return planted


def prepare(server: HostileServer, create: bool = True) -> None:
    """Load the spaces the cases use and create the corpora they run against, so RSS is measured warm."""
    stub = server.stub
    stub.Embed(pb.EmbedRequest(space="minilm", items=[_text("warm up")]), timeout=300)
    stub.Embed(pb.EmbedRequest(space="digits", items=[_image(_png())]), timeout=300)
    stub.Embed(pb.EmbedRequest(space="digits", items=[_audio(wav())]), timeout=300)
    try:  # a WAV only FFmpeg tries: its libraries load once, before RSS is measured
        stub.Embed(pb.EmbedRequest(space="digits", items=[_audio(wav(channels=0))]), timeout=300)
    except grpc.RpcError:
        pass
    server.prepared = True
    if create:
        stub.CreateCorpus(pb.CreateCorpusRequest(name=TEXT, space="minilm", modality=pb.MODALITY_TEXT), timeout=120)
        for name in (VEC, VEC_B):
            stub.CreateCorpus(pb.CreateCorpusRequest(name=name, space=VEC_SPACE, modality=pb.MODALITY_VECTOR))
        texts = ["a ferry leaves at noon", "rye bread at the bakery", "jazz records from 1959"]
        items = [pb.Item(id=f"seed-{i}", content=_text(t)) for i, t in enumerate(texts)]
        _upsert(stub, [pb.UpsertRequest(corpus=TEXT, items=items)])
        for name in (VEC, VEC_B):
            vectors = [pb.Item(id=f"seed-{i}", vector=_vector([i + 1.0] * DIM)) for i in range(3)]
            _upsert(stub, [pb.UpsertRequest(corpus=name, items=vectors)])
    stub.Search(_search(_text("ferry"), space="minilm", corpora=[TEXT]), timeout=120)
    stub.Search(_search(_vec_content(), corpora=[VEC]), timeout=120)
    stub.ListSpaces(pb.ListSpacesRequest(include_unavailable=True), timeout=120)


# ---- building messages ---------------------------------------------------------------------------------
def _text(text: str, modality: int = pb.MODALITY_TEXT) -> pb.Content:
    return pb.Content(modality=modality, text=text)


def _vector(values: Iterable[float]) -> pb.Vector:
    return pb.Vector(packed=struct.pack(f"<{len(list(values))}f", *values))


def _vec_content(values: Iterable[float] | None = None, modality: int = pb.MODALITY_VECTOR) -> pb.Content:
    return pb.Content(modality=modality, vector=_vector(list(values) if values is not None else [1.0] * DIM))


def _image(data: bytes, modality: int = pb.MODALITY_IMAGE) -> pb.Content:
    return pb.Content(modality=modality, data=data)


def _audio(data: bytes) -> pb.Content:
    return pb.Content(modality=pb.MODALITY_AUDIO, data=data)


def _search(
    content: pb.Content, space: str = VEC_SPACE, corpora: Iterable[str] = (VEC,), **fields: Any
) -> pb.SearchRequest:
    request = pb.SearchRequest(space=space, corpora=list(corpora), **fields)
    request.parts.add(weight=1.0).content.CopyFrom(content)
    return request


def _create(
    name: str, space: str = VEC_SPACE, modality: int = pb.MODALITY_VECTOR, **index: Any
) -> pb.CreateCorpusRequest:
    return pb.CreateCorpusRequest(name=name, space=space, modality=modality, index=pb.IndexConfig(**index))


def _upsert(stub: pb_grpc.TesseraStub, messages: list[pb.UpsertRequest]) -> pb.UpsertResponse:
    return stub.Upsert(iter(messages), timeout=120)


def wav(
    declared_frames: int | None = None,
    frames: int = 100,
    channels: int = 1,
    rate: int = 16000,
    bits: int = 16,
    fmt_tag: int = 1,
    fmt_size: int = 16,
    riff_size: int | None = None,
    block_align: int | None = None,
    extra_chunk: tuple[bytes, int] | None = None,
) -> bytes:
    """A PCM WAV whose header may claim more than it holds: `declared_frames` in the data chunk's size."""
    width = max(1, bits // 8)
    samples = b"".join(
        (int(8000 * math.sin(i / 5)) & 0xFFFF).to_bytes(2, "little")[:width] * max(1, channels) for i in range(frames)
    )
    align = block_align if block_align is not None else width * channels
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, (rate * align) & 0xFFFFFFFF, align & 0xFFFF, bits)
    fmt += b"\x00" * max(0, min(fmt_size, 64) - 16)
    data_size = (declared_frames * width * channels) & 0xFFFFFFFF if declared_frames is not None else len(samples)
    body = b"WAVE" + b"fmt " + struct.pack("<I", fmt_size) + fmt
    if extra_chunk is not None:
        body += extra_chunk[0] + struct.pack("<I", extra_chunk[1]) + b"\x00" * 16
    body += b"data" + struct.pack("<I", data_size) + samples
    size = riff_size if riff_size is not None else len(body)
    return b"RIFF" + struct.pack("<I", size & 0xFFFFFFFF) + body


def _png(width: int | None = None, height: int | None = None) -> bytes:
    """The packaged digit PNG, optionally with its IHDR claiming another size (and a matching CRC)."""
    data = (REPO / "services" / "samples" / "digits" / "7.png").read_bytes()
    if width is None:
        return data
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    return data[:12] + bytes(ihdr) + struct.pack(">I", zlib.crc32(bytes(ihdr))) + data[33:]


# ---- cases ---------------------------------------------------------------------------------------------
@dataclass
class Case:
    """One request. `messages` are protobuf messages or raw bytes (several for a client stream)."""

    cls: str
    rpc: str
    messages: list[Any]
    allowed: frozenset[str]
    input: str = ""  # the hostile value, for reports
    long: str | None = None  # a long input the answer must not echo
    # before(stub) -> state; check(code, response, stub, state) -> a problem, or None
    before: Callable[[pb_grpc.TesseraStub], Any] | None = None
    check: Callable[[str, Any, pb_grpc.TesseraStub, Any], str | None] | None = None
    timeout: float = CALL_TIMEOUT_S
    payloads: list[bytes] = field(init=False)

    def __post_init__(self) -> None:
        self.payloads = [m if isinstance(m, bytes) else m.SerializeToString() for m in self.messages]

    def key(self) -> tuple[str, tuple[bytes, ...]]:
        return self.rpc, tuple(self.payloads)

    def summary(self, limit: int = 200) -> str:
        parts = [
            repr(m[:80]) if isinstance(m, bytes) else text_format.MessageToString(m, as_one_line=True)
            for m in self.messages
        ]
        return f"{self.rpc}({' | '.join(parts)})"[:limit]


class _Names:
    """Fresh corpus names and ids, so every CreateCorpus and Upsert case is its own request."""

    def __init__(self, prefix: str) -> None:
        self._counter = itertools.count()
        self.prefix = prefix

    def __call__(self, kind: str = "c") -> str:
        return f"{kind}{self.prefix}{next(self._counter):05d}"


def _planted_paths(server_root: Path) -> dict[str, str]:
    cwd = server_root / "cwd"
    return {
        "cwd_pt": str(cwd / "planted.pt"),
        "beside_pt": str(server_root / "planted.pt"),
        "cwd_space": str(cwd / "planted_space"),
        "beside_space": str(server_root / "planted_space"),
        "data": str(server_root / "data"),
        "package_space": str(REPO / "embedder" / "spaces" / "digits"),
    }


PATH_PREFIXES = ("openclip:ViT-B-32/", "openclip:ViT-B-32//", "openclip:RN50/", "", "minilm/", "digits/", "vectors:8/")


def path_suffixes(paths: dict[str, str]) -> list[str]:
    return [
        "planted.pt",
        "./planted.pt",
        "a/../planted.pt",
        "../planted.pt",
        "../../../../etc/passwd",
        "random/../../../etc",
        paths["cwd_pt"],
        paths["beside_pt"],
        "~/planted.pt",
        "~",
        "..\\..\\planted.pt",
        "file:///etc/passwd",
        "file://" + paths["beside_pt"],
        "http://127.0.0.1:1/planted.pt",
        "planted.pt\x00.txt",
        "./",
        "a/../",
        "/",
        "%2e%2e%2fplanted.pt",
        "planted_space",
        "./planted_space",
        paths["beside_space"],
        "//etc/passwd",
        "\\\\server\\share\\planted.pt",
        "C:\\planted.pt",
        "planted.pt/",
        "random/./",
        "..",
    ]


def named_path_spaces(server_root: Path) -> list[str]:
    """The issue's path-shaped space names, and the forms a loader by path would also take."""
    paths = _planted_paths(server_root)
    return [
        "openclip:ViT-B-32/planted.pt",
        "openclip:ViT-B-32/./planted.pt",
        "openclip:ViT-B-32/a/../planted.pt",
        "openclip:ViT-B-32/../../../../etc/passwd",
        "openclip:ViT-B-32/random/../../../etc",
        "openclip:ViT-B-32//" + paths["beside_pt"].lstrip("/"),
        "openclip:ViT-B-32/" + paths["cwd_pt"],
        "./",
        "a/../",
        "../../../../etc/passwd",
        "/etc/passwd",
        "~",
        "random/../../../etc",
        "planted_space",  # a bare name that resolves in the server's working directory
        "./planted_space",
        paths["cwd_space"],
        paths["beside_space"],
        paths["data"] + "/../planted_space",
        paths["package_space"],  # a path, even to the packaged space
        "spaces/../../planted_space",
        "minilm/../digits",
        "http://127.0.0.1:1/planted.pt",
        "file://" + paths["beside_pt"],
        "minilm\x00/etc/passwd",
        "\\..\\..\\planted_space",
    ]


def path_spaces(server_root: Path) -> list[str]:
    """The named path-shaped spaces first, then the cross product of prefixes and path forms."""
    crossed = [prefix + suffix for prefix in PATH_PREFIXES for suffix in path_suffixes(_planted_paths(server_root))]
    return list(dict.fromkeys(named_path_spaces(server_root) + crossed))


UNKNOWN_SPACES = [
    "nope",
    "MINILM",
    "minilm@999",
    "minilm@",
    "@",
    "vectors:0",
    "vectors:-1",
    "vectors:65537",
    "vectors:99999999999999999999",
    "vectors:8.0",
    "vectors:٨",
    "vectors:８",
    "vectors:0x8",
    "vectors:",
    "openclip:",
    "openclip:ViT-B-32",
    "openclip:ViT-B-32/",
    "openclip:/random",
    "openclip:nope/random",
    "openclip:ViT-B-32/nope-tag",
    "ｍｉｎｉｌｍ",
    "minilm\n",
    " minilm",
    "minilm\u200b",
]

GOOD_FACTORIES = ["Flat", "HNSW32", "IVF16,Flat", "IVF16,SQ8", "IVF16,PQ4", "HNSW4", "HNSW256", "IVF1,Flat", "auto"]
# Components a grammar may or may not offer: only "not INTERNAL, not a death" is asked of them.
MAYBE_FACTORIES = [
    "",
    "OPQ4,OPQ4,PQ4",
    "hnsw32",
    " HNSW32",
    "HNSW32 ",
    "PCA4,Flat",
    "LSH",
    "NSG32",
    "IDMap,Flat",
    "IVF16,Flat,RFlat",
]


def bad_factories(dim: int = DIM) -> list[str]:
    """Factory strings an index-spec grammar must refuse (dim: the corpus's dimension, for PQ)."""
    out: list[str] = []
    for m in (0, 1, 2, 3, 257, 1000, 100000, 2**31, 2**32 + 32, 10**30, -1):
        out += [f"HNSW{m}", f"HNSW{m},Flat", f"HNSW{m}_SQ8"]
    out += ["HNSW", "HNSW+32", "HNSW 32", "HNSW0x20", "HNSW1e2", "HNSW32.0", "HNSW3_2", "HNSW٣٢", "HNSW３２"]
    out += ["ＨＮＳＷ32", "HNSW32\x00", "HNSW32\n", "HNSW32,HNSW32", "ΗNSW32"]
    for n in (0, -1, 999999999, 2**31, 2**32, 2**40, 10**30):
        out += [f"IVF{n},Flat", f"IVF{n},PQ4", f"IVF{n},SQ8"]
    out += ["IVF,Flat", "IVF16", "IVF16,", ",Flat", "IVF16,,Flat", "IVF16,Flat,Flat", "IVF16,IVF16,Flat", "IVF1.5,Flat"]
    for junk in (",junk", "junk", " junk", ";", "\x00", "\n", ",Refine(Junk)", "(", ")", ",HNSW0", "x" * LONG):
        out.append("IVF16,Flat" + junk)
    bad_m = [m for m in (3, 5, 6, 7, 9, 16, dim + 1, 2 * dim) if dim % m]
    for m in [*bad_m, 0, -1]:
        out += [f"PQ{m}", f"IVF16,PQ{m}", f"OPQ{m},PQ{m}"]
    for bits in (0, 99, 65, -1, 33):
        out += [f"PQ4x{bits}", f"IVF16,PQ4x{bits}"]
    m = bad_m[0]  # a sub-quantizer count that does not divide dim
    out += ["PQ", "PQ4x", "PQxx8", f"PQ{m}x4fs", "PQ4x8fs", f"IVF16,PQ{m}x4fs", f"IVF16,PQ{m}x4fsr", f"OPQ4,PQ{m}"]
    out += [
        "OPQ",
        "OPQ0,PQ4",
        "OPQ4_0,PQ4",
        "OPQx,PQ4",
        "OPQ4_-1,PQ4",
        f"OPQ4_{10**30},PQ4",
    ]
    out += ["SQ0", "SQ9", "SQ3", "SQfp17", "SQ", "SQ8x", "SQ-8"]
    out += ["Frobnicate", "Flat,Frobnicate", "Junk,Flat", "IDMap,IDMap,Flat", "IDMap2,IDMap2,Flat", "Flat,Flat"]
    out += ["Refine(Frob)", "PCA0,Flat", "PCAR-1,Flat", "RR,Flat?", "IVF16_HNSW0,Flat", "../Flat", "Flat/../x"]
    out += ["x" * LONG, "HNSW32," * (LONG // 7), "(" * LONG, "IVF" + "9" * LONG + ",Flat", "PQ" + "1" * 5000]
    out += ["\x00", "\x00" * 10, "Flat\x00", "\u200b", "Ｆｌａｔ", "Flat\u200b", "\u202eFlat", "ФлаТ", "🎷", "Flat🎷"]
    out += [" ", "\t", "\n", ","]
    return list(dict.fromkeys(out))


CORPUS_NAMES = [
    "notes\n",
    "notes\r\n",
    "\nnotes",
    ".hidden",
    "..",
    ".",
    "/",
    "a/b",
    "../x",
    "..\\x",
    "\x00",
    "notes\x00",
    "x" * 129,
    "x" * 256,
    "x" * LONG,
    "nоtes",  # Cyrillic o
    "ｎｏｔｅｓ",
    "notes ",
    " notes",
    "no tes",
    "-lead",
    "_lead",
    ".notes",
    "é",
    "notes\t",
    "notes\u200b",
    "\u202enotes",
    "~",
    "$HOME",
    "*",
    "notes?",
    "a:b",
    "",
    " ",
]
GOOD_NAMES = ["x" * 128, "a.b_c-d", "A0", "0notes"]

IDS_REFUSED = ["\x00", "a\x00b", "x" * (LONG + 1), "y" * HUGE, ""]
IDS_PATHLIKE = [
    "../hostileid-rel",
    "../../../../../../tmp/hostileid-up",
    "/tmp/hostileid-abs",
    "..",
    ".",
    "a/b",
    "~",
    "C:\\hostileid",
    "\\\\srv\\hostileid",
    "hostileid\n",
    "\u202ehostileid",
    " ",
    "%2e%2e%2fhostileid",
]
BLANK_TEXTS = [
    "\x00",
    "\x00" * 100,
    "\u200b",
    "\u200b" * 50,
    "\ufeff",
    "\ufeff\u200b\x00",
    "\u200c\u200d",
    "\u2060",
    " \u200b\t\n",
    "\u3000\u200b",
    "\u200e\u200f",
    "\ufeff" * 1000,
    "\x00 \x00",
    "\u2028\u2029",
    "\x01\x02\x7f",
    "\u00a0\u200b\ufeff",
]


def _roundtrip(corpus: str, item_id: str) -> Callable[[str, Any, pb_grpc.TesseraStub, Any], str | None]:
    """An accepted id must come back as itself from Get."""

    def check(code: str, response: Any, stub: pb_grpc.TesseraStub, state: Any) -> str | None:
        if code != "OK":
            return None
        got = stub.Get(pb.GetRequest(corpus=corpus, ids=[item_id]), timeout=30)
        if [item.id for item in got.items] != [item_id]:
            return f"accepted id {item_id[:60]!r} does not come back from Get: {[i.id[:60] for i in got.items]}"
        stub.Delete(pb.DeleteRequest(corpus=corpus, ids=[item_id]), timeout=30)
        return None

    return check


def _counts(*corpora: str) -> Callable[[pb_grpc.TesseraStub], dict[str, int]]:
    return lambda stub: {
        c: stub.DescribeCorpus(pb.DescribeCorpusRequest(name=c), timeout=30).corpus.count for c in corpora
    }


def _switch_refused(
    stored: dict[str, list[str]], refused: list[str]
) -> Callable[[str, Any, pb_grpc.TesseraStub, Any], str | None]:
    """A stream that switches corpus is refused at the switch: the messages before it are durable (each
    Upsert message is stored before the next is read, and the error says how many), the switching
    message and anything after it are written nowhere."""

    def check(code: str, response: Any, stub: pb_grpc.TesseraStub, before: dict[str, int]) -> str | None:
        if code == "OK":
            return None
        after = _counts(*before)(stub)
        expected = {c: n + len(stored.get(c, [])) for c, n in before.items()}
        if after != expected:
            return f"refused stream changed counts {before} -> {after}, expected {expected}"
        for corpus in before:
            wanted = [*refused, *(i for c, ids in stored.items() if c != corpus for i in ids)]
            found = stub.Get(pb.GetRequest(corpus=corpus, ids=wanted), timeout=30).items
            if found:
                return f"refused stream wrote {[i.id for i in found]} into {corpus}"
        return None

    return check


def _spaces_have_ids_and_dims(code: str, response: Any, stub: pb_grpc.TesseraStub, state: Any) -> str | None:
    if code != "OK":
        return None
    spaces = pb.ListSpacesResponse.FromString(response).spaces
    bad = [(s.name, s.id, s.dim) for s in spaces if not s.id or s.dim <= 0 or not s.name]
    return f"ListSpaces entries without an id or a dim: {bad[:8]}" if bad else None


def _corpora_named_by_grammar(code: str, response: Any, stub: pb_grpc.TesseraStub, state: Any) -> str | None:
    if code != "OK":
        return None
    names = [c.name for c in pb.ListCorporaResponse.FromString(response).corpora]
    bad = [n[:60] for n in names if not NAME_GRAMMAR.fullmatch(n)]
    return f"ListCorpora shows names outside the grammar: {bad}" if bad else None


def fixed_cases(server_root: Path) -> Iterator[Case]:
    """Round 0: every class, every RPC, the issue's inputs and programmatic variants of them."""
    fresh = _Names("0")
    yield from _factory_cases(fresh)
    yield from _space_cases(fresh, path_spaces(server_root), UNKNOWN_SPACES)
    yield from _corpus_name_cases(fresh, CORPUS_NAMES)
    yield from _id_cases(fresh, IDS_REFUSED, IDS_PATHLIKE)
    yield from _oversized_cases(fresh)
    yield from _upsert_switch_cases(fresh)
    yield from _enum_cases(fresh, UNKNOWN_ENUMS)
    yield from _media_cases(fresh)
    yield from _blank_text_cases(fresh, BLANK_TEXTS)
    yield from _number_cases(fresh)
    yield from _stream_and_batch_cases(fresh, server_root)
    yield from _empty_cases()
    for include in (False, True):
        yield Case(
            "list_spaces",
            "ListSpaces",
            [pb.ListSpacesRequest(include_unavailable=include)],
            OK,
            str(include),
            check=_spaces_have_ids_and_dims,
        )
    yield Case(
        "corpus_name", "ListCorpora", [pb.ListCorporaRequest()], OK, "after all", check=_corpora_named_by_grammar
    )


def _factory_cases(fresh: _Names) -> Iterator[Case]:
    for factory in bad_factories(DIM):
        long = factory if len(factory) >= LONG else None
        yield Case("factory", "CreateCorpus", [_create(fresh(), factory=factory)], BAD, repr(factory), long)
    for factory in bad_factories(384)[::3]:  # the same grammar over a 384-d space: PQ m must divide 384
        if factory.startswith(("PQ", "IVF16,PQ", "OPQ")):
            yield Case(
                "factory", "CreateCorpus", [_create(fresh(), space="vectors:384", factory=factory)], BAD, repr(factory)
            )
    for factory in ("PQ5", "PQ7", "PQ385", "PQ384x0", "PQ96x99", "IVF16,PQ5"):
        request = _create(fresh(), space="minilm", modality=pb.MODALITY_TEXT, factory=factory)
        yield Case("factory", "CreateCorpus", [request], BAD, repr(factory))
    for factory in GOOD_FACTORIES:
        yield Case("factory", "CreateCorpus", [_create(fresh(), factory=factory)], OK, repr(factory))
    for factory in MAYBE_FACTORIES:
        yield Case("factory", "CreateCorpus", [_create(fresh(), factory=factory)], OK_OR_BAD, repr(factory))
    for knob in ("nprobe", "ef_search", "ef_construction"):
        for value in (2**32 - 1, 10**6):
            request = _create(fresh(), factory="HNSW32", **{knob: value})
            yield Case("factory", "CreateCorpus", [request], LIMIT, f"{knob}={value}")


def _space_cases(fresh: _Names, paths: list[str], unknown: list[str]) -> Iterator[Case]:
    for space in paths:
        yield Case("space_path", "Embed", [pb.EmbedRequest(space=space, items=[_text("hello")])], MISSING, repr(space))
    for space in paths[::2]:
        create = _create(fresh(), space=space, modality=pb.MODALITY_TEXT)
        yield Case("space_path", "CreateCorpus", [create], MISSING, repr(space))
    for space in paths[::5]:
        yield Case("space_path", "Search", [_search(_text("ferry"), space=space, corpora=[TEXT])], MISSING, repr(space))
    for space in unknown:
        yield Case(
            "space_unknown", "Embed", [pb.EmbedRequest(space=space, items=[_text("hello")])], MISSING, repr(space)
        )
        create = _create(fresh(), space=space, modality=pb.MODALITY_TEXT)
        yield Case("space_unknown", "CreateCorpus", [create], MISSING, repr(space))


def _corpus_name_cases(fresh: _Names, names: list[str]) -> Iterator[Case]:
    for name in names:
        long = name if len(name) >= LONG else None
        n = repr(name)
        yield Case("corpus_name", "CreateCorpus", [_create(name)], BAD, n, long)
        yield Case("corpus_name", "DescribeCorpus", [pb.DescribeCorpusRequest(name=name)], MISSING, n, long)
        yield Case("corpus_name", "DropCorpus", [pb.DropCorpusRequest(name=name)], MISSING, n, long)
        yield Case("corpus_name", "Get", [pb.GetRequest(corpus=name, ids=["seed-0"])], MISSING, n, long)
        yield Case("corpus_name", "Delete", [pb.DeleteRequest(corpus=name, ids=["nope"])], MISSING, n, long)
        item = pb.Item(id=fresh("i"), vector=_vector([1.0] * DIM))
        yield Case("corpus_name", "Upsert", [pb.UpsertRequest(corpus=name, items=[item])], MISSING, n, long)
        yield Case("corpus_name", "Search", [_search(_vec_content(), corpora=[name])], MISSING, n, long)
    for name in GOOD_NAMES:
        yield Case("corpus_name", "CreateCorpus", [_create(name)], OK, repr(name))


def _id_cases(fresh: _Names, refused: list[str], pathlike: list[str]) -> Iterator[Case]:
    for item_id in refused + pathlike:
        long = item_id if len(item_id) >= LONG else None
        allowed = BAD if item_id in refused else OK_OR_BAD
        item = pb.Item(id=item_id, vector=_vector([2.0] * DIM))
        check = _roundtrip(VEC, item_id) if allowed is OK_OR_BAD else None
        yield Case(
            "id", "Upsert", [pb.UpsertRequest(corpus=VEC, items=[item])], allowed, repr(item_id), long, check=check
        )
        yield Case("id", "Get", [pb.GetRequest(corpus=VEC, ids=[item_id])], LOOKUP, repr(item_id), long)
        yield Case(
            "id", "Delete", [pb.DeleteRequest(corpus=VEC, ids=[item_id, fresh("nope")])], LOOKUP, repr(item_id), long
        )
    item = pb.Item(id=fresh("i"), content=_text("hello"), uri="x" * LONG)
    yield Case("id", "Upsert", [pb.UpsertRequest(corpus=TEXT, items=[item])], OK_OR_BAD, "uri 10k", "x" * LONG)


def _oversized_cases(fresh: _Names) -> Iterator[Case]:
    """A 10,000- and a 100,000-character string in every string field of every request."""
    for size in (LONG, HUGE):
        s = "s" * size
        tag = f"{size} chars"

        def case(rpc: str, message: Any, allowed: frozenset[str], where: str, s: str = s, tag: str = tag) -> Case:
            return Case("oversized", rpc, [message], allowed, f"{where}: {tag}", s)

        yield case("Embed", pb.EmbedRequest(space=s, items=[_text("hi")]), MISSING, "Embed.space")
        yield case("Embed", pb.EmbedRequest(space="minilm", items=[_text("hi")], request_id=s), OK_OR_BAD, "request_id")
        yield case("Embed", pb.EmbedRequest(space="minilm", items=[_text(s)]), LIMIT | OK, "Embed text")
        yield case("Embed", pb.EmbedRequest(space="minilm", items=[pb.Content(modality=1, uri=s)]), BAD, "Embed uri")
        yield case("Embed", pb.EmbedRequest(space="digits", items=[_image(s.encode())]), BAD, "Embed image data")
        yield case("EmbedStream", pb.EmbedRequest(space=s, items=[_text("hi")]), MISSING, "EmbedStream.space")
        yield case("CreateCorpus", _create(s), BAD, "CreateCorpus.name")
        yield case("CreateCorpus", _create(fresh(), space=s), MISSING, "CreateCorpus.space")
        yield case("CreateCorpus", _create(fresh(), factory=s), BAD, "CreateCorpus.factory")
        yield case("DescribeCorpus", pb.DescribeCorpusRequest(name=s), MISSING, "DescribeCorpus.name")
        yield case("DropCorpus", pb.DropCorpusRequest(name=s), MISSING, "DropCorpus.name")
        item = pb.Item(id=fresh("i"), vector=_vector([1.0] * DIM))
        yield case("Upsert", pb.UpsertRequest(corpus=s, items=[item]), MISSING, "Upsert.corpus")
        yield case(
            "Upsert", pb.UpsertRequest(corpus=VEC, items=[pb.Item(id=s, vector=_vector([1.0] * DIM))]), BAD, "Item.id"
        )
        item = pb.Item(id=fresh("i"), vector=_vector([1.0] * DIM))
        item.metadata.update({s: 1})
        yield case("Upsert", pb.UpsertRequest(corpus=VEC, items=[item]), OK_OR_BAD, "metadata key")
        item = pb.Item(id=fresh("i"), vector=_vector([1.0] * DIM))
        item.metadata.update({"k": s})
        yield case("Upsert", pb.UpsertRequest(corpus=VEC, items=[item]), OK_OR_BAD, "metadata value")
        item = pb.Item(id=fresh("i"), content=_text(s))
        yield case("Upsert", pb.UpsertRequest(corpus=TEXT, items=[item]), LIMIT | OK, "Item text")
        yield case("Get", pb.GetRequest(corpus=s, ids=["a"]), MISSING, "Get.corpus")
        yield case("Get", pb.GetRequest(corpus=VEC, ids=[s]), LOOKUP, "Get.ids")
        yield case("Delete", pb.DeleteRequest(corpus=s, ids=["a"]), MISSING, "Delete.corpus")
        yield case("Delete", pb.DeleteRequest(corpus=VEC, ids=[s]), LOOKUP, "Delete.ids")
        delete = pb.DeleteRequest(corpus=VEC)
        delete.filter.update({s: {"eq": 1}})
        yield case("Delete", delete, OK_OR_BAD, "Delete filter field")
        yield case("Search", _search(_vec_content(), space=s), MISSING, "Search.space")
        yield case("Search", _search(_vec_content(), corpora=[s]), MISSING, "Search.corpora")
        yield case("Search", _search(_text(s), space="minilm", corpora=[TEXT]), LIMIT | OK, "Search text")
        search = _search(_vec_content())
        search.filter.update({"genre": {"eq": s}})
        yield case("Search", search, OK_OR_BAD, "Search filter value")
        yield case(
            "BatchSearch",
            pb.BatchSearchRequest(queries=[_search(_vec_content(), space=s)]),
            MISSING,
            "BatchSearch space",
        )


def _upsert_switch_cases(fresh: _Names) -> Iterator[Case]:
    def ids(n: int) -> list[str]:
        return [fresh("sw") for _ in range(n)]

    def items(wanted: list[str]) -> list[pb.Item]:
        return [pb.Item(id=i, vector=_vector([3.0] * DIM)) for i in wanted]

    a, b = ids(1), ids(1)
    yield Case(
        "upsert_switch",
        "Upsert",
        [pb.UpsertRequest(corpus=VEC, items=items(a)), pb.UpsertRequest(corpus=VEC_B, items=items(b))],
        BAD,
        "A then B",
        before=_counts(VEC, VEC_B),
        check=_switch_refused({VEC: a}, b),
    )
    a = ids(1)
    yield Case(
        "upsert_switch",
        "Upsert",
        [pb.UpsertRequest(corpus=VEC, items=items(a)), pb.UpsertRequest(corpus=VEC_B)],
        BAD,
        "A then B (no items)",
        before=_counts(VEC, VEC_B),
        check=_switch_refused({VEC: a}, []),
    )
    a, a2, b = ids(1), ids(1), ids(1)
    messages = [
        pb.UpsertRequest(corpus=VEC, items=items(a)),
        pb.UpsertRequest(items=items(a2)),
        pb.UpsertRequest(corpus=VEC_B, items=items(b)),
    ]
    yield Case(
        "upsert_switch",
        "Upsert",
        messages,
        BAD,
        "A, same, then B",
        before=_counts(VEC, VEC_B),
        check=_switch_refused({VEC: a + a2}, b),
    )
    for other in ("nope-missing", "../vecs-b", "vecs\n", "vecs-b\x00", "s" * LONG):
        a, b = ids(1), ids(1)
        messages = [pb.UpsertRequest(corpus=VEC, items=items(a)), pb.UpsertRequest(corpus=other, items=items(b))]
        yield Case(
            "upsert_switch",
            "Upsert",
            messages,
            MISSING,
            f"A then {other[:40]!r}",
            other if len(other) >= LONG else None,
            before=_counts(VEC),
            check=_switch_refused({VEC: a}, b),
        )
    a, t = ids(1), ids(1)
    messages = [
        pb.UpsertRequest(corpus=VEC, items=items(a)),
        pb.UpsertRequest(corpus=TEXT, items=[pb.Item(id=t[0], content=_text("hello"))]),
    ]
    yield Case(
        "upsert_switch",
        "Upsert",
        messages,
        BAD,
        "vector corpus then text corpus",
        before=_counts(VEC, TEXT),
        check=_switch_refused({VEC: a}, t),
    )
    a = ids(2)
    messages = [pb.UpsertRequest(corpus=VEC, items=items(a[:1])), pb.UpsertRequest(corpus=VEC, items=items(a[1:]))]
    yield Case("upsert_switch", "Upsert", messages, OK, "A then A (allowed)")
    yield Case(
        "upsert_switch", "Upsert", [pb.UpsertRequest(items=items(ids(1)))], BAD, "no corpus in the first message"
    )


def _enum_cases(fresh: _Names, values: list[int]) -> Iterator[Case]:
    """Every enum field of every request, set to numbers the proto does not define."""
    for v in values:
        yield Case(
            "enum",
            "Embed",
            [pb.EmbedRequest(space="minilm", items=[_text("hi", modality=v)])],
            BAD,
            f"Content.modality={v}",
        )
        yield Case(
            "enum",
            "EmbedStream",
            [pb.EmbedRequest(space="minilm", items=[_text("hi", modality=v)])],
            BAD,
            f"EmbedStream Content.modality={v}",
        )
        yield Case("enum", "CreateCorpus", [_create(fresh(), modality=v)], BAD, f"CreateCorpus.modality={v}")
        item = pb.Item(id=fresh("i"), content=_vec_content(modality=v))
        yield Case("enum", "Upsert", [pb.UpsertRequest(corpus=VEC, items=[item])], BAD, f"Item.content.modality={v}")
        yield Case("enum", "Search", [_search(_vec_content(modality=v))], BAD, f"QueryPart modality={v}")
        yield Case("enum", "Search", [_search(_vec_content(), fusion=v)], BAD, f"fusion={v}")
        yield Case("enum", "Search", [_search(_vec_content(), target_modalities=[v])], BAD, f"target_modalities={v}")
        batch = pb.BatchSearchRequest(queries=[_search(_vec_content()), _search(_vec_content(), fusion=v)])
        yield Case("enum", "BatchSearch", [batch], BAD, f"BatchSearch fusion={v}")


def _media_cases(fresh: _Names) -> Iterator[Case]:
    lies: list[tuple[str, bytes, frozenset[str]]] = [
        ("2^30 frames declared, 100 held", wav(declared_frames=2**30), OK_OR_BAD),
        ("2^31-1 data bytes declared", wav(declared_frames=2**30 - 1, channels=1, bits=16), OK_OR_BAD),
        ("data size 0xFFFFFFFF", wav(declared_frames=2**31 - 1), OK_OR_BAD),
        ("2^30 frames, 8 channels", wav(declared_frames=2**26, channels=8), OK_OR_BAD),
        ("2^30 frames, riff size 2^32-1", wav(declared_frames=2**30, riff_size=2**32 - 1), OK_OR_BAD),
        ("0 channels", wav(channels=0), BAD),
        ("sample rate 0", wav(rate=0), BAD),
        ("sample rate 2^32-1", wav(rate=2**32 - 1), OK_OR_BAD),
        ("0 bits per sample", wav(bits=0), BAD),
        ("block align 0", wav(block_align=0), OK_OR_BAD),
        ("format tag 0xFFFE without extension", wav(fmt_tag=0xFFFE), OK_OR_BAD),
        ("fmt chunk size 2^32-1", wav(fmt_size=2**32 - 1), BAD),
        ("chunk before data of size 2^32-1", wav(extra_chunk=(b"LIST", 2**32 - 1)), OK_OR_BAD),
        ("header only, 2^30 frames", wav(declared_frames=2**30, frames=0), BAD),
        ("65535 channels", wav(channels=65535, frames=2), OK_OR_BAD),
    ]
    for note, data, allowed in lies:
        yield Case("media", "Embed", [pb.EmbedRequest(space="digits", items=[_audio(data)])], allowed, f"WAV: {note}")
    for note, data, allowed in lies[:5]:
        yield Case(
            "media",
            "EmbedStream",
            [pb.EmbedRequest(space="digits", items=[_audio(data)])],
            allowed,
            f"EmbedStream WAV: {note}",
        )
    for width, height in ((2**31 - 1, 2**31 - 1), (65535, 65535), (0, 0), (1, 2**31 - 1), (2**32 - 1, 1)):
        request = pb.EmbedRequest(space="digits", items=[_image(_png(width, height))])
        yield Case("media", "Embed", [request], BAD, f"PNG claiming {width}x{height}")


def _blank_text_cases(fresh: _Names, texts: list[str]) -> Iterator[Case]:
    for text in texts:
        yield Case("blank_text", "Embed", [pb.EmbedRequest(space="minilm", items=[_text(text)])], BAD, repr(text)[:100])
        yield Case(
            "blank_text", "Search", [_search(_text(text), space="minilm", corpora=[TEXT])], BAD, repr(text)[:100]
        )
        item = pb.Item(id=fresh("i"), content=_text(text))
        yield Case("blank_text", "Upsert", [pb.UpsertRequest(corpus=TEXT, items=[item])], BAD, repr(text)[:100])


def _number_cases(fresh: _Names) -> Iterator[Case]:
    for knob, value in (("top_k", 2**32 - 1), ("top_k", 10**6), ("nprobe", 2**32 - 1), ("ef_search", 2**32 - 1)):
        yield Case("numbers", "Search", [_search(_vec_content(), **{knob: value})], LIMIT, f"{knob}={value}")
    for weight in (math.nan, math.inf, -math.inf):
        request = _search(_vec_content())
        request.parts[0].weight = weight
        yield Case("numbers", "Search", [request], BAD, f"weight={weight}")
    for values, note in (
        ([math.nan] * DIM, "NaN"),
        ([math.inf] * DIM, "inf"),
        ([0.0] * DIM, "zero"),
        ([1.0] * (DIM - 1), "dim-1"),
        ([1.0] * (DIM + 1), "dim+1"),
        ([], "empty"),
    ):
        yield Case("numbers", "Search", [_search(_vec_content(values))], BAD, f"query vector {note}")
        item = pb.Item(id=fresh("i"), vector=_vector(values))
        yield Case("numbers", "Upsert", [pb.UpsertRequest(corpus=VEC, items=[item])], BAD, f"item vector {note}")
    ragged = pb.Item(id=fresh("i"), vector=pb.Vector(packed=b"\x00\x00\x80\x3f" * DIM + b"\x00"))
    yield Case("numbers", "Upsert", [pb.UpsertRequest(corpus=VEC, items=[ragged])], BAD, "packed not a multiple of 4")
    base = _search(_vec_content()).SerializeToString()
    for field_number, name in ((3, "top_k"), (7, "fusion"), (8, "nprobe"), (9, "ef_search")):
        raw = base + _wire_varint(field_number << 3) + _wire_varint(-1)
        yield Case("numbers", "Search", [raw], LIMIT, f"{name}=-1 on the wire")


def _stream_and_batch_cases(fresh: _Names, server_root: Path) -> Iterator[Case]:
    good = pb.EmbedRequest(space="minilm", items=[_text("hello")], request_id="good")
    path = path_spaces(server_root)[0]
    for note, bad, allowed in (
        ("path space", pb.EmbedRequest(space=path, items=[_text("hello")]), MISSING),
        ("blank text", pb.EmbedRequest(space="minilm", items=[_text("\u200b")]), BAD),
        ("unknown modality", pb.EmbedRequest(space="minilm", items=[_text("x", modality=99)]), BAD),
        ("unparseable", b"\xff\xff\xff", BAD),
    ):
        yield Case("stream", "EmbedStream", [good, bad], allowed, f"good then {note}")
        yield Case("stream", "EmbedStream", [bad], allowed, note)
    yield Case("stream", "EmbedStream", [], OK, "no messages")
    yield Case("stream", "Upsert", [], OK_OR_BAD, "no messages")
    yield Case("stream", "Upsert", [b"\xff\xff\xff"], BAD, "unparseable message")
    queries = [_search(_vec_content()) for _ in range(65)]
    yield Case("batch", "BatchSearch", [pb.BatchSearchRequest(queries=queries)], LIMIT, "65 queries")
    for note, bad, allowed in (
        ("path space", _search(_text("ferry"), space=path, corpora=[TEXT]), MISSING),
        ("corpus notes\\n", _search(_vec_content(), corpora=["notes\n"]), MISSING),
        ("blank text", _search(_text("\ufeff"), space="minilm", corpora=[TEXT]), BAD),
        ("no parts", pb.SearchRequest(space=VEC_SPACE, corpora=[VEC]), BAD),
    ):
        yield Case(
            "batch", "BatchSearch", [pb.BatchSearchRequest(queries=[_search(_vec_content()), bad])], allowed, note
        )


def _empty_cases() -> Iterator[Case]:
    """An empty and an unparseable message to every RPC."""
    empty = {
        "Embed": BAD,
        "EmbedStream": BAD,
        "ListSpaces": OK,
        "CreateCorpus": BAD,
        "ListCorpora": OK,
        "DescribeCorpus": MISSING,
        "DropCorpus": MISSING,
        "Upsert": BAD,
        "Get": MISSING,
        "Delete": MISSING,
        "Search": BAD,
        "BatchSearch": OK_OR_BAD,
    }
    for rpc, allowed in empty.items():
        yield Case("empty", rpc, [b""], allowed, "empty message")
        yield Case("empty", rpc, [b"\x0a\xff\xff\xff\xff\x0f"], UNPARSEABLE, "unparseable message")


# ---- random rounds (the benchmark) ---------------------------------------------------------------------
INVISIBLE = ["\x00", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", " ", "\t", "\n", "\u3000", "\u200e", "\x7f"]
NAME_POISON = ["\x00", "\n", "/", "\\", " ", "\u200b", "о", "е", "é", ":", "*", "?", "\t", "\r", "\u202e"]
FACTORY_TOKENS = ["HNSW", "IVF", "PQ", "SQ", "OPQ", "Flat", "IDMap", "Refine(", ")", "RFlat", "PCA", "x", "fs", "_"]
FACTORY_NUMBERS = ["0", "-1", "3", "257", "999999999", str(2**31), str(2**64), "1e3", "٣", "", "0x10", "99"]
SEGMENTS = [".", "..", "planted.pt", "etc", "passwd", "a", "~", "%2e%2e", "planted_space", "tmp", ""]


def random_cases(server_root: Path, rng: random.Random, n: int, round_no: int) -> Iterator[Case]:
    """n seeded random variants of the classes above."""
    fresh = _Names(str(round_no))
    paths = _planted_paths(server_root)
    for _ in range(n):
        roll = rng.randrange(9)
        if roll == 0:
            tokens = [rng.choice(FACTORY_TOKENS) + rng.choice(FACTORY_NUMBERS) for _ in range(rng.randint(1, 4))]
            factory = rng.choice([",", "_", "", "x"]).join(tokens)
            # A random string may happen to be valid: only "no INTERNAL, no death, no echo" is asked.
            yield Case("factory", "CreateCorpus", [_create(fresh(), factory=factory)], OK_OR_BAD, repr(factory))
        elif roll == 1:
            segments = [
                rng.choice([*SEGMENTS, paths["beside_pt"], paths["cwd_space"]]) for _ in range(rng.randint(2, 5))
            ]
            space = rng.choice(PATH_PREFIXES) + rng.choice(["/", "\\", "//", "/./"]).join(segments)
            rpc = rng.choice(["Embed", "Embed", "CreateCorpus"])
            if rpc == "Embed":
                message: Any = pb.EmbedRequest(space=space, items=[_text("hello")])
            else:
                message = _create(fresh(), space=space, modality=pb.MODALITY_TEXT)
            yield Case("space_path", rpc, [message], MISSING, repr(space))
        elif roll == 2:
            base = rng.choice(["notes", "vecs", "x" * rng.randint(1, 127)])
            if rng.random() < 0.2:
                name = base + "x" * rng.randint(129 - len(base), 400)
            else:
                at = rng.randrange(len(base) + 1)
                name = base[:at] + rng.choice(NAME_POISON) + base[at:]
            rpc = rng.choice(["CreateCorpus", "DescribeCorpus", "DropCorpus", "Get", "Upsert", "Search"])
            yield _name_case(rpc, name, fresh)
        elif roll == 3:
            chars = [rng.choice(["a", "/", "..", "é", "\u200b", "\\", "x" * 100]) for _ in range(rng.randint(1, 30))]
            at = rng.randrange(len(chars) + 1)
            item_id = "".join(chars[:at]) + "\x00" + "".join(chars[at:])
            item = pb.Item(id=item_id, vector=_vector([2.0] * DIM))
            yield Case("id", "Upsert", [pb.UpsertRequest(corpus=VEC, items=[item])], BAD, repr(item_id))
        elif roll == 4:
            v = rng.choice([rng.randint(6, 2**31 - 1), rng.randint(-(2**31), -1)])
            yield from itertools.islice(_enum_cases(fresh, [v]), rng.randrange(8), None, 8)
        elif roll == 5:
            text = "".join(rng.choice(INVISIBLE) for _ in range(rng.randint(1, 200)))
            yield from itertools.islice(_blank_text_cases(fresh, [text]), rng.randrange(3), None, 3)
        elif roll == 6:
            frames, held = rng.randint(2**20, 2**31 - 1), rng.randint(0, 200)
            data = wav(declared_frames=frames, frames=held, channels=rng.choice([1, 2]))
            allowed = BAD if held == 0 else OK_OR_BAD  # refused, or decoded to the frames really there
            yield Case(
                "media",
                "Embed",
                [pb.EmbedRequest(space="digits", items=[_audio(data)])],
                allowed,
                f"WAV declaring {frames} frames",
            )
        elif roll == 7:
            s = "L" * rng.randint(LONG, 300_000)
            rpc, message, allowed = rng.choice(
                [
                    ("Embed", pb.EmbedRequest(space=s, items=[_text("hi")]), MISSING),
                    ("CreateCorpus", _create(fresh(), factory=s), BAD),
                    ("CreateCorpus", _create(s), BAD),
                    ("DescribeCorpus", pb.DescribeCorpusRequest(name=s), MISSING),
                    ("Get", pb.GetRequest(corpus=s), MISSING),
                    ("Search", _search(_vec_content(), space=s), MISSING),
                ]
            )
            yield Case("oversized", rpc, [message], allowed, f"{len(s)} chars", s)
        else:
            space = rng.choice(UNKNOWN_SPACES) + rng.choice(["", "@1", "@x", "\x00", str(rng.randrange(10**6))])
            yield Case(
                "space_unknown", "Embed", [pb.EmbedRequest(space=space, items=[_text("hi")])], MISSING, repr(space)
            )


def _name_case(rpc: str, name: str, fresh: _Names) -> Case:
    n = repr(name)
    if rpc == "CreateCorpus":
        return Case("corpus_name", rpc, [_create(name)], BAD, n)
    if rpc == "DescribeCorpus":
        return Case("corpus_name", rpc, [pb.DescribeCorpusRequest(name=name)], MISSING, n)
    if rpc == "DropCorpus":
        return Case("corpus_name", rpc, [pb.DropCorpusRequest(name=name)], MISSING, n)
    if rpc == "Get":
        return Case("corpus_name", rpc, [pb.GetRequest(corpus=name, ids=["seed-0"])], MISSING, n)
    if rpc == "Upsert":
        item = pb.Item(id=fresh("i"), vector=_vector([1.0] * DIM))
        return Case("corpus_name", rpc, [pb.UpsertRequest(corpus=name, items=[item])], MISSING, n)
    return Case("corpus_name", rpc, [_search(_vec_content(), corpora=[name])], MISSING, n)


def all_cases(server_root: Path, n_rounds: int = 0, seed: int = 0, per_round: int = 600) -> list[Case]:
    cases = list(fixed_cases(server_root))
    rng = random.Random(seed)
    for round_no in range(1, n_rounds + 1):
        cases += list(random_cases(server_root, rng, per_round, round_no))
    return cases


# ---- running -------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    case: Case
    code: str
    details: str
    problems: list[str]
    seconds: float
    rss_mb: float
    opened: list[str]

    def row(self) -> dict[str, Any]:
        return {
            "class": self.case.cls,
            "rpc": self.case.rpc,
            "input": self.case.input[:100],
            "code": self.code,
            "details": self.details[:200],
            "problems": [p[:300] for p in self.problems],
            "request": self.case.summary(200),
        }


def problems_of(case: Case, code: str, details: str) -> list[str]:
    """What is wrong with answering `case` with `code` and `details` (empty: a good answer)."""
    problems = []
    deserialize = code == "UNKNOWN" and details.startswith(DESERIALIZE_FAILURE)
    if code not in case.allowed or (code == "UNKNOWN" and not deserialize):
        problems.append(f"{code}, expected {'/'.join(sorted(case.allowed))}")
    if len(details) > MAX_DETAILS:
        problems.append(f"message of {len(details)} characters (at most {MAX_DETAILS})")
    if case.long is not None and case.long[:ECHO] in details:
        problems.append("message echoes the long input")
    if any(marker in details for marker in INTERNALS):
        problems.append("message shows FAISS or Python internals")
    return problems


def _call(server: HostileServer, case: Case) -> tuple[str, str, Any]:
    try:
        return "OK", "", server.caller(case.rpc)(case.payloads, case.timeout)
    except grpc.RpcError as exc:
        return exc.code().name, exc.details() or "", None


def _cleanup(server: HostileServer, case: Case, code: str) -> None:
    """Drop a corpus a CreateCorpus case made, so accepted cases do not pile up state."""
    if case.rpc == "CreateCorpus" and code == "OK" and isinstance(case.messages[0], pb.CreateCorpusRequest):
        try:
            server.stub.DropCorpus(pb.DropCorpusRequest(name=case.messages[0].name), timeout=60)
        except grpc.RpcError:
            pass


def run_case(server: HostileServer, case: Case, rss_start: float) -> Outcome:
    audit_before = server.audit_size()
    state = case.before(server.stub) if case.before else None
    start = time.perf_counter()
    code, details, response = _call(server, case)
    seconds = time.perf_counter() - start
    problems = problems_of(case, code, details)
    if case.check is not None and server.alive():
        try:
            problem = case.check(code, response, server.stub, state)
        except grpc.RpcError as exc:
            problem = f"checking the outcome failed: {exc.code().name} {(exc.details() or '')[:200]}"
        if problem:
            problems.append(problem)
    if server.alive():
        _cleanup(server, case, code)
    opened = []
    if server.audit_size() > audit_before:
        with open(server.audit_file, "rb") as audit:
            audit.seek(audit_before)
            opened = [json.loads(line)["path"] for line in audit.read().decode().splitlines() if line.strip()]
        problems.append(f"opened {len(opened)} file(s) outside the data dir and package: {opened[:3]}")
    rss = server.rss_mb()
    if not server.alive():
        server.deaths += 1
        problems.append(f"server died (exit code {server.process.returncode if server.process else None})")
        server.restart()
    elif not server.healthy():
        problems.append("server does not answer Health")
        server.deaths += 1
        server.restart()
    elif rss - rss_start > RSS_GUARD_MB:
        server.guard_restarts += 1
        problems.append(f"server RSS reached {rss:.0f} MB ({rss - rss_start:+.0f} MB); restarted")
        server.restart()
    return Outcome(case, code, details, problems, seconds, rss, opened)


def run_cases(server: HostileServer, cases: list[Case], deadline_s: float | None = None) -> dict[str, Any]:
    """Send every case (until the deadline); the flat report of benchmarks/results/hostile.json, plus outcomes."""
    start = time.monotonic()
    rss_start = server.rss_mb()
    outcomes: list[Outcome] = []
    for case in cases:
        if deadline_s is not None and time.monotonic() - start > deadline_s:
            break
        outcomes.append(run_case(server, case, rss_start))
    rss_end = server.rss_mb()
    failures = [o for o in outcomes if o.problems]
    by_class: dict[str, dict[str, int]] = {}
    for o in outcomes:
        entry = by_class.setdefault(o.case.cls, {"requests": 0, "failures": 0})
        entry["requests"] += 1
        entry["failures"] += bool(o.problems)
    return {
        "requests": len(outcomes),
        "distinct_requests": len({o.case.key() for o in outcomes}),
        "not_run": len(cases) - len(outcomes),
        "seconds": round(time.monotonic() - start, 1),
        "internal": sum(o.code == "INTERNAL" for o in outcomes),
        "unknown": sum(o.code == "UNKNOWN" and not o.details.startswith(DESERIALIZE_FAILURE) for o in outcomes),
        "deaths": server.deaths,
        "guard_restarts": server.guard_restarts,
        "files_opened_outside": len(server.audit_lines()),
        "rss_start_mb": round(rss_start, 1),
        "rss_end_mb": round(rss_end, 1),
        "rss_growth_mb": round(rss_end - rss_start, 1),
        "by_code": dict(Counter(o.code for o in outcomes).most_common()),
        "by_class": by_class,
        "failure_count": len(failures),
        "failures": [o.row() for o in failures[:20]],
        "outcomes": outcomes,
    }


def build_trials(
    server: HostileServer, factories: Iterable[str], n: int = 1000, wait_s: float = 30.0
) -> dict[str, Any]:
    """Each factory CreateCorpus accepts gets n vectors, its background build and a search (issue 19, item 1).

    HNSW0 used to be accepted and then abort the process once 1,000 vectors were in. An accepted spec must
    build (or stay exact while too small to train) and answer searches; a death restarts the server on a
    fresh data directory, so one bad spec does not hide the next. Returns `accepted`, `deaths` and
    `failures` (factory, problem).
    """
    rng = random.Random(0)
    vectors = [[rng.gauss(0, 1) for _ in range(DIM)] for _ in range(n)]
    accepted, failures, deaths = 0, [], 0
    for i, factory in enumerate(dict.fromkeys(factories)):
        name = f"build-{i:04d}"
        try:
            server.stub.CreateCorpus(_create(name, factory=factory), timeout=60)
        except grpc.RpcError:
            continue  # refused: whether rightly is the cases' business
        accepted += 1
        problem = _build_and_search(server, name, vectors, wait_s)
        if not server.alive() or not server.healthy():
            deaths += 1
            code = server.process.returncode if server.process else None
            problem = f"server died (exit code {code}) after {problem or 'the build'}; {server.log_tail(300)!r}"
            server.restart(fresh=True)
        else:
            try:
                server.stub.DropCorpus(pb.DropCorpusRequest(name=name), timeout=60)
            except grpc.RpcError:
                pass
        if problem:
            failures.append({"factory": factory[:100], "problem": problem[:400]})
    return {"accepted": accepted, "deaths": deaths, "failures": failures}


def _build_and_search(server: HostileServer, name: str, vectors: list[list[float]], wait_s: float) -> str | None:
    stub = server.stub
    try:
        half = len(vectors) // 2
        for chunk in (range(half), range(half, len(vectors))):
            items = [pb.Item(id=f"v{j}", vector=_vector(vectors[j])) for j in chunk]
            _upsert(stub, [pb.UpsertRequest(corpus=name, items=items)])
        start, info = time.monotonic(), None
        while time.monotonic() - start < wait_s:
            info = stub.DescribeCorpus(pb.DescribeCorpusRequest(name=name), timeout=30).corpus
            if info.index_state in ("built", "build_failed") or (
                info.index_state == "exact" and time.monotonic() - start > 2
            ):
                break
            time.sleep(0.2)
        if info is not None and info.index_state == "build_failed":
            internals = " (the note shows FAISS internals)" if any(m in info.index_note for m in INTERNALS) else ""
            return f"accepted, then the build failed{internals}: {info.index_note[:300]}"
        hits = stub.Search(_search(_vec_content(vectors[7]), corpora=[name], top_k=5), timeout=60).hits
        if not hits:
            return f"search after the build found nothing (index_state {info.index_state if info else '?'})"
    except grpc.RpcError as exc:
        return f"{exc.code().name}: {(exc.details() or '')[:300]}"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--n-rounds", type=int, default=3, help="random rounds after the fixed one (default: %(default)s)"
    )
    parser.add_argument("--per-round", type=int, default=600, help="requests per random round (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "hostile.json")
    parser.add_argument("--all-failures", type=Path, help="also write every failure (not just 20) to this JSON file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tessera-hostile-") as tmp:
        server = HostileServer(Path(tmp)).start()
        try:
            prepare(server)
            cases = all_cases(server.root, args.n_rounds, args.seed, args.per_round)
            report = run_cases(server, cases)
        finally:
            exit_code = server.stop()
        builder = HostileServer(Path(tmp) / "builds").start()
        try:
            factories = [*GOOD_FACTORIES, *MAYBE_FACTORIES, *bad_factories(DIM)]
            builds = build_trials(builder, factories)
        finally:
            builder.stop()
        builds["opened"] = len(builder.audit_lines())
    outcomes = report.pop("outcomes")
    if args.all_failures:
        args.all_failures.write_text(json.dumps([o.row() for o in outcomes if o.problems], indent=1) + "\n")
    report = {
        "benchmark": "hostile",
        **report,
        "deaths": report["deaths"] + builds["deaths"],
        "files_opened_outside": report["files_opened_outside"] + builds["opened"],
        "build_trials_accepted": builds["accepted"],
        "build_deaths": builds["deaths"],
        "build_failures": builds["failures"][:20],
        "server_exit_code": exit_code,
        "commit": git_commit(),
        "measured_at": now_utc(),
        "machine": f"{os.cpu_count()} CPU cores",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "failures"}, indent=2))


if __name__ == "__main__":
    main()
