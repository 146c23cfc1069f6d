"""Alignment losses against references: the PyPI `symile` package, SVD volumes, and hand-computed subsets."""

from __future__ import annotations

import math

import pytest
import symile  # the reference implementation (Saporta et al.), a dev dependency
import torch
import torch.nn.functional as F

import tessera.embedder.encoders  # noqa: F401  (installs the torchvision shim before transformers)
from tessera.embedder.losses import (
    LogitScale,
    alignment_loss,
    anchored_loss,
    clip_loss,
    gram_loss,
    gram_volume,
    gram_volume_matrix,
    info_nce,
    mip,
    symile_loss,
    uniformity_alignment,
)


def unit_rows(k: int, n: int, d: int, seed: int, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [F.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=1) for _ in range(k)]


@pytest.mark.parametrize("k", [3, 4])
def test_symile_n_squared_equals_the_symile_package(k: int) -> None:
    embeddings = unit_rows(k, n=12 if k == 3 else 6, d=16, seed=k)
    scale = torch.tensor(7.5)
    expected = symile.Symile(negative_sampling="n_squared")(embeddings, scale)
    assert float(symile_loss(embeddings, scale, "n_squared")) == pytest.approx(float(expected), abs=1e-5)


@pytest.mark.parametrize("k", [3, 5])
def test_symile_n_equals_the_symile_package_under_the_same_permutation(k: int) -> None:
    embeddings = unit_rows(k, n=32, d=16, seed=10 + k)
    scale = torch.tensor(12.0)
    torch.manual_seed(1234)
    expected = symile.Symile(negative_sampling="n")(embeddings, scale)
    torch.manual_seed(1234)
    ours = symile_loss(embeddings, scale, "n")
    assert float(ours) == pytest.approx(float(expected), abs=1e-5)
    # A different permutation gives a different loss: the comparison above is not vacuous.
    torch.manual_seed(99)
    assert float(symile_loss(embeddings, scale, "n")) != pytest.approx(float(expected), abs=1e-5)


def test_mip_of_two_vectors_is_their_dot_product() -> None:
    a, b = unit_rows(2, n=5, d=8, seed=3)
    assert torch.allclose(mip([a, b]), (a * b).sum(1))


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_gram_volume_equals_the_product_of_singular_values(k: int) -> None:
    vectors = unit_rows(k, n=20, d=16, seed=20 + k)
    volume = gram_volume(vectors)
    singular = torch.stack([torch.linalg.svdvals(torch.stack([v[i] for v in vectors])).prod() for i in range(20)])
    assert torch.allclose(volume, singular, atol=1e-5)
    # The (i, j) matrix GRAM's loss uses has these volumes on its diagonal.
    matrix = gram_volume_matrix(vectors[0], vectors[1:], eps=0.0)
    assert torch.allclose(matrix.diagonal(), volume, atol=1e-5)


def test_gram_volume_of_two_unit_vectors_is_sqrt_one_minus_cos_squared() -> None:
    a, b = unit_rows(2, n=50, d=32, seed=7)
    cos = (a * b).sum(1)
    assert torch.allclose(gram_volume([a, b]), torch.sqrt(1 - cos**2), atol=1e-5)
    assert float(gram_volume([a, a]).max()) < 1e-3  # collinear: no volume


def test_clip_loss_averages_symmetric_info_nce_over_all_pairs() -> None:
    e = unit_rows(3, n=10, d=8, seed=1)
    scale = torch.tensor(10.0)
    expected = (info_nce(e[0], e[1], scale) + info_nce(e[0], e[2], scale) + info_nce(e[1], e[2], scale)) / 3
    assert torch.allclose(clip_loss(e, scale), expected)
    logits = scale * e[0] @ e[1].T
    targets = torch.arange(10)
    by_hand = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
    assert torch.allclose(info_nce(e[0], e[1], scale), by_hand)


def test_anchored_loss_contrasts_only_with_the_anchor() -> None:
    e = unit_rows(3, n=10, d=8, seed=2)
    scale = torch.tensor(10.0)
    expected = (info_nce(e[1], e[0], scale) + info_nce(e[1], e[2], scale)) / 2
    assert torch.allclose(anchored_loss(e, scale, anchor=1), expected)


def test_pairwise_losses_skip_absent_samples_and_pairs() -> None:
    e = unit_rows(3, n=8, d=8, seed=4)
    scale = torch.tensor(5.0)
    has_b = torch.tensor([1, 1, 1, 0, 1, 0, 1, 1], dtype=torch.bool)
    none_c = torch.zeros(8, dtype=torch.bool)
    garbage = [e[0], e[1].clone(), torch.full_like(e[2], float("nan"))]
    garbage[1][~has_b] = 123.0  # absent rows may hold anything
    loss = clip_loss(garbage, scale, masks=[None, has_b, none_c])
    assert torch.allclose(loss, info_nce(e[0][has_b], e[1][has_b], scale))


def test_gram_and_symile_score_each_presence_group_over_its_modalities() -> None:
    e = unit_rows(3, n=12, d=8, seed=5, dtype=torch.float64)
    scale = torch.tensor(4.0, dtype=torch.float64)
    has_c = torch.tensor([True] * 7 + [False] * 5)
    full, partial = torch.arange(7), torch.arange(7, 12)
    expected_gram = (
        7 * gram_loss([x[full] for x in e], scale) + 5 * gram_loss([e[0][partial], e[1][partial]], scale)
    ) / 12
    assert torch.allclose(gram_loss(e, scale, masks=[None, None, has_c]), expected_gram)
    expected_symile = (
        7 * symile_loss([x[full] for x in e], scale, "n_squared")
        + 5 * info_nce(e[0][partial], e[1][partial], scale)  # Symile over two modalities is InfoNCE
    ) / 12
    assert torch.allclose(symile_loss(e, scale, "n_squared", masks=[None, None, has_c]), expected_symile)


def test_gram_loss_prefers_aligned_tuples() -> None:
    base = unit_rows(1, n=16, d=8, seed=6)[0]
    noise = unit_rows(2, n=16, d=8, seed=8)
    aligned = [base, F.normalize(base + 0.05 * noise[0], dim=1), F.normalize(base + 0.05 * noise[1], dim=1)]
    random = [base, noise[0], noise[1]]
    scale = torch.tensor(10.0)
    assert float(gram_loss(aligned, scale)) < float(gram_loss(random, scale))


def test_losses_backpropagate_into_inputs_and_temperature() -> None:
    scale = LogitScale(temperature=0.07)
    assert scale.temperature == pytest.approx(0.07)
    raw = [torch.randn(8, 6, requires_grad=True) for _ in range(3)]
    for name in ("clip", "anchored", "gram", "symile"):
        scale.zero_grad()
        for r in raw:
            r.grad = None
        embeddings = [F.normalize(r, dim=1) for r in raw]
        loss = alignment_loss(name, embeddings, scale(), masks=[None, torch.rand(8) > 0.3, None])
        loss.backward()
        assert math.isfinite(float(loss.detach()))
        assert all(r.grad is not None and torch.isfinite(r.grad).all() for r in raw), name
        assert scale.log_scale.grad is not None and float(scale.log_scale.grad.abs()) > 0, name


def test_logit_scale_is_capped_like_clip() -> None:
    scale = LogitScale(temperature=0.001)
    assert float(scale()) == pytest.approx(100.0)


def test_uniformity_alignment_regulariser_rewards_spread_and_paired_closeness() -> None:
    spread = unit_rows(2, n=64, d=16, seed=9)
    collapsed = [F.normalize(torch.ones(64, 16) + 0.01 * s, dim=1) for s in spread]
    # Uniformity alone (alignment weight 0): collapsed points score worse (higher).
    assert float(uniformity_alignment(collapsed, alignment_weight=0)) > float(
        uniformity_alignment(spread, alignment_weight=0)
    )
    paired = [spread[0], spread[0].clone()]
    assert float(uniformity_alignment(paired, uniformity_weight=0)) == pytest.approx(0.0, abs=1e-6)
    assert float(uniformity_alignment(spread, uniformity_weight=0)) > 1.0


def test_bad_arguments_are_named() -> None:
    e = unit_rows(3, n=4, d=4, seed=0)
    with pytest.raises(ValueError, match="negative_sampling"):
        symile_loss(e, torch.tensor(1.0), "bogus")
    with pytest.raises(ValueError, match="unknown loss"):
        alignment_loss("triplet", e, torch.tensor(1.0))
    with pytest.raises(ValueError, match="anchor"):
        anchored_loss(e, torch.tensor(1.0), anchor=5)
    with pytest.raises(ValueError, match="same n"):
        clip_loss([e[0], e[1][:3]], torch.tensor(1.0))


@pytest.mark.parametrize("name", ["symile", "gram"])
def test_a_combined_objective_adds_weighted_pairwise_infonce(name: str) -> None:
    """Symile or GRAM plus `pairwise_weight` times CLIP all-pairs, on the same batch and scale."""
    torch.manual_seed(0)
    embeddings = [F.normalize(torch.randn(16, 8), dim=1) for _ in range(3)]
    scale = torch.tensor(10.0)
    torch.manual_seed(1)  # Symile's O(n) negatives draw permutations: the same draws for both sides
    combined = alignment_loss(name, embeddings, scale, pairwise_weight=0.5)
    torch.manual_seed(1)
    alone = alignment_loss(name, embeddings, scale)
    assert torch.allclose(combined, alone + 0.5 * clip_loss(embeddings, scale))
    assert float(combined - alone) > 0


def test_a_pairwise_loss_takes_no_pairwise_weight() -> None:
    e = [F.normalize(torch.randn(4, 8), dim=1) for _ in range(2)]
    with pytest.raises(ValueError, match="gram or symile"):
        alignment_loss("clip", e, torch.tensor(1.0), pairwise_weight=1.0)
