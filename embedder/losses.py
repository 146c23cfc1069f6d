"""Alignment losses over k modalities: CLIP all-pairs, anchored InfoNCE, GRAM and Symile.

Every loss takes `embeddings`, a list of k (n, d) L2-normalised tensors whose
rows are aligned (row i of every tensor comes from sample i), a `logit_scale`
(1 / temperature, a tensor so that it can be learned), and optional `masks`: one
(n,) bool tensor per modality, True where the sample has that modality. Rows of
absent modalities are ignored whatever they hold.

- Pairwise losses (CLIP, anchored) use, for each pair of modalities, the samples
  that have both.
- GRAM and Symile score whole tuples, so samples are grouped by which modalities
  they have, and each group is scored over the modalities it has (two or more).
  Groups are weighted by their size.

References: CLIP (Radford et al., 2021); ImageBind (Girdhar et al., 2023);
GRAM (Cicchetti et al., 2024, "Gramian Multimodal Representation Learning and
Alignment"); Symile (Saporta et al., 2024, "Contrastive Learning Beyond Pairwise
Interactions"); "It's Not a Modality Gap" (Fahim et al., 2024) for the
uniformity and alignment regulariser.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import combinations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Masks = Sequence[Tensor | None] | None


class LogitScale(nn.Module):
    """A learnable 1/temperature, stored as its log and capped as in CLIP (at 100)."""

    def __init__(self, temperature: float = 0.07, learnable: bool = True, max_scale: float = 100.0) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)), requires_grad=learnable)
        self.max_log = math.log(max_scale)

    def forward(self) -> Tensor:
        return self.log_scale.clamp(max=self.max_log).exp()

    @property
    def temperature(self) -> float:
        return float(1.0 / self().detach())


def _presence(embeddings: Sequence[Tensor], masks: Masks) -> Tensor:
    """(k, n) bool: which modality each sample has."""
    if not embeddings:
        raise ValueError("no embeddings: pass one (n, d) tensor per modality")
    n = embeddings[0].shape[0]
    for e in embeddings:
        if e.ndim != 2 or e.shape[0] != n:
            raise ValueError(
                f"embeddings must all be (n, d) with the same n; got {[tuple(x.shape) for x in embeddings]}"
            )
    if masks is None:
        return torch.ones(len(embeddings), n, dtype=torch.bool, device=embeddings[0].device)
    if len(masks) != len(embeddings):
        raise ValueError(f"{len(masks)} masks for {len(embeddings)} modalities")
    rows = []
    for m in masks:
        if m is None:
            rows.append(torch.ones(n, dtype=torch.bool, device=embeddings[0].device))
        else:
            if m.shape != (n,):
                raise ValueError(f"a mask must have shape ({n},), not {tuple(m.shape)}")
            rows.append(m.to(device=embeddings[0].device, dtype=torch.bool))
    return torch.stack(rows)


def _zero(embeddings: Sequence[Tensor]) -> Tensor:
    # A zero that still carries the graph, so backward() works when nothing could be scored.
    return sum(e.sum() for e in embeddings) * 0.0  # type: ignore[return-value]


def info_nce(x: Tensor, y: Tensor, logit_scale: Tensor) -> Tensor:
    """Symmetric InfoNCE between row-aligned x and y (CLIP's loss)."""
    logits = logit_scale * x @ y.T
    targets = torch.arange(x.shape[0], device=x.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def _pairwise(embeddings: Sequence[Tensor], logit_scale: Tensor, pairs: list[tuple[int, int]], masks: Masks) -> Tensor:
    present = _presence(embeddings, masks)
    losses = []
    for a, b in pairs:
        both = present[a] & present[b]
        if int(both.sum()) >= 2:  # one sample has no negatives
            losses.append(info_nce(embeddings[a][both], embeddings[b][both], logit_scale))
    return torch.stack(losses).mean() if losses else _zero(embeddings)


def clip_loss(embeddings: Sequence[Tensor], logit_scale: Tensor, masks: Masks = None) -> Tensor:
    """CLIP / InfoNCE over all pairs of modalities, symmetric, averaged over the pairs."""
    return _pairwise(embeddings, logit_scale, list(combinations(range(len(embeddings)), 2)), masks)


def anchored_loss(embeddings: Sequence[Tensor], logit_scale: Tensor, anchor: int = 0, masks: Masks = None) -> Tensor:
    """InfoNCE of every modality against one anchor modality only (ImageBind, LanguageBind)."""
    _check_anchor(anchor, len(embeddings))
    pairs = [(anchor, m) for m in range(len(embeddings)) if m != anchor]
    return _pairwise(embeddings, logit_scale, pairs, masks)


def _check_anchor(anchor: int, k: int) -> None:
    if not 0 <= anchor < k:
        raise ValueError(f"anchor {anchor} is not one of the {k} modalities")


def _groups(present: Tensor, minimum: int = 2) -> list[tuple[list[int], Tensor]]:
    """(modalities present, row indices) for each presence pattern with `minimum` or more modalities."""
    patterns, inverse = torch.unique(present.T, dim=0, return_inverse=True)
    groups = []
    for p, pattern in enumerate(patterns):
        modalities = [m for m in range(present.shape[0]) if bool(pattern[m])]
        rows = torch.nonzero(inverse == p).flatten()
        if len(modalities) >= minimum and len(rows) >= 2:
            groups.append((modalities, rows))
    return groups


def _grouped(
    embeddings: Sequence[Tensor],
    masks: Masks,
    score: Callable[[list[Tensor], list[int]], Tensor],
) -> Tensor:
    present = _presence(embeddings, masks)
    if bool(present.all()):
        return score(list(embeddings), list(range(len(embeddings))))
    total, weight = None, 0
    for modalities, rows in _groups(present):
        loss = score([embeddings[m][rows] for m in modalities], modalities) * len(rows)
        total = loss if total is None else total + loss
        weight += len(rows)
    return total / weight if total is not None else _zero(embeddings)


# --- GRAM ---------------------------------------------------------------------------------------


def gram_volume(vectors: Sequence[Tensor], eps: float = 0.0) -> Tensor:
    """Volume of the parallelotope spanned by k row-aligned vectors: sqrt(det(G)) per row, shape (n,).

    G is the k x k Gram matrix of the k vectors of a row. `eps` floors det(G) before the square
    root so that gradients stay finite when the vectors are (nearly) collinear.
    """
    stacked = torch.stack(list(vectors), dim=1)  # (n, k, d)
    gram = stacked @ stacked.transpose(1, 2)
    return torch.linalg.det(gram).clamp_min(eps).sqrt()


def gram_volume_matrix(anchor: Tensor, others: Sequence[Tensor], eps: float = 1e-8) -> Tensor:
    """(n, n): entry (i, j) is the volume of anchor row i with the other modalities' rows j."""
    n, k = anchor.shape[0], len(others) + 1
    gram = anchor.new_empty(n, n, k, k)
    gram[:, :, 0, 0] = (anchor * anchor).sum(-1)[:, None]
    for a, other in enumerate(others, start=1):
        cross = anchor @ other.T
        gram[:, :, 0, a] = cross
        gram[:, :, a, 0] = cross
        for b in range(a, k):
            within = (other * others[b - 1]).sum(-1)[None, :]
            gram[:, :, a, b] = within
            gram[:, :, b, a] = within
    return torch.linalg.det(gram).clamp_min(eps).sqrt()


def gram_loss(
    embeddings: Sequence[Tensor],
    logit_scale: Tensor,
    anchor: int = 0,
    masks: Masks = None,
    label_smoothing: float = 0.0,
) -> Tensor:
    """GRAM: cross-entropy over -volume / temperature, anchor-to-rest and rest-to-anchor, averaged.

    Groups that lack the anchor modality use their first present modality as the anchor.
    """
    _check_anchor(anchor, len(embeddings))

    def score(group: list[Tensor], modalities: list[int]) -> Tensor:
        a = modalities.index(anchor) if anchor in modalities else 0
        logits = -logit_scale * gram_volume_matrix(group[a], [g for i, g in enumerate(group) if i != a])
        targets = torch.arange(logits.shape[0], device=logits.device)
        to_rest = F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
        to_anchor = F.cross_entropy(logits.T, targets, label_smoothing=label_smoothing)
        return (to_rest + to_anchor) / 2

    return _grouped(embeddings, masks, score)


# --- Symile -------------------------------------------------------------------------------------


def mip(vectors: Sequence[Tensor]) -> Tensor:
    """Multilinear inner product of row-aligned vectors: sum_d prod_m v_m[:, d], shape (n,)."""
    product = vectors[0]
    for v in vectors[1:]:
        product = product * v
    return product.sum(-1)


def symile_logits_n(anchor: Tensor, others: Sequence[Tensor]) -> Tensor:
    """(n, n) MIP logits with O(n) negatives: the non-anchor rows are shuffled, positives on the diagonal.

    Draws one `torch.randperm(n)` per non-anchor modality from torch's default generator, in order,
    as the `symile` package does, so both give the same loss under the same seed.
    """
    n = anchor.shape[0]
    shuffled = torch.ones_like(anchor)
    for other in others:
        shuffled = shuffled * other[torch.randperm(n)]
    logits = anchor @ shuffled.T
    positives = mip([anchor, *others])
    eye = torch.eye(n, dtype=torch.bool, device=anchor.device)
    return torch.where(eye, positives[:, None].expand(n, n), logits)


def symile_logits_n_squared(anchor: Tensor, others: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """(n, n^(k-1)) MIP logits against every combination of non-anchor rows, and each row's positive column."""
    n, d = anchor.shape
    combos = others[0]
    for other in others[1:]:
        combos = (combos[:, None, :] * other[None, :, :]).reshape(-1, d)
    # Column of combination (i, i, ..., i) in the row-major order built above.
    stride = sum(n**p for p in range(len(others)))
    positives = torch.arange(n, device=anchor.device) * stride
    return anchor @ combos.T, positives


def symile_loss(
    embeddings: Sequence[Tensor],
    logit_scale: Tensor,
    negative_sampling: str = "n",
    masks: Masks = None,
) -> Tensor:
    """Symile: cross-entropy over MIP logits, averaged over every modality taken as the anchor.

    `negative_sampling` is "n" (O(n): shuffled non-anchor rows) or "n_squared" (every combination).
    """
    if negative_sampling not in ("n", "n_squared"):
        raise ValueError(f"negative_sampling must be 'n' or 'n_squared', not {negative_sampling!r}")

    def score(group: list[Tensor], _modalities: list[int]) -> Tensor:
        targets = torch.arange(group[0].shape[0], device=group[0].device)
        losses = []
        for i, anchor in enumerate(group):
            others = [g for j, g in enumerate(group) if j != i]
            if negative_sampling == "n":
                losses.append(F.cross_entropy(logit_scale * symile_logits_n(anchor, others), targets))
            else:
                logits, positives = symile_logits_n_squared(anchor, others)
                losses.append(F.cross_entropy(logit_scale * logits, positives))
        return torch.stack(losses).mean()

    return _grouped(embeddings, masks, score)


# --- Regulariser --------------------------------------------------------------------------------


def uniformity(x: Tensor, t: float = 2.0) -> Tensor:
    """Wang & Isola's uniformity: log E[exp(-t |x_i - x_j|^2)] over distinct pairs."""
    sq = torch.pdist(x, p=2).pow(2)
    return sq.mul(-t).exp().mean().log()


def alignment(x: Tensor, y: Tensor) -> Tensor:
    """Mean squared distance between paired rows."""
    return (x - y).pow(2).sum(-1).mean()


def uniformity_alignment(
    embeddings: Sequence[Tensor], masks: Masks = None, uniformity_weight: float = 1.0, alignment_weight: float = 1.0
) -> Tensor:
    """The regulariser of "It's Not a Modality Gap": uniformity over all present embeddings of every
    modality together, plus alignment of every present pair."""
    present = _presence(embeddings, masks)
    pooled = torch.cat([e[present[m]] for m, e in enumerate(embeddings)])
    total = uniformity(pooled) * uniformity_weight if len(pooled) >= 2 else _zero(embeddings)
    aligns = []
    for a, b in combinations(range(len(embeddings)), 2):
        both = present[a] & present[b]
        if bool(both.any()):
            aligns.append(alignment(embeddings[a][both], embeddings[b][both]))
    if aligns:
        total = total + alignment_weight * torch.stack(aligns).mean()
    return total


LOSSES = ("clip", "anchored", "gram", "symile")


def alignment_loss(
    name: str,
    embeddings: Sequence[Tensor],
    logit_scale: Tensor,
    masks: Masks = None,
    anchor: int = 0,
    negative_sampling: str = "n",
    pairwise_weight: float = 0.0,
    label_smoothing: float = 0.0,
    pairwise_scale: Tensor | None = None,
) -> Tensor:
    """Dispatch by name, so configs can name the loss.

    `pairwise_weight` > 0 makes a combined objective: GRAM or Symile plus that weight times CLIP
    all-pairs InfoNCE. A volume or a multilinear product alone leaves pairwise cosines free (a
    Symile space scored 0.28 on single-modality zero-shot digits, CLIP 0.88), and those cosines
    are what a one-part query searches by. `pairwise_scale` is that term's own 1/temperature (default:
    `logit_scale`): a product of three unit vectors is far smaller than a cosine, so one shared
    temperature drifts to suit the product and leaves the pairwise term too sharp.
    """
    if name == "clip":
        loss = clip_loss(embeddings, logit_scale, masks)
    elif name == "anchored":
        loss = anchored_loss(embeddings, logit_scale, anchor, masks)
    elif name == "gram":
        loss = gram_loss(embeddings, logit_scale, anchor, masks, label_smoothing)
    elif name == "symile":
        loss = symile_loss(embeddings, logit_scale, negative_sampling, masks)
    else:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    if pairwise_weight:
        if name not in ("gram", "symile"):
            raise ValueError(f"pairwise_weight adds InfoNCE to gram or symile; {name!r} is pairwise already")
        scale = logit_scale if pairwise_scale is None else pairwise_scale
        loss = loss + pairwise_weight * clip_loss(embeddings, scale, masks)
    return loss
