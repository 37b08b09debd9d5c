"""IntraSense-Net loss ``L = w_ce L_CE + w_dice L_Dice + λ L_IW`` (paper Eq. 12) with the instance-whitening
term ``L_IW = α (rank(F) - rank(F_dec)) + β dist(F, F_dec)`` (paper Eq. 9), summed over the CDR blocks.

Readings of the ambiguous parts (each an option; ``docs/paper-readings.md``, "IntraSense-Net: readings", I10-I15):

* **CE** for one logit channel: ``binary_cross_entropy_with_logits``. **Dice**: soft Dice on the sigmoid
  probability (:func:`usseg_models.losses.common.soft_dice_loss`). Several structures (``1 + n`` channels):
  softmax cross-entropy and the per-structure Dice averaged over structures (:mod:`usseg_models.losses.common`).
* **rank()** is not differentiable; it is replaced by a surrogate computed per sample on the centred
  ``C × HW`` matrix from its singular values σ (float32 SVD, autocast disabled), normalised to ``(0, 1]`` by the
  largest possible value ``r = min(C, HW)``:

  - ``rank_surrogate="nuclear"`` (default): ``‖X‖_* / (√r (‖X‖_F + ε))`` (nuclear / Frobenius norm ratio);
  - ``rank_surrogate="effective"``: effective rank ``exp(-Σ p_i log p_i) / r`` with ``p = σ / (Σσ + ε)``.

  **Sign convention**: the decoupled features should have a *higher* effective rank than ``F`` (their dominant
  shared direction is removed), so the α term is ``rank(F) - rank(F_dec)`` and *minimising* it rewards a larger
  rank of ``F_dec`` relative to ``F``. It is negative when decoupling spreads the spectrum, as intended.
  Both terms carry gradient (literal Eq. 9): the encoder is pushed to concentrate the shared component of ``F``
  in its leading directions (lower ``rank(F)``), which the decoupling then removes (higher ``rank(F_dec)``).
* **dist**: ``distance="mse"`` (default) mean squared difference, or ``distance="cosine"``
  ``1 - cos(F, F_dec)`` per sample; it keeps the decoupled features close to the information in ``F``.
* **iw_mode="covariance"**: the alternative reading after RobustNet's instance whitening (CVPR 2021): the α term
  becomes the mean absolute off-diagonal entry of the channel covariance of the instance-standardised ``F_dec``
  (decorrelated channels), the β term is unchanged.

All feature terms run in float32 with autocast disabled, so the loss stays finite under bf16/fp16 autocast; with
constant inputs every surrogate is 0 (no NaN).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from usseg_models.losses.common import cross_entropy, soft_dice_loss

__all__ = [
    "IntraSenseLoss",
    "rank_surrogate",
    "feature_distance",
    "offdiagonal_covariance_penalty",
    "instance_whitening_loss",
]

_SURROGATES = ("nuclear", "effective")
_DISTANCES = ("mse", "cosine")
_IW_MODES = ("rank", "covariance")

FeaturePairs = Sequence[tuple[torch.Tensor, torch.Tensor]]


def _as_matrix(x: torch.Tensor) -> torch.Tensor:
    if x.ndim < 3:
        raise ValueError(f"features must be (B, C, *spatial), got shape {tuple(x.shape)}")
    return x.float().flatten(2)


def rank_surrogate(x: torch.Tensor, kind: str = "nuclear", eps: float = 1e-6) -> torch.Tensor:
    """Differentiable, normalised surrogate of ``rank()`` in paper Eq. 9, per sample (see module docstring).

    Args:
        x: ``(B, C, H, W)`` features (any float dtype; computed in float32).
        kind: ``"nuclear"`` (nuclear/Frobenius ratio) or ``"effective"`` (effective rank).
        eps: stabiliser; a zero (constant) matrix gives 0.

    Returns:
        ``(B,)`` float32 values in ``[0, 1]``.
    """
    if kind not in _SURROGATES:
        raise ValueError(f"rank surrogate must be one of {_SURROGATES}, got {kind!r}")
    with torch.autocast(device_type=x.device.type, enabled=False):
        mat = _as_matrix(x)
        mat = mat - mat.mean(dim=2, keepdim=True)
        r = min(mat.shape[1], mat.shape[2])
        sv = torch.linalg.svdvals(mat)  # (B, r)
        if kind == "nuclear":
            fro = torch.sqrt((sv**2).sum(dim=1) + eps**2)
            return sv.sum(dim=1) / (fro * r**0.5)
        p = sv / (sv.sum(dim=1, keepdim=True) + eps)
        entropy = -(p * torch.log(p + eps)).sum(dim=1)
        erank = torch.exp(entropy) * (sv.sum(dim=1) > eps)  # constant input: no spectrum, rank 0
        return erank / r


def feature_distance(f: torch.Tensor, f_dec: torch.Tensor, kind: str = "mse", eps: float = 1e-6) -> torch.Tensor:
    """``dist(F, F_dec)`` of paper Eq. 9, averaged over the batch: mean squared error or ``1 - cosine`` (float32)."""
    if kind not in _DISTANCES:
        raise ValueError(f"distance must be one of {_DISTANCES}, got {kind!r}")
    if f.shape != f_dec.shape:
        raise ValueError(f"F {tuple(f.shape)} and F_dec {tuple(f_dec.shape)} must have the same shape")
    with torch.autocast(device_type=f.device.type, enabled=False):
        a, b = f.float().flatten(1), f_dec.float().flatten(1)
        if kind == "mse":
            return F.mse_loss(a, b)
        return (1 - F.cosine_similarity(a, b, dim=1, eps=eps)).mean()


def offdiagonal_covariance_penalty(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """RobustNet-style instance-whitening penalty: mean ``|Cov_ij|``, ``i ≠ j``, of instance-standardised channels.

    Replaces the α term of paper Eq. 9 under ``iw_mode="covariance"`` (an alternative reading of ``L_IW``).

    Args:
        x: ``(B, C, H, W)`` features, ``C >= 2``.

    Returns:
        scalar float32 tensor (0 for perfectly decorrelated or constant channels).
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        mat = _as_matrix(x)
        b, c, n = mat.shape
        if c < 2:
            raise ValueError(f"covariance penalty needs at least 2 channels, got {c}")
        mat = mat - mat.mean(dim=2, keepdim=True)
        mat = mat * torch.rsqrt((mat**2).mean(dim=2, keepdim=True) + eps)
        cov = mat @ mat.transpose(1, 2) / n
        off = cov - torch.diag_embed(torch.diagonal(cov, dim1=1, dim2=2))
        return off.abs().sum(dim=(1, 2)).mean() / (c * (c - 1))


def instance_whitening_loss(
    pairs: FeaturePairs,
    alpha: float = 0.1,
    beta: float = 0.1,
    rank_kind: str = "nuclear",
    distance: str = "mse",
    mode: str = "rank",
) -> torch.Tensor:
    """``L_IW`` (paper Eq. 9) summed over ``(F, F_dec)`` pairs; see the module docstring for the readings."""
    if mode not in _IW_MODES:
        raise ValueError(f"iw_mode must be one of {_IW_MODES}, got {mode!r}")
    total = None
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError("each CDR feature entry must be a pair (F, F_dec)")
        f, f_dec = pair
        if mode == "rank":
            term = (rank_surrogate(f, rank_kind) - rank_surrogate(f_dec, rank_kind)).mean()
        else:
            term = offdiagonal_covariance_penalty(f_dec)
        value = alpha * term + beta * feature_distance(f, f_dec, distance)
        total = value if total is None else total + value
    return total


class IntraSenseLoss(nn.Module):
    """CE + Dice + instance-whitening loss of IntraSense-Net (paper Eqs. 9 and 12).

    Args:
        ce_weight: weight of the BCE-with-logits term.
        dice_weight: weight of the soft Dice term.
        iw_weight: λ, weight of ``L_IW`` (0 disables it).
        alpha: weight of the rank-surrogate (or covariance) term inside ``L_IW``.
        beta: weight of ``dist(F, F_dec)`` inside ``L_IW``.
        rank_surrogate: ``"nuclear"`` or ``"effective"``.
        distance: ``"mse"`` or ``"cosine"``.
        iw_mode: ``"rank"`` (paper, Eq. 9 with the surrogate) or ``"covariance"`` (RobustNet reading).

    Examples::

        >>> loss_fn = IntraSenseLoss()
        >>> logits, feats = net(images, return_features=True)   # logits (B, 1, H, W)
        >>> loss = loss_fn(logits, masks, feats)                 # masks (B, 1, H, W) in {0, 1}
        >>> parts = loss_fn.components(logits, masks, feats)     # {"ce", "dice", "iw", "total"}
    """

    def __init__(
        self,
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
        iw_weight: float = 1.0,
        alpha: float = 0.1,
        beta: float = 0.1,
        rank_surrogate: str = "nuclear",
        distance: str = "mse",
        iw_mode: str = "rank",
    ) -> None:
        super().__init__()
        for name, value in (("ce_weight", ce_weight), ("dice_weight", dice_weight), ("iw_weight", iw_weight),
                            ("alpha", alpha), ("beta", beta)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if rank_surrogate not in _SURROGATES:
            raise ValueError(f"rank_surrogate must be one of {_SURROGATES}, got {rank_surrogate!r}")
        if distance not in _DISTANCES:
            raise ValueError(f"distance must be one of {_DISTANCES}, got {distance!r}")
        if iw_mode not in _IW_MODES:
            raise ValueError(f"iw_mode must be one of {_IW_MODES}, got {iw_mode!r}")
        self.ce_weight, self.dice_weight, self.iw_weight = float(ce_weight), float(dice_weight), float(iw_weight)
        self.alpha, self.beta = float(alpha), float(beta)
        self.rank_surrogate, self.distance, self.iw_mode = rank_surrogate, distance, iw_mode

    @staticmethod
    def _pairs(features: Mapping | FeaturePairs | None) -> FeaturePairs:
        if features is None:
            return []
        if isinstance(features, Mapping):
            if "cdr" not in features:
                raise ValueError(f"features dict must have a 'cdr' entry, got keys {sorted(features)}")
            return features["cdr"]
        return features

    def components(
        self, logits: torch.Tensor, target: torch.Tensor, features: Mapping | FeaturePairs | None = None
    ) -> dict[str, torch.Tensor]:
        """Return the weighted total and the unweighted ``ce``, ``dice`` and ``iw`` terms (float32 scalars).

        Args:
            logits: ``(B, C, H, W)`` raw scores (``C = 1``, or ``1 + n`` structures).
            target: ``(B, 1, H, W)`` binary mask (``C = 1``) or class indices 0..n (any numeric dtype).
            features: ``{"cdr": [(F, F_dec), ...]}`` from ``IntraSenseNet(..., return_features=True)`` or the
                list of pairs; ``None``/empty gives ``iw = 0``.
        """
        if logits.ndim != 4 or logits.shape[1] == 2:
            raise ValueError(f"logits must be (B, 1, H, W) or (B, 1 + n, H, W) with n ≥ 2 structures, got shape "
                             f"{tuple(logits.shape)}")
        if target.ndim != 4 or target.shape[1] != 1 or target.shape[0] != logits.shape[0] \
                or target.shape[2:] != logits.shape[2:]:
            raise ValueError(f"target {tuple(target.shape)} must be (B, 1, H, W) of logits {tuple(logits.shape)}")
        with torch.autocast(device_type=logits.device.type, enabled=False):
            lg, tg = logits.float(), target.float()
            ce = cross_entropy(lg, tg)
            dice = soft_dice_loss(lg, tg)
            pairs = self._pairs(features)
            iw = (instance_whitening_loss(pairs, self.alpha, self.beta, self.rank_surrogate, self.distance,
                                          self.iw_mode) if pairs else None)
            if iw is None:
                iw = lg.new_zeros(())
            total = self.ce_weight * ce + self.dice_weight * dice + self.iw_weight * iw
        return {"total": total, "ce": ce, "dice": dice, "iw": iw}

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, features: Mapping | FeaturePairs | None = None
    ) -> torch.Tensor:
        """Scalar loss (see :meth:`components` for the arguments)."""
        return self.components(logits, target, features)["total"]
