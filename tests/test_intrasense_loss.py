"""IntraSenseLoss and the L_IW pieces: surrogate sign convention, distances, covariance reading, stability."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from usseg_models.losses import IntraSenseLoss
from usseg_models.losses.common import soft_dice_loss
from usseg_models.losses.intrasense_loss import (
    feature_distance,
    instance_whitening_loss,
    offdiagonal_covariance_penalty,
    rank_surrogate,
)
from usseg_models.networks.blocks.cdr import channel_decouple


def _low_rank_plus_noise(seed: int = 0, strength: float = 6.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(2, 16, 1, generator=g), torch.randn(2, 1, 36, generator=g)
    return (strength * a @ b + 0.5 * torch.randn(2, 16, 36, generator=g)).reshape(2, 16, 6, 6)


@pytest.mark.parametrize("kind", ["nuclear", "effective"])
def test_rank_surrogate_orders_spectra(kind):
    g = torch.Generator().manual_seed(1)
    rank1 = (torch.randn(1, 8, 1, generator=g) @ torch.randn(1, 1, 64, generator=g)).reshape(1, 8, 8, 8)
    white = torch.randn(1, 8, 8, 8, generator=g)
    r1, rw = rank_surrogate(rank1, kind).item(), rank_surrogate(white, kind).item()
    assert 0.0 < r1 < rw <= 1.0
    if kind == "nuclear":  # ||X||_* / (sqrt(r) ||X||_F) = 1/sqrt(r) for a rank-1 matrix, r = min(C, HW) = 8
        assert r1 == pytest.approx(1 / math.sqrt(8), rel=1e-3)
    else:  # effective rank 1 of 8
        assert r1 == pytest.approx(1 / 8, rel=1e-2)


@pytest.mark.parametrize("kind", ["nuclear", "effective"])
def test_sign_convention_rewards_higher_rank_after_decoupling(kind):
    f = _low_rank_plus_noise()
    dec = channel_decouple(f, k=1)
    assert (rank_surrogate(dec, kind) > rank_surrogate(f, kind)).all()
    # The alpha term rank(F) - rank(F_dec) is negative here: the loss is lower for the more spread spectrum.
    term = instance_whitening_loss([(f, dec)], alpha=1.0, beta=0.0, rank_kind=kind)
    assert term.item() < 0
    # Identical features: no reward and no distance.
    assert instance_whitening_loss([(f, f)], alpha=1.0, beta=1.0, rank_kind=kind).abs().item() < 1e-6


def test_feature_distances():
    f = torch.randn(2, 4, 3, 3)
    assert feature_distance(f, f).item() == 0.0
    assert feature_distance(f, f + 2.0).item() == pytest.approx(4.0)
    assert feature_distance(f, 3.0 * f, "cosine").item() == pytest.approx(0.0, abs=1e-6)
    assert feature_distance(f, -f, "cosine").item() == pytest.approx(2.0, abs=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        feature_distance(f, f[:, :2])
    with pytest.raises(ValueError, match="distance"):
        feature_distance(f, f, "l1")


def test_offdiagonal_covariance_penalty():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(1, 1, 8, 8, generator=g)
    correlated = torch.cat([base, 2 * base + 1, -base], dim=1)
    assert offdiagonal_covariance_penalty(correlated).item() == pytest.approx(1.0, abs=1e-3)
    # Orthogonal, zero-mean channels (a Hadamard pattern over the 4 positions) have zero covariance.
    had = torch.tensor([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1]], dtype=torch.float32).reshape(1, 3, 2, 2)
    assert offdiagonal_covariance_penalty(had).item() == pytest.approx(0.0, abs=1e-6)
    assert offdiagonal_covariance_penalty(torch.ones(1, 3, 4, 4)).item() == 0.0


def test_components_match_definitions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 16, 16, generator=g)
    target = (torch.rand(2, 1, 16, 16, generator=g) > 0.5).float()
    f = _low_rank_plus_noise()
    pairs = [(f, channel_decouple(f))]
    loss_fn = IntraSenseLoss(ce_weight=0.5, dice_weight=2.0, iw_weight=3.0, alpha=0.2, beta=0.7)
    parts = loss_fn.components(logits, target, {"cdr": pairs})
    assert parts["ce"].item() == pytest.approx(F.binary_cross_entropy_with_logits(logits, target).item())
    assert parts["dice"].item() == pytest.approx(soft_dice_loss(logits, target).item())
    assert parts["iw"].item() == pytest.approx(instance_whitening_loss(pairs, 0.2, 0.7).item())
    expected = 0.5 * parts["ce"] + 2.0 * parts["dice"] + 3.0 * parts["iw"]
    assert parts["total"].item() == pytest.approx(expected.item())
    assert loss_fn(logits, target, pairs).item() == pytest.approx(expected.item())
    # Without CDR features the loss is CE + Dice only.
    no_iw = loss_fn.components(logits, target, {"cdr": []})
    assert no_iw["iw"].item() == 0.0 and loss_fn(logits, target).item() == pytest.approx(no_iw["total"].item())


@pytest.mark.parametrize("mode,kind,distance", [("rank", "nuclear", "mse"), ("rank", "effective", "cosine"),
                                                ("covariance", "nuclear", "mse")])
def test_iw_finite_with_gradients_on_constant_and_bf16(mode, kind, distance):
    loss_fn = IntraSenseLoss(rank_surrogate=kind, distance=distance, iw_mode=mode)
    for f in (torch.zeros(2, 8, 4, 4), torch.full((2, 8, 4, 4), 3.0), _low_rank_plus_noise()[:, :8, :4, :4]):
        f = f.clone().requires_grad_(True)
        logits = torch.zeros(2, 1, 8, 8, requires_grad=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            feat = f.bfloat16() * 1.0
            loss = loss_fn(logits.bfloat16(), torch.zeros(2, 1, 8, 8), [(feat, channel_decouple(feat))])
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        loss.backward()
        assert torch.isfinite(f.grad).all() and torch.isfinite(logits.grad).all()


def test_validation_errors():
    with pytest.raises(ValueError, match="alpha"):
        IntraSenseLoss(alpha=-1)
    with pytest.raises(ValueError, match="rank_surrogate"):
        IntraSenseLoss(rank_surrogate="exact")
    with pytest.raises(ValueError, match="iw_mode"):
        IntraSenseLoss(iw_mode="other")
    loss_fn = IntraSenseLoss()
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        loss_fn(torch.zeros(2, 2, 8, 8), torch.zeros(2, 2, 8, 8))
    with pytest.raises(ValueError, match="target"):
        loss_fn(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="'cdr'"):
        loss_fn(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8), {"features": []})
