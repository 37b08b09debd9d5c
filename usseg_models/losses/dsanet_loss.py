"""DSANet training loss: Dice + F3Net structure loss on the target and both auxiliary outputs.

As in the authors' release (``docs/paper-readings.md``, "DSANet: loss"):
``L = Σ_k w_k · (Dice(p_k, g_k) + Structure(p_k, g_k))`` over ``k ∈ {t, t-1, t-2}`` with ``w_k = 1``, where
``p_t`` is the target prediction, ``p_{t-1}`` the memory head and ``p_{t-2}`` the t-2 decoder head.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from usseg_models.losses.common import soft_dice_loss, structure_loss

__all__ = ["DSANetLoss"]


class DSANetLoss(nn.Module):
    """Sum of (soft Dice + structure loss) over DSANet's three outputs (the release's training objective; the
    per-frame ``valid`` weighting is this project's addition, see ``docs/paper-readings.md``, "DSANet: loss").

    Args:
        weights: weights of the target, ``p(t-1)`` and ``p(t-2)`` terms (default ``(1, 1, 1)``).
        dice_smooth: additive constant in the Dice denominator (``1`` as in the release).

    Inputs:
        outputs: the model's training-mode tuple ``(target, aux_t1, aux_t2)``, each ``(B, C, H, W)`` logits; a
            single ``(B, C, H, W)`` tensor (eval-mode output) is scored on the target term only. ``C = 1`` for one
            structure; ``C = 1 + n`` for n structures, where every term (the auxiliary ones too) is the softmax
            generalisation of :mod:`usseg_models.losses.common` (Dice per structure, averaged).
        masks: ``(B, 3, 1, H, W)`` binary masks (``C = 1``) or class indices (``C = 1 + n``) in the **same frame
            order as the input clip**: index 0 = target frame t, 1 = t-1, 2 = t-2 (so ``masks[:, k]`` supervises
            output ``k``).
        valid: optional ``(B, 3)`` weights in {0, 1}: 1 where that window frame has a mask (sparse-frame labels,
            reviewed frames). A term ``k`` of sample ``b`` counts only where ``valid[b, k] = 1``; each term is the
            mean over its valid samples (a term with no valid sample adds 0). ``None`` = every frame labelled,
            which is exactly the unmasked loss.

    Examples::

        >>> loss_fn = DSANetLoss()
        >>> outs = tuple(torch.randn(2, 1, 64, 64, requires_grad=True) for _ in range(3))
        >>> masks = (torch.rand(2, 3, 1, 64, 64) > 0.5).float()
        >>> loss_fn(outs, masks).shape
        torch.Size([])
    """

    def __init__(self, weights: Sequence[float] = (1.0, 1.0, 1.0), dice_smooth: float = 1.0) -> None:
        super().__init__()
        weights = tuple(float(w) for w in weights)
        if len(weights) != 3 or any(w < 0 for w in weights):
            raise ValueError(f"weights needs three non-negative values (target, t-1, t-2), got {weights}")
        self.weights = weights
        self.dice_smooth = dice_smooth

    def term(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Dice + structure loss of one output ``(B, C, H, W)`` against its mask ``(B, 1, H, W)``."""
        return soft_dice_loss(logits, mask, smooth=self.dice_smooth) + structure_loss(logits, mask)

    def forward(
        self, outputs: torch.Tensor | Sequence[torch.Tensor], masks: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        if not 1 <= len(outputs) <= 3:
            raise ValueError(f"expected 1 to 3 outputs (target, aux_t1, aux_t2), got {len(outputs)}")
        if masks.ndim != 5 or masks.shape[1] != 3:
            raise ValueError(f"masks must be (B, 3, 1, H, W) ordered t, t-1, t-2; got {tuple(masks.shape)}")
        masks = masks.float()
        if valid is not None:
            valid = valid.to(masks.device, torch.float32)
            if tuple(valid.shape) != (masks.shape[0], 3):
                raise ValueError(f"valid must be (B, 3), got {tuple(valid.shape)}")
        total = outputs[0].new_zeros((), dtype=torch.float32)
        for k, logits in enumerate(outputs):
            if logits.shape[0] != masks.shape[0] or logits.shape[2:] != masks.shape[3:]:
                raise ValueError(f"output {k} has shape {tuple(logits.shape)}, mask {tuple(masks[:, k].shape)}")
            if not self.weights[k]:
                continue
            if valid is None:
                total = total + self.weights[k] * self.term(logits, masks[:, k])
                continue
            w = valid[:, k]
            if float(w.sum()) > 0:
                per_sample = self.per_sample_term(logits, masks[:, k])
                total = total + self.weights[k] * (per_sample * w).sum() / w.sum()
        return total

    def per_sample_term(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B,)`` Dice + structure loss of one output, one value per sample."""
        return (soft_dice_loss(logits, mask, smooth=self.dice_smooth, reduction="none")
                + structure_loss(logits, mask, reduction="none"))
