from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Modality(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODALITY_UNSPECIFIED: _ClassVar[Modality]
    MODALITY_TEXT: _ClassVar[Modality]
    MODALITY_IMAGE: _ClassVar[Modality]
    MODALITY_AUDIO: _ClassVar[Modality]
    MODALITY_VIDEO: _ClassVar[Modality]
    MODALITY_VECTOR: _ClassVar[Modality]

class Fusion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FUSION_UNSPECIFIED: _ClassVar[Fusion]
    FUSION_CALIBRATED: _ClassVar[Fusion]
    FUSION_PAIR: _ClassVar[Fusion]
    FUSION_RRF: _ClassVar[Fusion]
    FUSION_RAW: _ClassVar[Fusion]
MODALITY_UNSPECIFIED: Modality
MODALITY_TEXT: Modality
MODALITY_IMAGE: Modality
MODALITY_AUDIO: Modality
MODALITY_VIDEO: Modality
MODALITY_VECTOR: Modality
FUSION_UNSPECIFIED: Fusion
FUSION_CALIBRATED: Fusion
FUSION_PAIR: Fusion
FUSION_RRF: Fusion
FUSION_RAW: Fusion

class Vector(_message.Message):
    __slots__ = ("packed", "values")
    PACKED_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    packed: bytes
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, packed: _Optional[bytes] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class Content(_message.Message):
    __slots__ = ("modality", "text", "data", "uri", "vector")
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    modality: Modality
    text: str
    data: bytes
    uri: str
    vector: Vector
    def __init__(self, modality: _Optional[_Union[Modality, str]] = ..., text: _Optional[str] = ..., data: _Optional[bytes] = ..., uri: _Optional[str] = ..., vector: _Optional[_Union[Vector, _Mapping]] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("space", "items", "request_id")
    SPACE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    space: str
    items: _containers.RepeatedCompositeFieldContainer[Content]
    request_id: str
    def __init__(self, space: _Optional[str] = ..., items: _Optional[_Iterable[_Union[Content, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("space_id", "dim", "vectors", "request_id")
    SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    space_id: str
    dim: int
    vectors: _containers.RepeatedCompositeFieldContainer[Vector]
    request_id: str
    def __init__(self, space_id: _Optional[str] = ..., dim: _Optional[int] = ..., vectors: _Optional[_Iterable[_Union[Vector, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ListSpacesRequest(_message.Message):
    __slots__ = ("include_unavailable",)
    INCLUDE_UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    include_unavailable: bool
    def __init__(self, include_unavailable: _Optional[bool] = ...) -> None: ...

class SpaceInfo(_message.Message):
    __slots__ = ("name", "id", "dim", "modalities", "similarity", "available", "note")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    MODALITIES_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    name: str
    id: str
    dim: int
    modalities: _containers.RepeatedScalarFieldContainer[Modality]
    similarity: str
    available: bool
    note: str
    def __init__(self, name: _Optional[str] = ..., id: _Optional[str] = ..., dim: _Optional[int] = ..., modalities: _Optional[_Iterable[_Union[Modality, str]]] = ..., similarity: _Optional[str] = ..., available: _Optional[bool] = ..., note: _Optional[str] = ...) -> None: ...

class ListSpacesResponse(_message.Message):
    __slots__ = ("spaces",)
    SPACES_FIELD_NUMBER: _ClassVar[int]
    spaces: _containers.RepeatedCompositeFieldContainer[SpaceInfo]
    def __init__(self, spaces: _Optional[_Iterable[_Union[SpaceInfo, _Mapping]]] = ...) -> None: ...

class IndexConfig(_message.Message):
    __slots__ = ("factory", "nprobe", "ef_search", "disable_gpu", "ef_construction")
    FACTORY_FIELD_NUMBER: _ClassVar[int]
    NPROBE_FIELD_NUMBER: _ClassVar[int]
    EF_SEARCH_FIELD_NUMBER: _ClassVar[int]
    DISABLE_GPU_FIELD_NUMBER: _ClassVar[int]
    EF_CONSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    factory: str
    nprobe: int
    ef_search: int
    disable_gpu: bool
    ef_construction: int
    def __init__(self, factory: _Optional[str] = ..., nprobe: _Optional[int] = ..., ef_search: _Optional[int] = ..., disable_gpu: _Optional[bool] = ..., ef_construction: _Optional[int] = ...) -> None: ...

class CreateCorpusRequest(_message.Message):
    __slots__ = ("name", "space", "modality", "index", "backend")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    name: str
    space: str
    modality: Modality
    index: IndexConfig
    backend: str
    def __init__(self, name: _Optional[str] = ..., space: _Optional[str] = ..., modality: _Optional[_Union[Modality, str]] = ..., index: _Optional[_Union[IndexConfig, _Mapping]] = ..., backend: _Optional[str] = ...) -> None: ...

class CorpusInfo(_message.Message):
    __slots__ = ("name", "space_id", "modality", "dim", "count", "index_factory", "index_searching", "bytes_on_disk", "on_gpu", "tombstones", "similarity", "index_state", "index_note", "backend", "damaged", "damage")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    INDEX_FACTORY_FIELD_NUMBER: _ClassVar[int]
    INDEX_SEARCHING_FIELD_NUMBER: _ClassVar[int]
    BYTES_ON_DISK_FIELD_NUMBER: _ClassVar[int]
    ON_GPU_FIELD_NUMBER: _ClassVar[int]
    TOMBSTONES_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    INDEX_STATE_FIELD_NUMBER: _ClassVar[int]
    INDEX_NOTE_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    DAMAGED_FIELD_NUMBER: _ClassVar[int]
    DAMAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    space_id: str
    modality: Modality
    dim: int
    count: int
    index_factory: str
    index_searching: str
    bytes_on_disk: int
    on_gpu: bool
    tombstones: int
    similarity: str
    index_state: str
    index_note: str
    backend: str
    damaged: bool
    damage: str
    def __init__(self, name: _Optional[str] = ..., space_id: _Optional[str] = ..., modality: _Optional[_Union[Modality, str]] = ..., dim: _Optional[int] = ..., count: _Optional[int] = ..., index_factory: _Optional[str] = ..., index_searching: _Optional[str] = ..., bytes_on_disk: _Optional[int] = ..., on_gpu: _Optional[bool] = ..., tombstones: _Optional[int] = ..., similarity: _Optional[str] = ..., index_state: _Optional[str] = ..., index_note: _Optional[str] = ..., backend: _Optional[str] = ..., damaged: _Optional[bool] = ..., damage: _Optional[str] = ...) -> None: ...

class CreateCorpusResponse(_message.Message):
    __slots__ = ("corpus",)
    CORPUS_FIELD_NUMBER: _ClassVar[int]
    corpus: CorpusInfo
    def __init__(self, corpus: _Optional[_Union[CorpusInfo, _Mapping]] = ...) -> None: ...

class ListCorporaRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCorporaResponse(_message.Message):
    __slots__ = ("corpora",)
    CORPORA_FIELD_NUMBER: _ClassVar[int]
    corpora: _containers.RepeatedCompositeFieldContainer[CorpusInfo]
    def __init__(self, corpora: _Optional[_Iterable[_Union[CorpusInfo, _Mapping]]] = ...) -> None: ...

class DescribeCorpusRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DescribeCorpusResponse(_message.Message):
    __slots__ = ("corpus",)
    CORPUS_FIELD_NUMBER: _ClassVar[int]
    corpus: CorpusInfo
    def __init__(self, corpus: _Optional[_Union[CorpusInfo, _Mapping]] = ...) -> None: ...

class DropCorpusRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DropCorpusResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Item(_message.Message):
    __slots__ = ("id", "content", "vector", "metadata", "uri")
    ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    id: str
    content: Content
    vector: Vector
    metadata: _struct_pb2.Struct
    uri: str
    def __init__(self, id: _Optional[str] = ..., content: _Optional[_Union[Content, _Mapping]] = ..., vector: _Optional[_Union[Vector, _Mapping]] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., uri: _Optional[str] = ...) -> None: ...

class UpsertRequest(_message.Message):
    __slots__ = ("corpus", "items")
    CORPUS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    corpus: str
    items: _containers.RepeatedCompositeFieldContainer[Item]
    def __init__(self, corpus: _Optional[str] = ..., items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("upserted", "batches")
    UPSERTED_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    upserted: int
    batches: int
    def __init__(self, upserted: _Optional[int] = ..., batches: _Optional[int] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("corpus", "ids", "include_vectors")
    CORPUS_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_VECTORS_FIELD_NUMBER: _ClassVar[int]
    corpus: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    include_vectors: bool
    def __init__(self, corpus: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ..., include_vectors: _Optional[bool] = ...) -> None: ...

class StoredItem(_message.Message):
    __slots__ = ("id", "metadata", "text", "uri", "vector")
    ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    id: str
    metadata: _struct_pb2.Struct
    text: str
    uri: str
    vector: Vector
    def __init__(self, id: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., text: _Optional[str] = ..., uri: _Optional[str] = ..., vector: _Optional[_Union[Vector, _Mapping]] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[StoredItem]
    def __init__(self, items: _Optional[_Iterable[_Union[StoredItem, _Mapping]]] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("corpus", "ids", "filter")
    CORPUS_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    corpus: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    filter: _struct_pb2.Struct
    def __init__(self, corpus: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ..., filter: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class QueryPart(_message.Message):
    __slots__ = ("content", "weight")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    content: Content
    weight: float
    def __init__(self, content: _Optional[_Union[Content, _Mapping]] = ..., weight: _Optional[float] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("space", "parts", "top_k", "filter", "corpora", "target_modalities", "fusion", "nprobe", "ef_search", "include_vectors")
    SPACE_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    CORPORA_FIELD_NUMBER: _ClassVar[int]
    TARGET_MODALITIES_FIELD_NUMBER: _ClassVar[int]
    FUSION_FIELD_NUMBER: _ClassVar[int]
    NPROBE_FIELD_NUMBER: _ClassVar[int]
    EF_SEARCH_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_VECTORS_FIELD_NUMBER: _ClassVar[int]
    space: str
    parts: _containers.RepeatedCompositeFieldContainer[QueryPart]
    top_k: int
    filter: _struct_pb2.Struct
    corpora: _containers.RepeatedScalarFieldContainer[str]
    target_modalities: _containers.RepeatedScalarFieldContainer[Modality]
    fusion: Fusion
    nprobe: int
    ef_search: int
    include_vectors: bool
    def __init__(self, space: _Optional[str] = ..., parts: _Optional[_Iterable[_Union[QueryPart, _Mapping]]] = ..., top_k: _Optional[int] = ..., filter: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., corpora: _Optional[_Iterable[str]] = ..., target_modalities: _Optional[_Iterable[_Union[Modality, str]]] = ..., fusion: _Optional[_Union[Fusion, str]] = ..., nprobe: _Optional[int] = ..., ef_search: _Optional[int] = ..., include_vectors: _Optional[bool] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("id", "corpus", "modality", "score", "raw_score", "calibrated_score", "metadata", "text", "uri", "vector")
    ID_FIELD_NUMBER: _ClassVar[int]
    CORPUS_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RAW_SCORE_FIELD_NUMBER: _ClassVar[int]
    CALIBRATED_SCORE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    id: str
    corpus: str
    modality: Modality
    score: float
    raw_score: float
    calibrated_score: float
    metadata: _struct_pb2.Struct
    text: str
    uri: str
    vector: Vector
    def __init__(self, id: _Optional[str] = ..., corpus: _Optional[str] = ..., modality: _Optional[_Union[Modality, str]] = ..., score: _Optional[float] = ..., raw_score: _Optional[float] = ..., calibrated_score: _Optional[float] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., text: _Optional[str] = ..., uri: _Optional[str] = ..., vector: _Optional[_Union[Vector, _Mapping]] = ...) -> None: ...

class SkippedCorpus(_message.Message):
    __slots__ = ("corpus", "reason")
    CORPUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    corpus: str
    reason: str
    def __init__(self, corpus: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "searched", "skipped")
    HITS_FIELD_NUMBER: _ClassVar[int]
    SEARCHED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    searched: _containers.RepeatedScalarFieldContainer[str]
    skipped: _containers.RepeatedCompositeFieldContainer[SkippedCorpus]
    def __init__(self, hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ..., searched: _Optional[_Iterable[str]] = ..., skipped: _Optional[_Iterable[_Union[SkippedCorpus, _Mapping]]] = ...) -> None: ...

class BatchSearchRequest(_message.Message):
    __slots__ = ("queries",)
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    queries: _containers.RepeatedCompositeFieldContainer[SearchRequest]
    def __init__(self, queries: _Optional[_Iterable[_Union[SearchRequest, _Mapping]]] = ...) -> None: ...

class BatchSearchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SearchResponse]
    def __init__(self, results: _Optional[_Iterable[_Union[SearchResponse, _Mapping]]] = ...) -> None: ...
