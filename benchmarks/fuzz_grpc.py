"""Fuzz a live Tessera server over gRPC: malformed and edge-case requests must get documented status codes.

Sends `n` requests, each drawn from one of a few families:

- raw random bytes to every method of the service (and to a method that does not exist),
  through identity (de)serializers so nothing on the client side validates them;
- empty messages;
- well-formed messages with hostile values: unknown enum numbers, NaN/Inf/zero/empty vectors,
  wrong dimensions, huge or zero top_k, negative numbers encoded on the wire, blank and
  oversized strings, unknown or invalid corpus names, deeply nested and junk filters,
  random metadata, more items or queries than the server's limits;
- a handful of messages larger than the server's maximum message size.

Every answer must carry one of the documented status codes (see `DOCUMENTED`); the server must
still answer its health check afterwards. The process's memory is the caller's business.

    python -m benchmarks.fuzz_grpc --address 127.0.0.1:50051 --n 5000 [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tessera.v1 import tessera_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["Tessera"]
# What services/server.py maps its errors to (_status_of), plus DEADLINE_EXCEEDED from our own client-side
# timeout. UNIMPLEMENTED is documented too, but only for a method the service does not have (see is_documented).
DOCUMENTED = frozenset(
    {
        "OK",
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "RESOURCE_EXHAUSTED",
        "DEADLINE_EXCEEDED",
        "FAILED_PRECONDITION",
    }
)
# A unary request gRPC cannot parse never reaches a handler: grpc.aio's own deserializer raises
# google.protobuf.message.DecodeError and grpc answers UNKNOWN (not INTERNAL, as of grpcio 1.85) with these
# details, logging "Unexpected [DecodeError] raised by servicer method" from cygrpc's deserialize().
# That exact case is gRPC's behaviour, not Tessera's, so it counts as documented. Any other UNKNOWN, and
# INTERNAL (what services/server.py answers for an exception it does not recognise), count as unexpected;
# that includes a corrupt message on a client stream (Upsert, EmbedStream), which is parsed inside the
# handler's `async for` and so reaches services/server.py's error mapping.
DESERIALIZE_FAILURE = "Unexpected <class 'google.protobuf.message.DecodeError'>: Error parsing message"

CORPUS = "fuzz"
SPACE = "minilm"
DIM = 384  # MiniLM's dimension; vectors of any other length must be refused
CALL_TIMEOUT_S = 10.0
OVERSIZED_BYTES = 70 << 20  # above the server's default 64 MiB max message size
MAX_EXAMPLES = 5


def _identity(data: bytes) -> bytes:
    return data


@dataclass
class Case:
    """One request: `payloads` are serialized messages (several for a streaming method)."""

    family: str
    method: str
    payloads: list[bytes]
    timeout: float = CALL_TIMEOUT_S


# ---- random values --------------------------------------------------------------------------------------
JUNK_NAMES = ["", " ", "fuzz", "FUZZ", "nope", "../etc", "a/b", "x" * 65, "x" * 5000, "\x00", "é", "-lead", "fuzz\n"]
JUNK_SPACES = [SPACE, "", "nope", "minilm@999", "MINILM", "x" * 5000, "\x00", "../minilm"]
FILTER_KEYS = ["and", "or", "not", "eq", "ne", "in", "range", "exists", "gt", "gte", "lt", "lte"]
FIELD_NAMES = ["genre", "year", "score", "tags", "lang", "missing", "", "id", "and ", "\x00"]
# Enum numbers the proto does not define, plus negatives (proto3 enums are open: they arrive as ints).
UNKNOWN_ENUMS = [-1, 6, 7, 99, 2**31 - 1, -(2**31)]


def _scalar(rng: random.Random) -> Any:
    return rng.choice(
        [
            None,
            True,
            False,
            0,
            -1,
            rng.randint(-(2**40), 2**40),
            rng.uniform(-1e6, 1e6),
            1e308,
            -1e308,
            2**53,
            "",
            "jazz",
            rng.choice(FIELD_NAMES),
            "".join(chr(rng.randint(1, 0x2FFF)) for _ in range(rng.randint(0, 12))),
        ]
    )


def _json_tree(rng: random.Random, depth: int) -> Any:
    """A random JSON-like value whose keys are mostly filter-language words, so it gets past the first check."""
    roll = rng.random()
    if depth <= 0 or roll < 0.3:
        return _scalar(rng)
    if roll < 0.5:
        return [_json_tree(rng, depth - 1) for _ in range(rng.randint(0, 4))]
    keys = [rng.choice(FILTER_KEYS + FIELD_NAMES) for _ in range(rng.randint(0, 3))]
    return {k: _json_tree(rng, depth - 1) for k in keys}


def _deep_filter(rng: random.Random, depth: int) -> dict[str, Any]:
    """A valid leaf under `depth` combinators: deeper than the language's MAX_DEPTH once depth > 32.

    Each level nests three (`not`) to five (`and`/`or`) protobuf messages in a Struct, so from 32 `not` or
    20 `and`/`or` levels on the request exceeds protobuf's own nesting limit (100) and gRPC refuses it as
    undeserializable, before Tessera's depth check runs.
    """
    node: dict[str, Any] = {rng.choice(["genre", "year"]): {"eq": rng.choice(["jazz", 1990])}}
    for _ in range(depth):
        kind = rng.choice(["not", "and", "or"])
        node = {"not": node} if kind == "not" else {kind: [node]}
    return node


def _random_filter(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.25:
        return _deep_filter(rng, rng.choice([1, 5, 31, 32, 33, 50, 64, 120]))
    if roll < 0.45:  # a well-formed clause with a hostile operand
        field = rng.choice(FIELD_NAMES)
        op = rng.choice(["eq", "ne", "in", "range", "exists", "gtt"])
        arg = rng.choice(
            [_scalar(rng), [_scalar(rng) for _ in range(rng.randint(0, 3))], {"gt": _scalar(rng), "lte": _scalar(rng)}]
        )
        return {field: {op: arg}}
    return _json_tree(rng, rng.randint(1, 8))


def _struct(value: Any) -> struct_pb2.Struct | None:
    """A google.protobuf.Struct for a dict; None for anything Struct cannot hold at the top level."""
    if not isinstance(value, dict):
        return None
    message = struct_pb2.Struct()
    message.update({str(k): v for k, v in value.items()})
    return message


def _floats(rng: random.Random) -> list[float]:
    """Vector values: valid, wrong length, empty, zero, or poisoned with NaN/Inf."""
    kind = rng.choice(["valid", "short", "long", "empty", "zeros", "nan", "inf", "huge"])
    if kind == "empty":
        return []
    n = {"short": rng.randint(1, DIM - 1), "long": rng.randint(DIM + 1, 2 * DIM)}.get(kind, DIM)
    values = [rng.gauss(0, 1) for _ in range(n)]
    if kind == "zeros":
        values = [0.0] * n
    elif kind in ("nan", "inf"):
        values[rng.randrange(n)] = math.nan if kind == "nan" else rng.choice([math.inf, -math.inf])
    elif kind == "huge":
        values = [3.0e38] * n  # finite float32, but the norm overflows
    return values


def _vector(rng: random.Random) -> pb.Vector:
    values = _floats(rng)
    if rng.random() < 0.5:
        packed = struct.pack(f"<{len(values)}f", *values)
        if rng.random() < 0.2:
            packed += b"\x00" * rng.randint(1, 3)  # not a whole number of float32 values
        return pb.Vector(packed=packed)
    return pb.Vector(values=values)


def _random_bytes(rng: random.Random, low: int = 0, high: int = 256) -> bytes:
    return rng.randbytes(rng.randint(low, high))


def _content(rng: random.Random) -> pb.Content:
    modality = rng.choice([pb.MODALITY_TEXT] * 4 + [0, 2, 3, 4, 5, *UNKNOWN_ENUMS])
    body = rng.choice(["text", "text", "data", "uri", "vector", "none"])
    content = pb.Content(modality=modality)
    if body == "text":
        content.text = rng.choice(["", "   ", "\n\t", "jazz", "a" * rng.randint(1, 20000), "\u200b", "🎷" * 50])
    elif body == "data":
        content.data = _random_bytes(rng, 0, 2048)
    elif body == "uri":
        content.uri = rng.choice(["", "file:///etc/passwd", "http://127.0.0.1:1/x", "s3://b/k"])
    elif body == "vector":
        content.vector.CopyFrom(_vector(rng))
    return content


# ---- requests -------------------------------------------------------------------------------------------
def _search_request(rng: random.Random) -> pb.SearchRequest:
    request = pb.SearchRequest(
        space=rng.choice(JUNK_SPACES[:1] * 6 + JUNK_SPACES),
        top_k=rng.choice([0, 1, 10, 1000, 1001, 2**31, 2**32 - 1]),
        fusion=rng.choice([0, 1, 2, 3, 4, *UNKNOWN_ENUMS]),
        nprobe=rng.choice([0, 1, 2**32 - 1]),
        ef_search=rng.choice([0, 1, 2**32 - 1]),
        include_vectors=rng.random() < 0.3,
    )
    for _ in range(rng.choice([0, 1, 1, 1, 2, 9])):  # 9 parts is past max_query_parts
        part = request.parts.add(weight=rng.choice([0.0, 1.0, -1.0, math.nan, math.inf, 1e-45]))
        part.content.CopyFrom(_content(rng))
    request.corpora.extend(rng.choice([[], [], [CORPUS], [rng.choice(JUNK_NAMES)], [CORPUS, CORPUS]]))
    request.target_modalities.extend(rng.choice([[], [1], [rng.choice(UNKNOWN_ENUMS)], [0]]))
    if rng.random() < 0.5:
        spec = _struct(_random_filter(rng))
        if spec is not None:
            request.filter.CopyFrom(spec)
    return request


def _upsert_messages(rng: random.Random) -> list[pb.UpsertRequest]:
    messages = []
    for i in range(rng.randint(1, 3)):
        corpus = rng.choice([CORPUS, CORPUS, "", rng.choice(JUNK_NAMES)]) if i == 0 else rng.choice(["", CORPUS])
        request = pb.UpsertRequest(corpus=corpus)
        for _ in range(rng.choice([0, 1, 2, 5])):
            item = request.items.add(id=rng.choice(["", "a", "b", "x" * 10000, "\x00", f"id-{rng.randrange(50)}"]))
            if rng.random() < 0.6:
                item.content.CopyFrom(_content(rng))
            if rng.random() < 0.5:
                item.vector.CopyFrom(_vector(rng))
            meta = _struct(_json_tree(rng, 3))
            if meta is not None:
                item.metadata.CopyFrom(meta)
            item.uri = rng.choice(["", "file:///x"])
        messages.append(request)
    return messages


def _wire_varint(value: int) -> bytes:
    """A protobuf varint; negative values take ten bytes, as protobuf encodes them."""
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _length_delimited(field: int, data: bytes) -> bytes:
    return _wire_varint(field << 3 | 2) + _wire_varint(len(data)) + data


def _negative_numbers(rng: random.Random) -> Case:
    """uint32 fields carrying negative varints: the Python API refuses to build these, the wire does not."""
    base = pb.SearchRequest(space=SPACE, corpora=[CORPUS])
    base.parts.add(weight=1.0).content.CopyFrom(pb.Content(modality=pb.MODALITY_TEXT, text="jazz"))
    extra = b""
    for field in rng.sample([3, 7, 8, 9], rng.randint(1, 3)):  # top_k, fusion, nprobe, ef_search
        extra += _wire_varint(field << 3) + _wire_varint(rng.choice([-1, -(2**31), -(2**63), 2**64 - 1]))
    return Case("negative_numbers", "Search", [base.SerializeToString() + extra])


def _oversized(rng: random.Random) -> Case:
    """One string field far over the server's maximum message size; gRPC refuses it before Tessera runs."""
    method = rng.choice(["Search", "Embed", "Upsert"])
    # Field 1 is a string in all three requests (space / space / corpus), so the payload is well-formed.
    payload = _length_delimited(1, b"a" * OVERSIZED_BYTES)
    return Case("oversized", method, [payload], timeout=60.0)


def _case(rng: random.Random) -> Case:
    roll = rng.random()
    methods = [m.name for m in SERVICE.methods]
    if roll < 0.25:
        method = rng.choice([*methods, "Frobnicate"])  # an unknown method must get UNIMPLEMENTED
        return Case("raw_bytes", method, [_random_bytes(rng, 1, 512) for _ in range(rng.randint(1, 3))])
    if roll < 0.32:
        return Case("empty", rng.choice(methods), [b""])
    if roll < 0.52:
        return Case("search", "Search", [_search_request(rng).SerializeToString()])
    if roll < 0.57:
        count = rng.choice([0, 1, 3, 65])  # 65 is past max_batch_queries
        # Concatenated on the wire (field 1, length-delimited): building a BatchSearchRequest in Python
        # would copy each query and trip protobuf's own depth limit on the deeply nested filters.
        batch = b"".join(_length_delimited(1, _search_request(rng).SerializeToString()) for _ in range(count))
        return Case("batch_search", "BatchSearch", [batch])
    if roll < 0.67:
        request = pb.EmbedRequest(space=rng.choice(JUNK_SPACES), request_id=rng.choice(["", "r" * 1000]))
        many = rng.random() < 0.05
        for _ in range(1025 if many else rng.randint(0, 3)):  # 1025 is past max_items_per_request
            request.items.append(pb.Content(modality=pb.MODALITY_TEXT, text="x") if many else _content(rng))
        method = rng.choice(["Embed", "Embed", "EmbedStream"])
        return Case("embed", method, [request.SerializeToString()] * (rng.randint(1, 2) if method != "Embed" else 1))
    if roll < 0.77:
        return Case("upsert", "Upsert", [m.SerializeToString() for m in _upsert_messages(rng)])
    if roll < 0.84:
        ids = rng.choice([[], ["a"], ["\x00", "x" * 5000], [f"id-{i}" for i in range(rng.randint(1, 200))]])
        corpus = rng.choice([CORPUS, CORPUS, rng.choice(JUNK_NAMES)])
        if rng.random() < 0.5:
            get = pb.GetRequest(corpus=corpus, ids=ids, include_vectors=rng.random() < 0.5)
            return Case("get", "Get", [get.SerializeToString()])
        delete = pb.DeleteRequest(corpus=corpus, ids=ids)
        spec = _struct(_random_filter(rng)) if rng.random() < 0.6 else None
        if spec is not None:
            delete.filter.CopyFrom(spec)
        return Case("delete", "Delete", [delete.SerializeToString()])
    if roll < 0.92:
        name = rng.choice([*JUNK_NAMES, "fuzz-tmp"])
        if name != CORPUS and rng.random() < 0.3:  # never drop the corpus the searches rely on
            return Case("corpus_admin", "DropCorpus", [pb.DropCorpusRequest(name=name).SerializeToString()])
        if rng.random() < 0.3:
            describe = pb.DescribeCorpusRequest(name=name)
            return Case("corpus_admin", "DescribeCorpus", [describe.SerializeToString()])
        create = pb.CreateCorpusRequest(
            name=name,
            space=rng.choice(JUNK_SPACES),
            modality=rng.choice([0, 1, 2, 5, *UNKNOWN_ENUMS]),
            index=pb.IndexConfig(
                factory=rng.choice(["", "auto", "Flat", "HNSW32", "IVF999999,PQ3", "junk", "x" * 1000]),
                nprobe=rng.choice([0, 2**32 - 1]),
                ef_search=rng.choice([0, 2**32 - 1]),
                disable_gpu=rng.random() < 0.5,
            ),
        )
        return Case("corpus_admin", "CreateCorpus", [create.SerializeToString()])
    if roll < 0.97:
        return _negative_numbers(rng)
    # A 1 ms deadline: a quick refusal may still beat it; either way the answer is documented and nothing hangs.
    return Case("tiny_deadline", "Search", [_search_request(rng).SerializeToString()], timeout=0.001)


# ---- calling --------------------------------------------------------------------------------------------
def raw_caller(channel: grpc.Channel, method: str) -> Callable[[list[bytes], float], Any]:
    """A call taking serialized payloads, shaped by the method's streaming kind (unknown methods: unary)."""
    path = f"/{SERVICE.full_name}/{method}"
    descriptor = SERVICE.methods_by_name.get(method)
    client_streaming = bool(descriptor and descriptor.client_streaming)
    server_streaming = bool(descriptor and descriptor.server_streaming)
    kwargs: dict[str, Any] = {"request_serializer": _identity, "response_deserializer": _identity}
    if client_streaming and server_streaming:
        stub = channel.stream_stream(path, **kwargs)
        return lambda payloads, timeout: list(stub(iter(payloads), timeout=timeout))
    if client_streaming:
        stub = channel.stream_unary(path, **kwargs)
        return lambda payloads, timeout: stub(iter(payloads), timeout=timeout)
    stub = channel.unary_unary(path, **kwargs)
    return lambda payloads, timeout: stub(payloads[0], timeout=timeout)


def _outcome(call: Callable[[list[bytes], float], Any], case: Case) -> tuple[str, str]:
    """(status code name, details) for one case; OK when the call returned."""
    try:
        call(case.payloads, case.timeout)
    except grpc.RpcError as exc:
        return exc.code().name, exc.details() or ""
    return "OK", ""


def is_documented(method: str, code: str, details: str) -> bool:
    """Whether a call of `method` answered with `code` and `details` is an answer the service documents."""
    if code in DOCUMENTED:
        return True
    if code == "UNIMPLEMENTED":
        return method not in SERVICE.methods_by_name
    return code == "UNKNOWN" and details.startswith(DESERIALIZE_FAILURE)


def _ensure_corpus(channel: grpc.Channel) -> None:
    """Create the fuzz corpus with a few typed rows, so searches and filters run over real data."""
    # Load the space first, with time to spare, so the fuzz calls' 10 s timeouts measure the fuzz, not MiniLM.
    warm_up = pb.EmbedRequest(space=SPACE, items=[pb.Content(modality=pb.MODALITY_TEXT, text="warm up")])
    raw_caller(channel, "Embed")([warm_up.SerializeToString()], 120.0)
    create = raw_caller(channel, "CreateCorpus")
    request = pb.CreateCorpusRequest(name=CORPUS, space=SPACE, modality=pb.MODALITY_TEXT)
    try:
        create([request.SerializeToString()], 120.0)
    except grpc.RpcError as exc:
        if exc.code() is grpc.StatusCode.ALREADY_EXISTS:
            return  # seeded by an earlier run; its rows may since carry fuzzed metadata, which is fine
        raise
    seed = pb.UpsertRequest(corpus=CORPUS)
    rows = [("jazz", 1959, ["live"]), ("rock", 1991, ["demo", "mono"]), ("folk", 2004, [])]
    for i, (genre, year, tags) in enumerate(rows):
        item = seed.items.add(id=f"seed-{i}")
        item.content.CopyFrom(pb.Content(modality=pb.MODALITY_TEXT, text=f"a {genre} record from {year}"))
        item.metadata.update({"genre": genre, "year": year, "score": i / 3, "tags": tags})
    raw_caller(channel, "Upsert")([seed.SerializeToString()], 120.0)


def _health(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10.0)
        except grpc.RpcError:
            return False
    return response.status == health_pb2.HealthCheckResponse.SERVING


def _schedule(n: int, rng: random.Random) -> Iterator[Case]:
    """n cases; a handful of them oversized (each costs ~70 MB of allocation and transfer)."""
    oversized = set(rng.sample(range(n), min(n, max(1, min(5, n // 1000))))) if n else set()
    for i in range(n):
        yield _oversized(rng) if i in oversized else _case(rng)


def run_grpc_fuzz(address: str, n: int, seed: int = 0) -> dict[str, Any]:
    """Send n malformed or edge-case requests to the (insecure, unauthenticated) server at `address`.

    Returns `requests`, `seconds`, `by_code` (status name -> count), `by_family` (case family -> count),
    `deserialize_failures` (the documented UNKNOWN answers), `unexpected` (answers outside the documented
    set), `unexpected_examples` (up to MAX_EXAMPLES distinct ones) and `server_up` (health check afterwards).
    """
    rng = random.Random(seed)
    by_code: Counter[str] = Counter()
    by_family: Counter[str] = Counter()
    examples: list[dict[str, str]] = []
    unexpected = deserialize_failures = 0
    start = time.perf_counter()
    # No client-side size cap: the server's limit is what is under test.
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    with grpc.insecure_channel(address, options=options) as channel:
        _ensure_corpus(channel)
        calls: dict[str, Callable[[list[bytes], float], Any]] = {}
        for case in _schedule(n, rng):
            call = calls.setdefault(case.method, raw_caller(channel, case.method))
            code, details = _outcome(call, case)
            by_code[code] += 1
            by_family[case.family] += 1
            if code == "UNKNOWN" and details.startswith(DESERIALIZE_FAILURE):
                deserialize_failures += 1
            if not is_documented(case.method, code, details):
                unexpected += 1
                example = {"family": case.family, "method": case.method, "code": code, "details": details[:200]}
                # Distinct ones only: the first few of a common failure would crowd out a rarer one.
                seen = {(e["method"], e["code"], e["details"][:60]) for e in examples}
                if len(examples) < MAX_EXAMPLES and (case.method, code, details[:60]) not in seen:
                    examples.append(example)
    return {
        "requests": n,
        "seconds": round(time.perf_counter() - start, 2),
        "by_code": dict(by_code.most_common()),
        "by_family": dict(by_family.most_common()),
        "deserialize_failures": deserialize_failures,
        "unexpected": unexpected,
        "unexpected_examples": examples,
        "server_up": _health(address),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", default="127.0.0.1:50051", help="host:port of a live, insecure server")
    parser.add_argument("--n", type=int, default=1000, help="requests to send (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; a seed replays the same requests")
    args = parser.parse_args()
    print(json.dumps(run_grpc_fuzz(args.address, args.n, args.seed), indent=2))


if __name__ == "__main__":
    main()
