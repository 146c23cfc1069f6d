"""The corpora a Milvus server holds for Tessera: one collection each, found by name, described by properties.

Everything a replica needs to serve a corpus lives in Milvus, so any number of `tessera serve`
processes pointed at one Milvus see the same corpora, including ones made after they started:

- corpus `name` is collection `tessera_<name>` (the characters Milvus does not allow in a
  collection name, `-` and `.`, and `_` itself, are escaped reversibly);
- its manifest (space, modality, dim, similarity, index settings, uid) is the collection
  property `tessera.manifest`; the metadata keys that ever held lists, `tessera.list_fields`.

The schema: `id` (VARCHAR primary key), `vector` (FLOAT_VECTOR, inner product over unit vectors),
`metadata` (JSON), `text` and `uri` (nullable VARCHAR). Media bytes are not stored.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from typing import Any

from tessera.embedder.quoting import quote

from .errors import CorpusError
from .items import MAX_ID_BYTES

log = logging.getLogger(__name__)

PREFIX = "tessera_"
MAX_COLLECTION_NAME = 255
MANIFEST_PROPERTY = "tessera.manifest"
LIST_FIELDS_PROPERTY = "tessera.list_fields"
MAX_VARCHAR_BYTES = 65_535  # Milvus's ceiling on a VARCHAR field
# pymilvus pings an idle connection every 10 s. Milvus's own server permits that; `milvus-lite server`
# (a grpc-python server with gRPC's default policy) answers a GOAWAY "too_many_pings" after a minute or
# two idle, and pymilvus's recovery then fails. Pinging every 5 minutes is what gRPC servers permit by
# default, and still finds a dead connection long before a load balancer's idle timeout would.
GRPC_OPTIONS = {"grpc.keepalive_time_ms": 300_000, "grpc.keepalive_timeout_ms": 20_000}
_ESCAPES = {"_": "__", "-": "_h", ".": "_d"}
_UNESCAPES = {v[1]: k for k, v in _ESCAPES.items()}


class MilvusUnavailableError(ConnectionError):
    """The Milvus server cannot be reached, or answered with an error Tessera cannot act on."""


def collection_name(corpus: str) -> str:
    """`tessera_` plus the corpus name, escaped; a name Milvus cannot hold is refused by name."""
    out = PREFIX + "".join(_ESCAPES.get(ch, ch) for ch in corpus)
    if len(out) > MAX_COLLECTION_NAME:
        raise ValueError(
            f"corpus name {quote(corpus)} is too long for the milvus backend: as a collection name it takes "
            f"{len(out)} characters, and Milvus allows {MAX_COLLECTION_NAME} (each '_', '-' and '.' takes two)"
        )
    return out


def corpus_name(collection: str) -> str | None:
    """The corpus a collection holds, or None for a collection that is not Tessera's."""
    if not collection.startswith(PREFIX):
        return None
    out, chars, i = [], collection[len(PREFIX) :], 0
    while i < len(chars):
        if chars[i] == "_":
            if i + 1 >= len(chars) or chars[i + 1] not in _UNESCAPES:
                return None
            out.append(_UNESCAPES[chars[i + 1]])
            i += 2
        else:
            out.append(chars[i])
            i += 1
    return "".join(out) or None


class MilvusStore:
    """One Milvus server (`uri`, optional `token`), reached through pymilvus's MilvusClient."""

    def __init__(self, uri: str, token: str | None = None, *, timeout_s: float = 30.0) -> None:
        try:
            from pymilvus import MilvusClient
        except ImportError as exc:
            raise CorpusError("the milvus backend needs pymilvus: pip install 'tessera-multimodal[milvus]'") from exc
        self.uri = uri
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        try:
            # dedicated: a connection of its own, not the one pymilvus would share with the process's other clients.
            self.client = MilvusClient(
                uri=uri, token=token or "", timeout=timeout_s, dedicated=True, grpc_options=GRPC_OPTIONS
            )
        except Exception as exc:  # pymilvus raises its own MilvusException, or grpc's errors, on a refused connect
            raise MilvusUnavailableError(f"cannot reach Milvus at {quote(uri)}: {exc}") from exc

    def call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """A pymilvus call; its failures become MilvusUnavailableError naming the call and the server."""
        try:
            return fn(*args, timeout=self.timeout_s, **kwargs)
        except Exception as exc:
            raise MilvusUnavailableError(f"Milvus at {self.uri} failed to {what}: {exc}") from exc

    # ---- the catalog ---------------------------------------------------------------------
    def names(self) -> list[str]:
        collections = self.call("list collections", self.client.list_collections)
        return sorted(n for c in collections if (n := corpus_name(c)) is not None)

    def has(self, name: str) -> bool:
        return self.call("check a collection", self.client.has_collection, collection_name(name))

    def manifest(self, name: str) -> dict[str, Any]:
        """The corpus's manifest and list fields, as its collection's properties hold them."""
        info = self.call("describe a collection", self.client.describe_collection, collection_name(name))
        properties = info.get("properties") or {}
        if MANIFEST_PROPERTY not in properties:
            raise CorpusError(
                f"Milvus collection {collection_name(name)!r} has no {MANIFEST_PROPERTY!r} property, so it is "
                "not a Tessera corpus; drop or rename it"
            )
        manifest = json.loads(properties[MANIFEST_PROPERTY])
        manifest["list_fields"] = json.loads(properties.get(LIST_FIELDS_PROPERTY) or "[]")
        return manifest

    def list_fields(self, name: str) -> set[str]:
        info = self.call("describe a collection", self.client.describe_collection, collection_name(name))
        return set(json.loads((info.get("properties") or {}).get(LIST_FIELDS_PROPERTY) or "[]"))

    def add_list_fields(self, name: str, fields: set[str]) -> set[str]:
        """Record metadata keys that hold lists (a union with what other replicas recorded); returns all."""
        with self._lock:
            known = self.list_fields(name)
            if fields <= known:
                return known
            known |= fields
            self.call(
                "record list fields",
                self.client.alter_collection_properties,
                collection_name(name),
                properties={LIST_FIELDS_PROPERTY: json.dumps(sorted(known))},
            )
            return known

    def create(self, manifest: dict[str, Any], index_type: str, index_params: dict[str, Any]) -> None:
        from pymilvus import DataType

        name = manifest["name"]
        collection = collection_name(name)
        client = self.client
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        # max_length counts bytes in Milvus: an id is at most MAX_ID_BYTES of UTF-8 (items.check_id).
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_BYTES)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=int(manifest["dim"]))
        schema.add_field("metadata", DataType.JSON)
        schema.add_field("text", DataType.VARCHAR, max_length=MAX_VARCHAR_BYTES, nullable=True)
        schema.add_field("uri", DataType.VARCHAR, max_length=MAX_VARCHAR_BYTES, nullable=True)
        index = client.prepare_index_params()
        index.add_index("vector", index_type=index_type, metric_type="IP", params=index_params)
        manifest = {**manifest, "uid": manifest.get("uid") or uuid.uuid4().hex}
        self.call(
            "create a collection",
            client.create_collection,
            collection,
            schema=schema,
            index_params=index,
            # Strong: a write acknowledged through one replica is read through every other at once.
            consistency_level="Strong",
            properties={MANIFEST_PROPERTY: json.dumps(manifest), LIST_FIELDS_PROPERTY: "[]"},
        )
        log.info({"event": "milvus_corpus_created", "corpus": name, "collection": collection, "uri": self.uri})

    def drop(self, name: str) -> None:
        self.call("drop a collection", self.client.drop_collection, collection_name(name))

    def close(self) -> None:
        try:
            self.client.close()
        except Exception as exc:  # closing is best effort: the process may be going away anyway
            log.debug("closing the Milvus client failed: %s", exc)
