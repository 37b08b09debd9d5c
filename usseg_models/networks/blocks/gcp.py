"""GCP: global-local collaborative perception block of IntraSense-Net (paper Eqs. 1-7).

The block chains three steps on an encoder feature map ``F_in`` of shape ``(B, C, H, W)``:

1. **Non-local attention** (Eqs. 1-3): ``Q = W_q F``, ``K = W_k F`` (1x1 convs, C -> C'), ``V = W_v F``
   (1x1 conv, C -> C so the residual sum is defined); ``A = softmax(Q Kᵀ / √C')`` over all ``H·W`` positions;
   ``F_nl = A V + F_in``. Computed with :func:`torch.nn.functional.scaled_dot_product_attention`.
2. **Spatial attention** (Eqs. 4-5): ``A_s = σ(conv_k×k([avg_c(F_nl); max_c(F_nl)]))`` where ``avg_c``/``max_c``
   pool over channels; ``F_att = A_s ⊙ F_nl``.
3. **Entropy-based region whitening** (Eqs. 6-7), switchable (``entropy_whitening``): per position
   ``p_c = softmax_c(F_att)``, ``H = -Σ_c p_c log p_c``, normalised ``H_n = H / log C`` ∈ [0, 1];
   mask ``M = H_n < τ`` (τ = 0.5); ``F_out = M ⊙ (F_att - μ) / √(σ² + ε) + (1 - M) ⊙ F_att``.

Readings chosen where the paper is ambiguous (``docs/paper-readings.md``, "IntraSense-Net: readings", I3-I7):

* Entropy is taken over the softmax of the raw activations across channels (the paper's "normalised activation
  probabilities") and divided by ``log C`` so that τ = 0.5 is meaningful for every width.
* ``whitening_stats="region"`` (default): μ, σ² are per-channel statistics over the masked positions of the same
  sample. ``"instance"``: per-channel statistics over all positions of the sample (instance-norm statistics);
  in both cases only masked positions are changed.
* ``temperature`` (default 1 = literal) divides the activations before that softmax. Measured at
  initialisation on BatchNorm-normalised deepest-stage features (train mode, random input), the literal softmax
  over hundreds of channels is nearly uniform (mean H_n 0.94 for the paper and 0.98 for the small
  configuration, minimum 0.79; no position below τ = 0.5), and after a 40-step synthetic training run of the small
  configuration it still never engaged (H_n ≥ 0.99). So with the literal reading whitening engages only if
  training makes the channel profile peaked; ``temperature=0.1`` whitens almost every position at initialisation.
  The temperature is the knob between the two.
* The mask is a hard threshold (no gradient flows through ``M``); gradients flow through the standardisation.
* Entropy and statistics are computed in float32 with autocast disabled and cast back to the input dtype.

Degenerate inputs: a sample with no masked position is returned unchanged; a channel that is constant over the
masked region has σ² = 0 and maps to exactly 0 there (division by ``√ε``), so constant images give finite output.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["NonLocalAttention", "SpatialAttention", "EntropyRegionWhitening", "GCP", "normalized_channel_entropy"]

_WHITENING_STATS = ("region", "instance")


def normalized_channel_entropy(x: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Per-position entropy of the softmax over channels, divided by ``log C`` (paper Eq. 6).

    Args:
        x: ``(B, C, H, W)`` features with ``C >= 2``.
        temperature: ``p = softmax_c(x / temperature)`` (1 = the paper's literal softmax).

    Returns:
        ``(B, 1, H, W)`` float32 tensor with values in ``[0, 1]`` (1 = uniform over channels).
    """
    if x.ndim != 4 or x.shape[1] < 2:
        raise ValueError(f"expected (B, C>=2, H, W) features, got shape {tuple(x.shape)}")
    logp = F.log_softmax(x.float() / temperature, dim=1)
    ent = -(logp.exp() * logp).sum(dim=1, keepdim=True)
    return (ent / math.log(x.shape[1])).clamp(0.0, 1.0)


class NonLocalAttention(nn.Module):
    """Non-local self-attention with residual, paper Eqs. 1-3: ``F_nl = softmax(Q Kᵀ/√d) V + F_in``.

    Args:
        channels: input/output channels ``C``.
        key_channels: query/key width ``C' = d``.

    Examples::

        >>> block = NonLocalAttention(64, 8)
        >>> block(torch.randn(2, 64, 8, 8)).shape
        torch.Size([2, 64, 8, 8])
    """

    def __init__(self, channels: int, key_channels: int) -> None:
        super().__init__()
        if channels < 1 or key_channels < 1:
            raise ValueError(f"channels ({channels}) and key_channels ({key_channels}) must be positive")
        self.query = nn.Conv2d(channels, key_channels, kernel_size=1)
        self.key = nn.Conv2d(channels, key_channels, kernel_size=1)
        self.value = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``."""
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2).unsqueeze(1)  # (B, 1, HW, C')
        k = self.key(x).flatten(2).transpose(1, 2).unsqueeze(1)
        v = self.value(x).flatten(2).transpose(1, 2).unsqueeze(1)  # (B, 1, HW, C)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(QKᵀ/√C') V
        return out.squeeze(1).transpose(1, 2).reshape(b, c, h, w) + x


class SpatialAttention(nn.Module):
    """Spatial attention from channel-wise average and max pooling, paper Eqs. 4-5.

    ``A_s = σ(conv([mean_c F; max_c F]))``, output ``A_s ⊙ F``.

    Args:
        kernel_size: odd size of the convolution on the 2-channel pooled map (paper: 7).

    Examples::

        >>> SpatialAttention(7)(torch.randn(1, 16, 8, 8)).shape
        torch.Size([1, 16, 8, 8])
    """

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size=kernel_size, padding=kernel_size // 2)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, 1, H, W)`` map ``A_s`` in (0, 1) (paper Eq. 4)."""
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``."""
        return self.attention_map(x) * x


class EntropyRegionWhitening(nn.Module):
    """Standardise only low-entropy positions (paper Eqs. 6-7); no learnable parameters.

    Args:
        tau: threshold on the normalised channel entropy; positions with ``H_n < tau`` are whitened.
        stats: ``"region"`` (per-channel statistics of the sample's masked positions) or ``"instance"``
            (per-channel statistics of all positions of the sample).
        eps: variance floor; constant channels map to 0 on masked positions.
        temperature: softmax temperature of the entropy (see the module docstring; 1 = literal).

    Examples::

        >>> EntropyRegionWhitening(0.5)(torch.randn(2, 16, 8, 8)).shape
        torch.Size([2, 16, 8, 8])
    """

    def __init__(self, tau: float = 0.5, stats: str = "region", eps: float = 1e-5, temperature: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= tau <= 1.0:
            raise ValueError(f"tau is a threshold on normalised entropy and must be in [0, 1], got {tau}")
        if stats not in _WHITENING_STATS:
            raise ValueError(f"stats must be one of {_WHITENING_STATS}, got {stats!r}")
        if eps <= 0:
            raise ValueError(f"eps must be positive, got {eps}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)
        self.tau = float(tau)
        self.stats = stats
        self.eps = float(eps)

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """Boolean ``(B, 1, H, W)`` mask ``M = H_n < tau`` (paper Eq. 7; no gradient)."""
        with torch.no_grad():
            return normalized_channel_entropy(x, self.temperature) < self.tau

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``: masked positions standardised, others untouched."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            xf = x.float()
            m = self.mask(xf).to(xf.dtype)
            weight = m if self.stats == "region" else torch.ones_like(m)
            count = weight.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)
            mean = (xf * weight).sum(dim=(2, 3), keepdim=True) / count
            var = (((xf - mean) ** 2) * weight).sum(dim=(2, 3), keepdim=True) / count
            white = (xf - mean) * torch.rsqrt(var + self.eps)
            out = m * white + (1.0 - m) * xf
        return out.to(x.dtype)


class GCP(nn.Module):
    """Global-local collaborative perception (paper Eqs. 1-7): non-local attention -> spatial attention ->
    entropy-based region whitening.

    Args:
        channels: feature channels ``C`` (>= 2, needed for the channel entropy).
        key_reduction: ``C' = max(1, C // key_reduction)`` for queries and keys.
        spatial_kernel: kernel size of the spatial-attention convolution (paper: 7).
        entropy_whitening: apply Eqs. 6-7; ``False`` gives the "GCP without entropy normalisation" ablation row.
        tau: normalised-entropy threshold (paper: 0.5).
        whitening_stats: ``"region"`` or ``"instance"`` (see :class:`EntropyRegionWhitening`).
        eps: variance floor of the whitening.
        entropy_temperature: softmax temperature of the channel entropy (1 = literal; see module docstring).

    Examples::

        >>> gcp = GCP(64)
        >>> gcp(torch.randn(2, 64, 8, 8)).shape  # (B, C, H, W) -> (B, C, H, W)
        torch.Size([2, 64, 8, 8])
    """

    def __init__(
        self,
        channels: int,
        key_reduction: int = 8,
        spatial_kernel: int = 7,
        entropy_whitening: bool = True,
        tau: float = 0.5,
        whitening_stats: str = "region",
        eps: float = 1e-5,
        entropy_temperature: float = 1.0,
    ) -> None:
        super().__init__()
        if channels < 2:
            raise ValueError(f"GCP needs at least 2 channels for the channel entropy, got {channels}")
        if key_reduction < 1:
            raise ValueError(f"key_reduction must be >= 1, got {key_reduction}")
        self.nonlocal_attention = NonLocalAttention(channels, max(1, channels // key_reduction))
        self.spatial_attention = SpatialAttention(spatial_kernel)
        self.whitening: nn.Module = nn.Identity()
        if entropy_whitening:
            self.whitening = EntropyRegionWhitening(tau, whitening_stats, eps, entropy_temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``."""
        if x.ndim != 4:
            raise ValueError(f"GCP expects (B, C, H, W) input, got shape {tuple(x.shape)}")
        return self.whitening(self.spatial_attention(self.nonlocal_attention(x)))
