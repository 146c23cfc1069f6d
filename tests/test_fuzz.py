"""Fuzzing: bad input only ever yields the documented errors, and the server stays up.

- Decoders (embedder/decode.py): random bytes and mutated real files either decode or raise DecodeError.
- The filter language (index/filters.py): random JSON-like specs either compile or raise FilterError,
  and a compiled filter evaluated over a typed payload table returns a mask or raises FilterError.
- The gRPC service: random requests get OK or a status code services/server.py maps errors to,
  and the health check still answers SERVING afterwards; benchmarks/fuzz_grpc.py adds raw bytes,
  oversized and deeply nested messages on top.

Hypothesis runs derandomized and keeps no example database, so every run tries the same inputs; a
failure reports the (small) input that broke it. Inputs known to break the contract today are pinned by
plain tests next to the property they belong to.
"""

from __future__ import annotations

import io
import math
import re
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from benchmarks.fuzz_grpc import is_documented, raw_caller, run_grpc_fuzz
from tessera.background import ServerThread
from tessera.client import Client
from tessera.embedder.decode import decode_audio, decode_image, decode_text, decode_vector, decode_video
from tessera.embedder.errors import DecodeError
from tessera.index.filters import COMBINATORS, MAX_DEPTH, OPERATORS, RANGE_BOUNDS, FilterError, compile_filter
from tessera.v1 import tessera_pb2 as pb
from tessera.v1 import tessera_pb2_grpc as pb_grpc
from tests.conftest import FSDD, MEDIA, REPO

PNG = REPO / "services" / "samples" / "digits" / "7.png"
WAV = FSDD / "0_george_0.wav"
MP3 = MEDIA / "audio1.mp3"
MP4 = MEDIA / "video1.mp4"

# A decode that takes this long on these small inputs is a hang in the making, not slowness.
HANG_S = 30.0
# A true hang inside FFmpeg or libsndfile never returns to the HANG_S check: fail the test well before
# the suite-wide 600 s timeout instead.
pytestmark = pytest.mark.timeout(300)
T = TypeVar("T")


def fuzz_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,  # wall time on a shared CI machine is noise; HANG_S catches real hangs
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def note(label: str) -> None:
    """A Hypothesis event (see --hypothesis-show-statistics), when running under Hypothesis."""
    if currently_in_test_context():
        event(label)


def decodes_or_decode_error(fn: Callable[[], T]) -> T | DecodeError:
    """Run a decoder: its result, or the DecodeError it raised. Any other exception propagates and fails the test."""
    start = time.monotonic()
    try:
        result = fn()
        note("decoded")  # --hypothesis-show-statistics: how often fuzzing got past the container checks
        return result
    except DecodeError as exc:
        note("DecodeError: " + re.sub(r"\d+", "N", exc.reason.split(" (")[0])[:60])
        return exc
    finally:
        assert time.monotonic() - start < HANG_S, f"decoding took over {HANG_S} s"


@pytest.fixture(scope="module")
def originals() -> dict[str, bytes]:
    for path in (PNG, WAV, MP3, MP4):
        if not path.is_file():
            pytest.fail(f"fuzzing seed file missing: {path}; set TESSERA_SHARED_DATA")
    return {p.name: p.read_bytes() for p in (PNG, WAV, MP3, MP4)}


# ---- mutations of real files ----------------------------------------------------------------------------
# One mutation: (operation, region, offset, length, payload). Hypothesis shrinks and prints these small
# tuples, not the mutated file, so a failure report is a short, replayable recipe.
Mutation = tuple[str, str, int, int, bytes]
MUTATION_OPS = ("flip", "overwrite", "insert", "delete", "truncate", "duplicate")
# Container headers sit at the start (PNG IHDR, RIFF/fmt chunks, MP4 ftyp/moov) and sometimes at the end
# (an MP4 moov after mdat); uniform positions in a 300 kB file would almost never touch them.
MUTATION_REGIONS = ("head", "tail", "anywhere")
HEAD_BYTES = 4096

mutations = st.lists(
    st.tuples(
        st.sampled_from(MUTATION_OPS),
        st.sampled_from(MUTATION_REGIONS),
        st.integers(min_value=0, max_value=2**31),
        st.integers(min_value=1, max_value=256),
        st.binary(min_size=1, max_size=16),
    ),
    min_size=1,
    max_size=6,
)


def mutate(data: bytes, ops: list[Mutation]) -> bytes:
    out = bytearray(data)
    for op, region, offset, length, payload in ops:
        size = len(out)
        if region == "head":
            pos = offset % (min(size, HEAD_BYTES) + 1)
        elif region == "tail":
            pos = size - offset % (min(size, HEAD_BYTES) + 1)
        else:
            pos = offset % (size + 1)
        if op == "flip":
            if pos < size:
                out[pos] ^= payload[0] or 0xFF
        elif op == "overwrite":
            out[pos : pos + len(payload)] = payload
        elif op == "insert":
            out[pos:pos] = payload * length
        elif op == "delete":
            del out[pos : pos + length]
        elif op == "truncate":
            del out[pos:]
        elif op == "duplicate":  # repeated chunks: boxes that claim to contain themselves, doubled headers
            out[pos:pos] = out[pos : pos + length * 16] * 2
    return bytes(out)


def test_seed_files_decode(originals: dict[str, bytes], encoded_images: dict[str, bytes]) -> None:
    """The mutation tests start from inputs that decode, so a mutant's DecodeError is the mutation's doing."""
    assert all(decode_image(data).size == (64, 64) for data in encoded_images.values())
    assert decode_audio(originals[WAV.name], 16000).samples.size > 0
    assert decode_audio(originals[MP3.name], 16000).samples.size > 0
    assert len(decode_video(originals[MP4.name], 8).frames) == 8


def test_mutate_changes_real_files(originals: dict[str, bytes]) -> None:
    """Guard for the guards: the mutations below must actually alter and shorten the seed files."""
    png = originals[PNG.name]
    assert mutate(png, [("truncate", "head", 10, 1, b"x")]) == png[:10]
    assert mutate(png, [("flip", "head", 0, 1, b"\x01")])[0] == png[0] ^ 1
    assert mutate(png, [("insert", "tail", 0, 2, b"ab")]) == png + b"abab"
    assert len(mutate(png, [("delete", "anywhere", 5, 3, b"x")])) == len(png) - 3


# ---- decoders -------------------------------------------------------------------------------------------
@fuzz_settings(150)
@given(content=st.one_of(st.binary(max_size=512), st.text(max_size=256), st.none(), st.integers(), st.lists(st.text())))
@example(content=b"\xff\xfe")  # not UTF-8
@example(content="\u200b \t\n")  # only blanks
@example(content=None)
def test_decode_text_accepts_or_raises_decode_error(content: Any) -> None:
    result = decodes_or_decode_error(lambda: decode_text(content))
    if not isinstance(result, DecodeError):
        assert isinstance(result, str) and result.strip()


@pytest.fixture(scope="module")
def encoded_images(originals: dict[str, bytes]) -> dict[str, bytes]:
    """The digit re-encoded in every accepted format, so mutations reach each format's decoder."""
    image = Image.open(io.BytesIO(originals[PNG.name])).convert("RGB")
    out = {}
    for fmt in ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"):
        buffer = io.BytesIO()
        image.save(buffer, format=fmt)
        out[fmt] = buffer.getvalue()
    return out


def check_image(content: bytes) -> None:
    result = decodes_or_decode_error(lambda: decode_image(content))
    if not isinstance(result, DecodeError):
        assert result.mode == "RGB" and result.width * result.height > 0


@fuzz_settings(60)
@given(content=st.binary(max_size=1024))
@example(content=b"")
@example(content=b"\x89PNG\r\n\x1a\n")  # a PNG signature and nothing else
def test_decode_image_random_bytes(content: bytes) -> None:
    check_image(content)


@fuzz_settings(150)
@given(fmt=st.sampled_from(["PNG", "PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"]), ops=mutations)
@example(fmt="PNG", ops=[("overwrite", "head", 16, 1, b"\x7f\xff\xff\xff\x7f\xff\xff\xff")])  # IHDR: 2^31 x 2^31
@pytest.mark.filterwarnings("ignore::UserWarning")  # PIL warns about the corrupt TIFF tags it is fed; expected
def test_decode_image_mutated_files(encoded_images: dict[str, bytes], fmt: str, ops: list[Mutation]) -> None:
    check_image(mutate(encoded_images[fmt], ops))


AUDIO_RATES = st.sampled_from([8000, 16000, 22050, 44100, 48000])


def check_audio(content: bytes, rate: int) -> None:
    result = decodes_or_decode_error(lambda: decode_audio(content, rate))
    if not isinstance(result, DecodeError):
        assert result.sample_rate == rate and result.samples.ndim == 1 and result.samples.size > 0
        assert np.isfinite(result.samples).all()


@fuzz_settings(60)
@given(content=st.binary(max_size=2048), rate=AUDIO_RATES)
@example(content=b"RIFF\x00\x00\x00\x00WAVE", rate=16000)
def test_decode_audio_random_bytes(content: bytes, rate: int) -> None:
    check_audio(content, rate)


@fuzz_settings(120)
@given(name=st.sampled_from([WAV.name, WAV.name, MP3.name]), ops=mutations, rate=AUDIO_RATES)
@example(name=WAV.name, ops=[("truncate", "head", 44, 1, b"x")], rate=16000)  # header only, no samples
def test_decode_audio_mutated_files(originals: dict[str, bytes], name: str, ops: list[Mutation], rate: int) -> None:
    check_audio(mutate(originals[name], ops), rate)


def check_video(content: bytes, num_frames: int, audio_rate: int | None) -> None:
    result = decodes_or_decode_error(lambda: decode_video(content, num_frames, audio_rate))
    if not isinstance(result, DecodeError):
        assert 1 <= len(result.frames) <= num_frames
        assert all(frame.mode == "RGB" for frame in result.frames)


@fuzz_settings(15)
@given(content=st.binary(max_size=2048), num_frames=st.integers(1, 16))
def test_decode_video_random_bytes(content: bytes, num_frames: int) -> None:
    check_video(content, num_frames, None)


@fuzz_settings(25)
@given(ops=mutations, num_frames=st.integers(1, 16), audio_rate=st.sampled_from([None, 16000]))
@example(ops=[("truncate", "anywhere", 100_000, 1, b"x")], num_frames=8, audio_rate=None)
def test_decode_video_mutated_file(
    originals: dict[str, bytes], ops: list[Mutation], num_frames: int, audio_rate: int | None
) -> None:
    check_video(mutate(originals[MP4.name], ops), num_frames, audio_rate)


def check_vector(content: Any, dim: int) -> None:
    result = decodes_or_decode_error(lambda: decode_vector(content, dim))
    if not isinstance(result, DecodeError):
        assert result.shape == (dim,) and np.isfinite(result).all() and np.any(result)


@fuzz_settings(150)
@given(data=st.data(), dim=st.integers(1, 8))
def test_decode_vector_bytes(data: st.DataObject, dim: int) -> None:
    # Mostly lengths near a whole number of float32 values for this dim, so the value checks run too.
    size = data.draw(st.one_of(st.sampled_from([4 * dim, 4 * dim, 4 * dim - 1, 4 * dim + 4]), st.integers(0, 64)))
    check_vector(data.draw(st.binary(min_size=size, max_size=size)), dim)


python_numbers = st.one_of(st.floats(), st.integers(), st.booleans(), st.none(), st.text(max_size=4))


@fuzz_settings(150)
@given(
    content=st.one_of(
        st.lists(python_numbers, max_size=6),
        st.lists(st.lists(st.floats(), max_size=3), max_size=3),  # nested: not a flat vector
        python_numbers,
        st.dictionaries(st.text(max_size=2), st.floats(), max_size=3),
    ),
    dim=st.integers(1, 6),
)
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # float64 > float32 max: inf
def test_decode_vector_python_values(content: Any, dim: int) -> None:
    check_vector(content, dim)


# Known failures are plain tests rather than @example()s: a failing explicit example stops Hypothesis before
# it generates anything, which would hide every other input of the property until the bug is fixed.
def test_decode_vector_int_beyond_float_range_raises_decode_error() -> None:
    """A Python int too big for a float: numpy raises OverflowError, which is not a ValueError."""
    check_vector([10**400, 1.0], 2)


# ---- the filter language ------------------------------------------------------------------------------
FIELDS = ("genre", "year", "score", "tags", "lang", "flag", "missing")
filter_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6), st.sampled_from(["jazz", "live", "en"])
)
LANGUAGE_WORDS = COMBINATORS + OPERATORS + tuple(RANGE_BOUNDS) + FIELDS


def json_like(keys: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Nested lists and objects of scalars, object keys drawn from `keys`."""
    return st.recursive(
        filter_scalars,
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
        max_leaves=40,
    )


# Python callers may pass any dict, so keys need not be strings; Struct (gRPC) keys always are.
any_keys = st.one_of(st.sampled_from(LANGUAGE_WORDS), st.text(max_size=5), st.integers())
str_keys = st.one_of(st.sampled_from(LANGUAGE_WORDS), st.text(max_size=5))


@st.composite
def well_formed_clause(draw: st.DrawFn) -> dict[str, Any]:
    """A field with one operator and a possibly hostile argument: passes the structural checks more often."""
    op = draw(st.sampled_from([*OPERATORS, "gtt"]))
    arg = draw(
        st.one_of(
            filter_scalars,
            st.lists(filter_scalars, max_size=4),
            st.dictionaries(st.sampled_from([*RANGE_BOUNDS, "between"]), filter_scalars, max_size=3),
        )
    )
    return {draw(st.sampled_from(FIELDS)): {op: arg}}


def filter_specs(keys: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Combinators over well-formed clauses and junk: mostly valid structure with hostile corners."""
    return st.recursive(
        st.one_of(well_formed_clause(), json_like(keys)),
        lambda inner: st.one_of(
            st.builds(lambda parts: {"and": parts}, st.lists(inner, max_size=3)),
            st.builds(lambda parts: {"or": parts}, st.lists(inner, max_size=3)),
            st.builds(lambda part: {"not": part}, inner),
            st.dictionaries(st.sampled_from(FIELDS), inner, max_size=3),
        ),
        max_leaves=20,
    )


def compiles_or_filter_error(spec: Any) -> Any:
    try:
        return compile_filter(spec)
    except FilterError as exc:
        assert isinstance(exc, ValueError) and exc.path.startswith("filter")
        return None


def nested_list(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@fuzz_settings(300)
@given(spec=st.one_of(filter_specs(any_keys), json_like(any_keys)))
def test_filter_compiles_or_raises_filter_error(spec: Any) -> None:
    compiles_or_filter_error(spec)


def test_filter_deeply_nested_operand_raises_filter_error() -> None:
    """An operand nested past the interpreter's recursion limit: the error message's repr() of it must not recurse.

    A plain test, not an @example: Hypothesis's own pretty-printer cannot print such a value either.
    """
    compiles_or_filter_error({"genre": {"eq": nested_list(sys.getrecursionlimit())}})


@fuzz_settings(60)
@given(depth=st.integers(0, 200), kinds=st.lists(st.sampled_from(COMBINATORS), min_size=1, max_size=4))
@example(depth=MAX_DEPTH, kinds=["and"])
@example(depth=MAX_DEPTH + 1, kinds=["not"])
def test_filter_depth_limit_is_exact(depth: int, kinds: list[str]) -> None:
    spec: dict[str, Any] = {"year": {"eq": 1990}}
    for i in range(depth):
        kind = kinds[i % len(kinds)]
        spec = {"not": spec} if kind == "not" else {kind: [spec]}
    if depth <= MAX_DEPTH:
        assert compile_filter(spec) is not None
    else:
        with pytest.raises(FilterError, match="deeper than"):
            compile_filter(spec)


@pytest.fixture(scope="module")
def payload_table() -> pa.Table:
    """One column of each type a corpus's metadata takes, with nulls, as Filter.mask sees it."""
    return pa.table(
        {
            "genre": pa.array(["jazz", "rock", None], pa.string()),
            "year": pa.array([1959, None, 2004], pa.int64()),
            "score": pa.array([0.5, math.nan, None], pa.float64()),
            "tags": pa.array([["live"], [], None], pa.list_(pa.string())),
            "lang": pa.array([None, None, None], pa.null()),
            "flag": pa.array([True, False, None], pa.bool_()),
        }
    )


def masks_or_filter_error(spec: Any, table: pa.Table) -> None:
    compiled = compiles_or_filter_error(spec)
    if compiled is None:
        return
    try:
        mask = compiled.mask(table)
    except FilterError:
        return
    assert mask.dtype == bool and mask.shape == (table.num_rows,)


@fuzz_settings(300)
@given(spec=filter_specs(any_keys))
def test_filter_mask_returns_rows_or_raises_filter_error(payload_table: pa.Table, spec: Any) -> None:
    masks_or_filter_error(spec, payload_table)


@pytest.mark.parametrize("op", ["eq", "in", "range"])
def test_filter_int_beyond_int64_raises_filter_error(payload_table: pa.Table, op: str) -> None:
    """Compiles (a JSON int is unbounded), then pyarrow raises OverflowError converting it at mask time."""
    arg = {"eq": 2**70, "in": [2**70], "range": {"gt": 2**70}}[op]
    masks_or_filter_error({"year": {op: arg}}, payload_table)


# ---- the gRPC service -----------------------------------------------------------------------------------
# What services/server.py's _status_of maps exceptions to, plus DEADLINE_EXCEEDED for our own timeout.
# INTERNAL (its answer for an exception it does not recognise) and UNKNOWN are deliberately absent.
DOCUMENTED_CODES = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.FAILED_PRECONDITION,
}
CORPUS = "fuzz"
# One byte past NAME_MAX: corpus and space names are looked up as paths on the server's disk.
LONG_NAME = "x" * 256
CALL_TIMEOUT_S = 30.0  # generous: the first text query loads MiniLM on a busy machine


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    srv = ServerThread(tmp_path_factory.mktemp("fuzz-served")).start()
    with Client(srv.address, timeout=120) as client:
        client.wait_ready()
        client.create_corpus(CORPUS, space="minilm", modality="text")
        rows = [("jazz", 1959, ["live"]), ("rock", 1991, ["demo"]), ("folk", 2004, [])]
        items = [
            {"id": f"seed-{i}", "text": f"a {g} record from {y}", "metadata": {"genre": g, "year": y, "tags": t}}
            for i, (g, y, t) in enumerate(rows)
        ]
        assert client.upsert(CORPUS, items) == len(rows)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def stub(server: ServerThread) -> Iterator[pb_grpc.TesseraStub]:
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.TesseraStub(channel)


def status_of(call: Callable[[], Any]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        note(f"{exc.code().name}: {re.sub(r'[0-9]+', 'N', (exc.details() or '')[:50])}")
        assert exc.code() in DOCUMENTED_CODES, f"{exc.code().name}: {exc.details()}"
        return exc.code()
    note("OK")
    return grpc.StatusCode.OK


def assert_serving(server: ServerThread) -> None:
    with Client(server.address, timeout=10) as client:
        assert client.health() == "SERVING"


def mostly(valid: st.SearchStrategy[T], hostile: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """Valid seven times in eight: a request must get past its first bad field for the later fields to be tested."""
    return st.sampled_from([True] * 7 + [False]).flatmap(lambda ok: valid if ok else hostile)


DIM = 384  # MiniLM
enum_values = st.one_of(st.integers(0, 5), st.integers(-(2**31), 2**31 - 1))  # proto3 enums are open
names = st.one_of(
    st.sampled_from([CORPUS, "", "nope", "../etc", "a/b", "x" * 65, LONG_NAME, "-x"]), st.text(max_size=12)
)
space_names = mostly(st.just("minilm"), st.one_of(st.sampled_from(["", "nope", LONG_NAME, "../minilm"]), st.text()))
float_values = st.floats(width=32)  # NaN and +-Inf included
unit_floats = st.integers(0, 2**32 - 1).map(lambda seed: np.random.default_rng(seed).normal(size=DIM).tolist())


@st.composite
def hostile_floats(draw: st.DrawFn) -> list[float]:
    kind = draw(st.sampled_from(["poisoned", "zeros", "short", "long", "empty", "huge"]))
    if kind == "poisoned":  # the right dimension with one NaN or infinity
        values = draw(unit_floats)
        values[draw(st.integers(0, DIM - 1))] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        return values
    if kind == "zeros":
        return [0.0] * DIM
    if kind == "huge":  # finite float32, but the norm overflows
        return [3.0e38] * DIM
    if kind == "empty":
        return []
    return draw(st.lists(float_values, max_size=8) if kind == "short" else unit_floats.map(lambda v: v + v))


@st.composite
def vectors(draw: st.DrawFn) -> pb.Vector:
    values = draw(mostly(unit_floats, hostile_floats()))
    if draw(st.booleans()):
        packed = np.asarray(values, dtype="<f4").tobytes()
        return pb.Vector(packed=packed + draw(st.sampled_from([b"", b"", b"", b"\x00"])))  # sometimes not 4-aligned
    return pb.Vector(values=values)


texts = mostly(
    st.one_of(st.sampled_from(["jazz", "a rock record from 1991"]), st.text(min_size=1, max_size=40)),
    st.sampled_from(["", "  ", "\u200b", "a" * 20000]),
)


@st.composite
def contents(draw: st.DrawFn) -> pb.Content:
    kind = draw(st.sampled_from(["text", "text", "text", "text", "text", "vector", "vector", "hostile"]))
    if kind == "text":
        return pb.Content(modality=pb.MODALITY_TEXT, text=draw(texts))
    if kind == "vector":
        return pb.Content(modality=pb.MODALITY_VECTOR, vector=draw(vectors()))
    content = pb.Content(modality=draw(enum_values))  # any modality number with any body, or none
    body = draw(st.sampled_from(["text", "data", "uri", "vector", "none"]))
    if body == "text":
        content.text = draw(texts)
    elif body == "data":
        content.data = draw(st.binary(max_size=64))
    elif body == "uri":
        content.uri = draw(st.sampled_from(["", "file:///etc/passwd", "http://127.0.0.1:1/"]))
    elif body == "vector":
        content.vector.CopyFrom(draw(vectors()))
    return content


# Struct holds JSON: string keys, finite or not numbers (the server must refuse NaN/Inf), nesting.
struct_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.floats(), st.integers(-(2**60), 2**60), st.text(max_size=6)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=15,
)
# A Struct is an object at the top; wrap anything else in `and` so the junk still reaches the compiler.
struct_filters = filter_specs(str_keys).map(lambda spec: spec if isinstance(spec, dict) else {"and": [spec]})
typed_metadata = st.fixed_dictionaries(
    {}, optional={"genre": st.sampled_from(["jazz", "rock"]), "year": st.integers(1900, 2030), "tags": st.just(["x"])}
)


@st.composite
def search_requests(draw: st.DrawFn) -> pb.SearchRequest:
    request = pb.SearchRequest(
        space=draw(space_names),
        top_k=draw(mostly(st.integers(1, 20), st.sampled_from([0, 1000, 1001, 2**31, 2**32 - 1]))),
        fusion=draw(mostly(st.integers(0, 4), enum_values)),
        nprobe=draw(st.sampled_from([0, 1, 2**32 - 1])),
        ef_search=draw(st.sampled_from([0, 1, 2**32 - 1])),
        include_vectors=draw(st.booleans()),
        corpora=draw(mostly(st.sampled_from([[], [CORPUS]]), st.lists(names, max_size=2))),
        target_modalities=draw(mostly(st.sampled_from([[], [pb.MODALITY_TEXT]]), st.lists(enum_values, max_size=2))),
    )
    for content in draw(mostly(st.lists(contents(), min_size=1, max_size=2), st.lists(contents(), max_size=9))):
        weight = draw(mostly(st.floats(0.1, 2.0), st.one_of(st.just(0.0), float_values)))
        request.parts.add(weight=weight).content.CopyFrom(content)
    if draw(st.booleans()):
        request.filter.update(draw(struct_filters))
    return request


@st.composite
def upsert_streams(draw: st.DrawFn) -> list[pb.UpsertRequest]:
    messages = []
    for i in range(draw(st.integers(1, 3))):
        corpus = draw(mostly(st.just(CORPUS), names)) if i == 0 else draw(st.sampled_from(["", CORPUS]))
        request = pb.UpsertRequest(corpus=corpus)
        for _ in range(draw(st.integers(0, 3))):
            item_id = draw(mostly(st.text(min_size=1, max_size=8), st.sampled_from(["", "x" * 3000, "\x00"])))
            item = request.items.add(id=item_id)
            if draw(st.booleans()):
                item.content.CopyFrom(draw(contents()))
            if draw(st.booleans()):
                item.vector.CopyFrom(draw(vectors()))
            metadata = draw(mostly(typed_metadata, st.dictionaries(str_keys, struct_values, max_size=3)))
            item.metadata.update(metadata)
        messages.append(request)
    return messages


@st.composite
def embed_requests(draw: st.DrawFn) -> pb.EmbedRequest:
    return pb.EmbedRequest(
        space=draw(space_names),
        items=draw(mostly(st.lists(contents(), min_size=1, max_size=3), st.lists(contents(), max_size=3))),
        request_id=draw(st.text(max_size=8)),
    )


@fuzz_settings(100)
@given(request=search_requests())
def test_search_requests_get_documented_codes(server: ServerThread, stub: pb_grpc.TesseraStub, request: Any) -> None:
    status_of(lambda: stub.Search(request, timeout=CALL_TIMEOUT_S))


@fuzz_settings(80)
@given(stream=upsert_streams())
def test_upsert_streams_get_documented_codes(
    server: ServerThread, stub: pb_grpc.TesseraStub, stream: list[Any]
) -> None:
    status_of(lambda: stub.Upsert(iter(stream), timeout=CALL_TIMEOUT_S))


@fuzz_settings(80)
@given(request=embed_requests())
def test_embed_requests_get_documented_codes(server: ServerThread, stub: pb_grpc.TesseraStub, request: Any) -> None:
    status_of(lambda: stub.Embed(request, timeout=CALL_TIMEOUT_S))


def test_known_bad_requests_get_their_documented_codes(server: ServerThread, stub: pb_grpc.TesseraStub) -> None:
    """Spot checks that the properties above are not vacuous: each family of bad input is refused as documented."""
    text = pb.Content(modality=pb.MODALITY_TEXT, text="jazz")
    search = pb.SearchRequest(space="minilm", corpora=[CORPUS], parts=[pb.QueryPart(content=text)])
    assert status_of(lambda: stub.Search(search, timeout=CALL_TIMEOUT_S)) == grpc.StatusCode.OK
    too_many = pb.SearchRequest(space="minilm", top_k=1001, parts=[pb.QueryPart(content=text)])
    assert status_of(lambda: stub.Search(too_many, timeout=CALL_TIMEOUT_S)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    no_parts = pb.SearchRequest(space="minilm")
    assert status_of(lambda: stub.Search(no_parts, timeout=CALL_TIMEOUT_S)) == grpc.StatusCode.INVALID_ARGUMENT
    unknown = pb.SearchRequest(space="minilm", corpora=["nope"], parts=[pb.QueryPart(content=text)])
    assert status_of(lambda: stub.Search(unknown, timeout=CALL_TIMEOUT_S)) == grpc.StatusCode.NOT_FOUND
    nan = pb.Content(modality=pb.MODALITY_VECTOR, vector=pb.Vector(values=[math.nan] * 384))
    poisoned = pb.SearchRequest(space="minilm", parts=[pb.QueryPart(content=nan)])
    assert status_of(lambda: stub.Search(poisoned, timeout=CALL_TIMEOUT_S)) == grpc.StatusCode.INVALID_ARGUMENT
    bad_modality = pb.EmbedRequest(space="minilm", items=[pb.Content(modality=99, text="x")])
    assert status_of(lambda: stub.Embed(bad_modality, timeout=CALL_TIMEOUT_S)) == grpc.StatusCode.INVALID_ARGUMENT
    nameless = pb.UpsertRequest(items=[pb.Item(id="a", content=text)])
    assert status_of(lambda: stub.Upsert(iter([nameless]), timeout=CALL_TIMEOUT_S)) == grpc.StatusCode.INVALID_ARGUMENT
    assert_serving(server)


def rpc_code(server: ServerThread, method: str, payloads: list[bytes]) -> tuple[grpc.StatusCode, str]:
    """Status code and details of one call of `method` with serialized messages (several for a client stream)."""
    with grpc.insecure_channel(server.address) as channel:
        try:
            raw_caller(channel, method)(payloads, CALL_TIMEOUT_S)
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


@pytest.mark.parametrize("kind", ["space", "corpus"])
def test_over_long_names_get_documented_codes(server: ServerThread, kind: str) -> None:
    """A name longer than the filesystem allows is an unknown or invalid name, whichever RPC carries it."""
    text = pb.Content(modality=pb.MODALITY_TEXT, text="jazz")
    query = [pb.QueryPart(content=text)]
    if kind == "space":
        requests: dict[str, Any] = {
            "Search": pb.SearchRequest(space=LONG_NAME, corpora=[CORPUS], parts=query),
            "Embed": pb.EmbedRequest(space=LONG_NAME, items=[text]),
            "CreateCorpus": pb.CreateCorpusRequest(name="fuzz-long", space=LONG_NAME, modality=pb.MODALITY_TEXT),
        }
    else:
        requests = {
            "Search": pb.SearchRequest(space="minilm", corpora=[LONG_NAME], parts=query),
            "CreateCorpus": pb.CreateCorpusRequest(name=LONG_NAME, space="minilm", modality=pb.MODALITY_TEXT),
            "Upsert": pb.UpsertRequest(corpus=LONG_NAME, items=[pb.Item(id="a", content=text)]),
            "Get": pb.GetRequest(corpus=LONG_NAME, ids=["a"]),
            "Delete": pb.DeleteRequest(corpus=LONG_NAME, ids=["a"]),
            "DescribeCorpus": pb.DescribeCorpusRequest(name=LONG_NAME),
            "DropCorpus": pb.DropCorpusRequest(name=LONG_NAME),
        }
    codes = {method: rpc_code(server, method, [r.SerializeToString()])[0].name for method, r in requests.items()}
    assert all(code in ("NOT_FOUND", "INVALID_ARGUMENT") for code in codes.values()), codes


@pytest.mark.parametrize("method", ["Upsert", "EmbedStream"])
def test_corrupt_stream_message_gets_documented_code(server: ServerThread, method: str) -> None:
    """A client-stream message gRPC cannot parse is bad input, as it is on a unary call: not an internal error."""
    code, details = rpc_code(server, method, [b"\xff\xff\xff"])  # a truncated varint: never parses
    assert code is grpc.StatusCode.INVALID_ARGUMENT or is_documented(method, code.name, details), (code, details)


def test_grpc_fuzz_benchmark_finds_only_documented_codes(server: ServerThread) -> None:
    """Raw bytes, oversized and deeply nested messages on top of the properties; the server must stay up."""
    report = run_grpc_fuzz(server.address, n=400, seed=0)
    assert report["server_up"]
    assert report["requests"] == 400 and sum(report["by_code"].values()) == 400
    # The mix must reach accepted, refused and unparseable paths, or the run proves nothing.
    assert all(report["by_code"].get(code, 0) > 0 for code in ("OK", "INVALID_ARGUMENT", "NOT_FOUND", "UNKNOWN"))
    assert report["deserialize_failures"] == report["by_code"]["UNKNOWN"]
    assert report["by_family"]["oversized"] >= 1
    assert report["unexpected"] == 0, report["unexpected_examples"]


def test_server_survives_the_fuzzing(server: ServerThread) -> None:
    """Runs last in this module: after every property above, the server still answers its health check."""
    assert_serving(server)
