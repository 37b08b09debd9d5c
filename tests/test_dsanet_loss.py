"""DSANetLoss: hand-computed values on a tiny example, weights, frame order of the masks, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from usseg_models.losses import DSANetLoss


def hand_term(logits: list[list[float]], mask: list[list[float]]) -> float:
    """Dice + F3Net structure loss of one 2×2 output, written out with plain floats.

    On a 2×2 image the 31×31 average pool (zero padding counted) covers all four pixels from every position,
    so avgpool(g) = Σg / 961 everywhere.
    """
    pix = [(i, j) for i in range(2) for j in range(2)]
    p = {ij: 1 / (1 + math.exp(-logits[ij[0]][ij[1]])) for ij in pix}
    g = {ij: mask[ij[0]][ij[1]] for ij in pix}
    pooled = sum(g.values()) / 961
    w = {ij: 1 + 5 * abs(pooled - g[ij]) for ij in pix}
    bce = {ij: -(g[ij] * math.log(p[ij]) + (1 - g[ij]) * math.log(1 - p[ij])) for ij in pix}
    wbce = sum(w[ij] * bce[ij] for ij in pix) / sum(w.values())
    inter = sum(w[ij] * p[ij] * g[ij] for ij in pix)
    union = sum(w[ij] * (p[ij] + g[ij]) for ij in pix)
    wiou = 1 - (inter + 1) / (union - inter + 1)
    dice = 1 - 2 * sum(p[ij] * g[ij] for ij in pix) / (sum(p.values()) + sum(g.values()) + 1)
    return dice + wbce + wiou


LOGITS = [[[2.0, -1.0], [0.5, -3.0]], [[0.0, 0.0], [0.0, 0.0]], [[-2.0, 1.5], [1.0, 4.0]]]
MASKS = [[[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [1.0, 1.0]]]


def tensors():
    outs = tuple(torch.tensor(v).view(1, 1, 2, 2) for v in LOGITS)
    masks = torch.stack([torch.tensor(m).view(1, 1, 2, 2) for m in MASKS], dim=1)  # (B=1, 3, 1, 2, 2), t, t-1, t-2
    return outs, masks


def test_default_weights_equal_hand_computation():
    outs, masks = tensors()
    expected = sum(hand_term(lg, mk) for lg, mk in zip(LOGITS, MASKS))
    assert DSANetLoss()(outs, masks).item() == pytest.approx(expected, rel=1e-5)


def test_weights_and_mask_order():
    outs, masks = tensors()
    terms = [hand_term(lg, mk) for lg, mk in zip(LOGITS, MASKS)]
    loss = DSANetLoss(weights=(1.0, 0.5, 2.0))(outs, masks).item()
    assert loss == pytest.approx(terms[0] + 0.5 * terms[1] + 2.0 * terms[2], rel=1e-5)
    # masks[:, k] supervises output k: reversing the mask order changes the value
    assert DSANetLoss()(outs, masks.flip(1)).item() != pytest.approx(sum(terms), rel=1e-3)
    # eval-mode single tensor: target term only
    assert DSANetLoss()(outs[0], masks).item() == pytest.approx(terms[0], rel=1e-5)


def test_batch_mean_and_gradient():
    torch.manual_seed(0)
    outs = tuple(torch.randn(3, 1, 16, 16, requires_grad=True) for _ in range(3))
    masks = (torch.rand(3, 3, 1, 16, 16) > 0.5).float()
    loss = DSANetLoss()(outs, masks)
    loss.backward()
    assert all(o.grad is not None and o.grad.abs().sum() > 0 for o in outs)
    per_sample = [DSANetLoss()(tuple(o[i : i + 1] for o in outs), masks[i : i + 1]) for i in range(3)]
    # Dice is a mean over the batch inside 1 - mean(.), structure loss a batch mean: the sum is linear in samples
    assert loss.item() == pytest.approx(sum(p.item() for p in per_sample) / 3, rel=1e-5)


def test_bad_input():
    outs, masks = tensors()
    with pytest.raises(ValueError, match=r"\(B, 3, 1, H, W\)"):
        DSANetLoss()(outs, masks[:, :2])
    with pytest.raises(ValueError, match="shape"):
        DSANetLoss()((outs[0], outs[1], torch.zeros(1, 1, 3, 3)), masks)
    with pytest.raises(ValueError, match="weights"):
        DSANetLoss(weights=(1.0, -1.0, 1.0))


@pytest.mark.parametrize("shape", [(4, 1, 64, 64), (2, 4, 96, 80), (1, 1, 20, 20)])
def test_box_mean_equals_the_2d_average_pool_of_f3net(shape):
    """The boundary weight's 31 × 31 window mean, as two 1-D passes, is F3Net's ``avg_pool2d(g, 31, 1, 15)``
    (padding counted; also on frames smaller than the window)."""
    from usseg_models.losses.common import box_mean

    g = (torch.rand(shape, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    reference = torch.nn.functional.avg_pool2d(g, kernel_size=31, stride=1, padding=15)
    assert box_mean(g, 31).shape == reference.shape
    assert torch.allclose(box_mean(g, 31), reference, atol=1e-6)
    assert not torch.allclose(box_mean(g, 7), reference, atol=1e-3)  # the window size matters
