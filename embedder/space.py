"""A space: named, versioned encoders, one per modality, writing into one L2-normalised space."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .encoders import Encoder
from .errors import DecodeError
from .modality import Modality
from .similarity import Similarity


def length_groups(
    lengths: Sequence[int], budget: int | None, cap: int, slack: int | None = None
) -> Iterator[list[int]]:
    """Positions, longest first, cut into model batches of at most `cap` items whose padded size
    (count x the longest length in it) stays within `budget` (None: `cap` alone decides), and
    whose items are at most `slack` shorter than its longest (None: any).

    A batch costs its count times its longest item: long items go in small batches and short
    ones in large, and a batch of 128 x 256 tokens would also spill the CPU's caches. Padding an
    item by more than one call's fixed cost would cost more than the call it saves: `slack`.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    group: list[int] = []
    for i in order:
        # Sorted longest first, so group[0] is the longest of the group i would join.
        if group:
            longest = max(1, lengths[group[0]])
            full = len(group) == cap or (budget is not None and (len(group) + 1) * longest > budget)
            if full or (slack is not None and longest - lengths[i] > slack):
                yield group
                group = []
        group.append(i)
    if group:
        yield group


@dataclass
class Space:
    name: str
    version: str
    dim: int
    encoders: dict[Modality, Encoder]
    similarity: Similarity = Similarity.COSINE
    loss: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.similarity = Similarity.parse(self.similarity)
        for modality, encoder in self.encoders.items():
            if encoder.dim != self.dim:
                raise ValueError(f"{modality} encoder writes {encoder.dim}-d vectors into a {self.dim}-d space")

    @property
    def id(self) -> str:
        """What every stored vector carries: vectors of different ids are never compared."""
        return f"{self.name}@{self.version}"

    @property
    def modalities(self) -> list[Modality]:
        return list(self.encoders)

    def encoder(self, modality: Modality | str) -> Encoder:
        modality = Modality.parse(modality)
        if modality not in self.encoders:
            have = ", ".join(m.value for m in self.encoders)
            raise ValueError(f"space {self.id} has no {modality} encoder; it embeds: {have}")
        return self.encoders[modality]

    def to(self, device: torch.device | str) -> Space:
        for encoder in self.encoders.values():
            encoder.to(torch.device(device))  # a CUDA device puts every encoder back on torch
        return self

    def use_onnx(self) -> Space:
        """Run every encoder that can through ONNX Runtime on the CPU (`load_space` does this by default there).

        Graphs are built from the weights as they are now; exported, or read from the cache, on first use.
        """
        for encoder in self.encoders.values():
            encoder.use_onnx()
        return self

    @property
    def inference(self) -> dict[str, str]:
        """Per modality, what runs the model forward: "onnx", "torch" or "none"."""
        return {m.value: e.inference for m, e in self.encoders.items()}

    def prepare(self, modality: Modality | str, content: Any, item: int | str = 0) -> Any:
        """Decode and preprocess one item; the DecodeError names `item`."""
        try:
            return self.encoder(modality).prepare(content)
        except DecodeError as exc:
            raise exc.for_item(item) from None

    def embed_prepared(self, modality: Modality | str, prepared: list[Any]) -> np.ndarray:
        """One model batch of already prepared items -> (n, dim) float32."""
        with torch.inference_mode():
            return self.encoder(modality).encode(prepared).float().cpu().numpy()

    def embed_merged(
        self,
        modality: Modality | str,
        prepared: list[Any],
        padded_budget: int | None = None,
        max_batch: int | None = None,
    ) -> np.ndarray:
        """Many prepared items (a micro-batch merged from many callers, or a part of a batch job), in input order.

        Items differ in length, and one model call pads every item to the longest: a
        500-character sentence would make fifteen 40-character queries cost as much as itself
        each. Length-sorted encoders' items are sorted and cut into model batches whose padded
        size (count x longest length) stays within `padded_budget` (default: the encoder's), of
        at most `max_batch` items; other encoders' items go in one call.
        """
        encoder = self.encoder(modality)
        budget = padded_budget or encoder.padded_budget
        if not encoder.sort_by_length or len(prepared) < 2:
            return self.embed_prepared(modality, prepared)
        out = np.empty((len(prepared), self.dim), dtype=np.float32)
        lengths = encoder.lengths(prepared)
        for group in length_groups(lengths, budget, max_batch or len(prepared), encoder.padding_slack):
            out[group] = self.embed_prepared(modality, [prepared[j] for j in group])
        return out

    def embed(
        self,
        modality: Modality | str,
        inputs: Sequence[Any],
        *,
        batch_size: int | None = None,
        ids: Sequence[str] | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """Embed raw inputs of one modality: an (n, dim) float32 array of unit-norm rows.

        Bad items raise DecodeError naming the item (its id when `ids` is given,
        else its position); nothing is dropped silently.
        """
        encoder = self.encoder(modality)
        batch_size = batch_size or encoder.default_batch_size
        if ids is not None and len(ids) != len(inputs):
            raise ValueError(f"{len(ids)} ids for {len(inputs)} inputs")
        labels: Sequence[int | str] = ids if ids is not None else range(len(inputs))
        out = np.empty((len(inputs), self.dim), dtype=np.float32)
        bar = tqdm(total=len(inputs), unit="item", desc=f"embed {encoder.modality}", disable=not progress)
        for rows, prepared in self._batches(encoder, inputs, labels, batch_size):
            out[rows] = self.embed_prepared(encoder.modality, prepared)
            bar.update(len(rows))
        bar.close()
        return out

    def _batches(
        self, encoder: Encoder, inputs: Sequence[Any], labels: Sequence[int | str], batch_size: int
    ) -> Iterator[tuple[np.ndarray, list[Any]]]:
        modality = encoder.modality
        if encoder.sort_by_length:
            # Cheap to prepare everything up front (text); sorting by length keeps padding low.
            prepared = [self.prepare(modality, x, labels[i]) for i, x in enumerate(inputs)]
            lengths = encoder.lengths(prepared)
            for group in length_groups(lengths, encoder.padded_budget, batch_size, encoder.padding_slack):
                yield np.asarray(group), [prepared[i] for i in group]
        else:
            for start in range(0, len(inputs), batch_size):
                rows = np.arange(start, min(start + batch_size, len(inputs)))
                yield rows, [self.prepare(modality, inputs[i], labels[i]) for i in rows]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "dim": self.dim,
            "similarity": self.similarity,
            "loss": self.loss,
            "modalities": [m.value for m in self.encoders],
            "encoders": {m.value: e.spec() for m, e in self.encoders.items()},
            **({"metadata": self.metadata} if self.metadata else {}),
        }


def encoders_in_build_order(specs: Mapping[str, Any]) -> list[Modality]:
    """Video borrows the image and audio encoders, so it is built last."""
    modalities = [Modality.parse(m) for m in specs]
    return sorted(modalities, key=lambda m: m is Modality.VIDEO)
