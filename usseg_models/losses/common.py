"""Loss pieces shared by DSANet and IntraSense-Net: soft Dice, cross-entropy and the F3Net structure loss.

Every piece takes ``logits (B, C, H, W)`` and ``target (B, 1, H, W)``:

* ``C = 1`` (one structure, the papers' task): sigmoid probabilities, ``target`` in {0, 1}; exactly the papers'
  binary terms.
* ``C = 1 + n`` (n mutually exclusive structures, :class:`usseg_models.labels.LabelSet`): softmax probabilities,
  ``target`` holds class indices 0..n (0 = background). Generalisation used throughout (say-how of issue 20):
  soft Dice is computed per structure (background excluded) and averaged over the structures; BCE becomes softmax
  cross-entropy; the structure loss's boundary weight is ``1 + 5 max_c |avgpool_31(g_c) − g_c|`` (any structure's
  boundary) on the cross-entropy, and its weighted IoU is averaged over the structures.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["soft_dice_loss", "structure_loss", "box_mean", "cross_entropy", "class_probabilities", "one_hot_target"]


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "none":
        return per_sample
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def _check(logits: torch.Tensor, target: torch.Tensor) -> None:
    if logits.ndim != 4 or target.ndim != 4 or target.shape[1] != 1 or logits.shape[0] != target.shape[0] \
            or logits.shape[2:] != target.shape[2:] or logits.shape[1] == 2:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must be (B, C, H, W) with "
                         "C = 1 or 1 + n structures (≥ 3), and (B, 1, H, W)")


def one_hot_target(target: torch.Tensor, channels: int) -> torch.Tensor:
    """Class-index target ``(B, 1, H, W)`` → one-hot ``(B, channels, H, W)`` float (``channels = 1``: unchanged)."""
    if channels == 1:
        return target.float()
    idx = target[:, 0].long()
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= channels):
        raise ValueError(f"target class indices must be in 0..{channels - 1}, found {int(idx.min())}..{int(idx.max())}")
    return F.one_hot(idx, channels).permute(0, 3, 1, 2).float()


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Sigmoid (one channel) or softmax over channels (several), in float32."""
    logits = logits.float()
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Binary cross-entropy with logits (one channel) or softmax cross-entropy (several); per-sample means."""
    _check(logits, target)
    if logits.shape[1] == 1:
        per_pixel = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")[:, 0]
    else:
        per_pixel = F.cross_entropy(logits.float(), target[:, 0].long(), reduction="none")
    return _reduce(per_pixel.flatten(1).mean(1), reduction)


def soft_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0, reduction: str = "mean"
) -> torch.Tensor:
    """Soft Dice loss ``1 - mean_b(2 Σ p g / (Σ p + Σ g + smooth))`` on sigmoid probabilities: the Dice term of
    the DSANet release's loss and ``L_Dice`` of IntraSense-Net's Eq. 12 (``docs/paper-readings.md``, "DSANet: loss").
    With ``1 + n`` channels: softmax, the same Dice per structure (background excluded), averaged over structures.

    Args:
        logits: ``(B, C, H, W)`` raw scores, ``C = 1`` or ``1 + n``.
        target: ``(B, 1, H, W)`` in {0, 1} (``C = 1``) or class indices 0..n.
        smooth: additive constant of numerator-free form used by the DSANet release (``+1`` in the denominator).
        reduction: ``"mean"`` over the batch, or ``"none"`` for the ``(B,)`` per-sample losses.
    """
    _check(logits, target)
    channels = logits.shape[1]
    prob = class_probabilities(logits)
    tgt = one_hot_target(target, channels)
    if channels > 1:  # structures only
        prob, tgt = prob[:, 1:], tgt[:, 1:]
    prob, tgt = prob.flatten(2), tgt.flatten(2)
    inter = (prob * tgt).sum(2)
    dice = 2 * inter / (prob.sum(2) + tgt.sum(2) + smooth)  # (B, structures)
    return _reduce(1 - dice.mean(1), reduction)


def box_mean(x: torch.Tensor, size: int = 31) -> torch.Tensor:
    """Mean of each ``size × size`` window, zero-padded to keep the shape: ``F.avg_pool2d(x, size, 1, size // 2)``
    (padding counted), computed as two 1-D passes (``2·size`` instead of ``size²`` operations per pixel: 15× fewer
    for F3Net's 31, the costliest part of the DSANet loss on a CPU before)."""
    half = size // 2
    rows = F.avg_pool2d(x, kernel_size=(size, 1), stride=1, padding=(half, 0))
    return F.avg_pool2d(rows, kernel_size=(1, size), stride=1, padding=(0, half))


def structure_loss(logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """F3Net structure loss (Wei et al., AAAI 2020): boundary-weighted BCE + weighted IoU, as the DSANet release
    uses it (``docs/paper-readings.md``, "DSANet: loss").

    ``w = 1 + 5 |avgpool_31(g) - g|``; ``wbce = Σ w·bce / Σ w``;
    ``wiou = 1 - (Σ w p g + 1) / (Σ w (p + g) - Σ w p g + 1)``; both averaged over the batch
    (``reduction="none"``: the ``(B,)`` per-sample values).
    """
    _check(logits, target)
    logits = logits.float()
    channels = logits.shape[1]
    onehot = one_hot_target(target, channels)
    weit = 1 + 5 * torch.abs(box_mean(onehot, 31) - onehot)
    prob = class_probabilities(logits)
    if channels == 1:
        wbce = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")
        wbce = (weit * wbce).sum(dim=(2, 3)) / weit.sum(dim=(2, 3))
    else:
        onehot, prob = onehot[:, 1:], prob[:, 1:]
        weit_ce = weit[:, 1:].amax(dim=1)  # any structure's boundary
        weit = weit[:, 1:]
        ce = F.cross_entropy(logits, target[:, 0].long(), reduction="none")
        wbce = ((weit_ce * ce).sum(dim=(1, 2)) / weit_ce.sum(dim=(1, 2)))[:, None]
    inter = (prob * onehot * weit).sum(dim=(2, 3))
    union = ((prob + onehot) * weit).sum(dim=(2, 3))
    wiou = 1 - (inter + 1) / (union - inter + 1)
    return _reduce(wbce.mean(1) + wiou.mean(1), reduction)
