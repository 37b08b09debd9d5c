"""Loss pieces shared by DSANet and IntraSense-Net: soft Dice and the F3Net structure loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["soft_dice_loss", "structure_loss"]


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "none":
        return per_sample
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def soft_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0, reduction: str = "mean"
) -> torch.Tensor:
    """Binary soft Dice loss ``1 - mean_b(2 Σ p g / (Σ p + Σ g + smooth))`` on sigmoid probabilities: the Dice term of
    the DSANet release's loss and ``L_Dice`` of IntraSense-Net's Eq. 12 (``docs/paper-readings.md``, "DSANet: loss").

    Args:
        logits: ``(B, 1, H, W)`` raw scores.
        target: ``(B, 1, H, W)`` in {0, 1} (float).
        smooth: additive constant of numerator-free form used by the DSANet release (``+1`` in the denominator).
        reduction: ``"mean"`` over the batch, or ``"none"`` for the ``(B,)`` per-sample losses.
    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must have the same shape")
    prob = torch.sigmoid(logits.float()).flatten(1)
    tgt = target.float().flatten(1)
    inter = (prob * tgt).sum(1)
    dice = 2 * inter / (prob.sum(1) + tgt.sum(1) + smooth)
    return _reduce(1 - dice, reduction)


def structure_loss(logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """F3Net structure loss (Wei et al., AAAI 2020): boundary-weighted BCE + weighted IoU, as the DSANet release
    uses it (``docs/paper-readings.md``, "DSANet: loss").

    ``w = 1 + 5 |avgpool_31(g) - g|``; ``wbce = Σ w·bce / Σ w``;
    ``wiou = 1 - (Σ w p g + 1) / (Σ w (p + g) - Σ w p g + 1)``; both averaged over the batch
    (``reduction="none"``: the ``(B,)`` per-sample values).
    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must have the same shape")
    logits = logits.float()
    target = target.float()
    weit = 1 + 5 * torch.abs(F.avg_pool2d(target, kernel_size=31, stride=1, padding=15) - target)
    wbce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    wbce = (weit * wbce).sum(dim=(2, 3)) / weit.sum(dim=(2, 3))
    prob = torch.sigmoid(logits)
    inter = (prob * target * weit).sum(dim=(2, 3))
    union = ((prob + target) * weit).sum(dim=(2, 3))
    wiou = 1 - (inter + 1) / (union - inter + 1)
    return _reduce((wbce + wiou).flatten(1).mean(1), reduction)
