"""CDR: channel decoupling and re-weighting block of IntraSense-Net (paper Eqs. 8, 10-11).

**Decoupling** (Eq. 8, ``F_dec = F - Proj_span(F)(F)``). Read literally the projection of ``F`` on its own span
is ``F`` and the difference vanishes; we read it as removing the dominant directions shared by all positions:
reshape ``F`` to the ``C × HW`` matrix ``X`` of each sample, centre its rows (``X_c = X - mean_HW X``), take the
top-``k`` left singular vectors ``U_k`` of ``X_c`` and return ``F_dec = X - U_k U_kᵀ X`` (so ``u_iᵀ F_dec = 0``
for ``i ≤ k`` exactly). The SVD runs in float32 with autocast disabled. By default the basis is treated as a
constant (``detach_basis=True``): gradients flow through ``F`` but not through the singular vectors, whose
derivative is ill-conditioned when singular values coincide: with ``detach_basis=False`` a constant image
(``X_c = 0``) gives NaN gradients (measured), while the default stays finite.

**Re-weighting** (Eqs. 10-11, squeeze-and-excitation): ``s = GAP(F_dec)``, ``w = σ(MLP(s))``,
``F_out = w ⊙ F_dec`` with ``MLP = Linear(C, C/r) → ReLU → Linear(C/r, C)``.

The pair ``(F, F_dec)`` feeds the instance-whitening loss ``L_IW`` (Eq. 9,
:class:`usseg_models.losses.IntraSenseLoss`); ``CDR.forward(x, return_features=True)`` exposes it.
Readings and options: ``docs/paper-readings.md``, "IntraSense-Net: readings" (I8, I9).
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["channel_decouple", "CDR"]


def channel_decouple(x: torch.Tensor, k: int = 1, detach_basis: bool = True) -> torch.Tensor:
    """Remove the top-``k`` principal channel directions of each sample (paper Eq. 8, our reading).

    Args:
        x: ``(B, C, H, W)`` features.
        k: number of directions removed (``1 <= k < C``); clipped to ``min(C, H·W)`` when there are fewer
            positions than channels.
        detach_basis: compute ``U_k`` without gradient (recommended; see module docstring).

    Returns:
        ``F_dec`` with the shape and dtype of ``x``.

    Examples::

        >>> f = torch.randn(2, 16, 4, 4)
        >>> channel_decouple(f, k=1).shape
        torch.Size([2, 16, 4, 4])
    """
    if x.ndim != 4:
        raise ValueError(f"channel_decouple expects (B, C, H, W) features, got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    if not 1 <= k < c:
        raise ValueError(f"k must satisfy 1 <= k < channels ({c}), got {k}")
    with torch.autocast(device_type=x.device.type, enabled=False):
        mat = x.float().reshape(b, c, h * w)
        centred = mat - mat.mean(dim=2, keepdim=True)
        src = centred.detach() if detach_basis else centred
        u = torch.linalg.svd(src, full_matrices=False).U[..., : min(k, h * w)]  # (B, C, k)
        dec = mat - u @ (u.transpose(1, 2) @ mat)
    return dec.reshape(b, c, h, w).to(x.dtype)


class CDR(nn.Module):
    """Channel decoupling (Eq. 8) followed by SE-style channel re-weighting (Eqs. 10-11).

    Args:
        channels: feature channels ``C`` (>= 2).
        k: principal directions removed by the decoupling (default 1).
        reduction: SE bottleneck ratio ``r`` (hidden width ``max(1, C // r)``).
        detach_basis: see :func:`channel_decouple`.

    Examples::

        >>> cdr = CDR(32)
        >>> out, (f, f_dec) = cdr(torch.randn(2, 32, 4, 4), return_features=True)
        >>> out.shape, f_dec.shape
        (torch.Size([2, 32, 4, 4]), torch.Size([2, 32, 4, 4]))
    """

    def __init__(self, channels: int, k: int = 1, reduction: int = 16, detach_basis: bool = True) -> None:
        super().__init__()
        if channels < 2:
            raise ValueError(f"CDR needs at least 2 channels, got {channels}")
        if not 1 <= k < channels:
            raise ValueError(f"k must satisfy 1 <= k < channels ({channels}), got {k}")
        if reduction < 1:
            raise ValueError(f"reduction must be >= 1, got {reduction}")
        self.k = int(k)
        self.detach_basis = bool(detach_basis)
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``; with ``return_features`` also ``(F, F_dec)`` for ``L_IW``."""
        dec = channel_decouple(x, self.k, self.detach_basis)
        weights = torch.sigmoid(self.mlp(dec.mean(dim=(2, 3))))  # s = GAP(F_dec), w = σ(MLP(s))
        out = dec * weights[:, :, None, None]
        if return_features:
            return out, (x, dec)
        return out
