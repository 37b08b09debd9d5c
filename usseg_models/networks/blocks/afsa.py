"""AFSA: the Adjacent-Frame Semantic-Aware module of DSANet (Zhou et al., arXiv:2507.07443, AFSA section).

AFSA fuses a frame's features ``a`` with a reference ``b`` (the previous frame or the temporal memory). The
three steps below are the paper's AFSA equations in order (similarity, gating, pooling fusion):

1. similarity: ``s = cos(a, b)``. Read literally per element, ``a·b / (|a||b|)`` is ``sign(a)·sign(b)``
   (no information, zero gradient), so it is computed as in the authors' release, **across the channel vector at
   each pixel** (``similarity="channel_cosine"``, map ``(B, 1, H, W)``), or per channel over all positions
   (``similarity="spatial_cosine"``, map ``(B, C, 1, 1)``).
2. gating: ``g = sigmoid(s)`` (release) or ``g = s`` (``sigmoid_gate=False``; useful because inputs come
   after ReLU, so ``s ∈ [0, 1]`` and the sigmoid gate only spans ``[0.5, 0.73]``); ``a′ = a ⊙ g``, ``b′ = b ⊙ g``.
3. pooling fusion, the paper's "Pooling" terms being CBAM-style channel attention ``CA``:
   ``out = a′ ⊙ CA₁(b′)``; ``out = out ⊙ CA₂(out)``.

Readings and options: ``docs/paper-readings.md``, "DSANet: readings" (D1-D3).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ChannelAttention", "AFSA"]

_SIMILARITIES = ("channel_cosine", "spatial_cosine")
_CHANNEL_ATTENTIONS = ("cbam", "avg")


class ChannelAttention(nn.Module):
    """Channel attention weights ``sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))`` (CBAM, Woo et al. 2018, Eq. 2):
    the ``CA`` of the paper's AFSA pooling-fusion equation.

    Args:
        channels: number of channels ``C``.
        reduction: MLP bottleneck ratio (``C → C / reduction → C``, at least one hidden unit).
        variant: ``"cbam"`` (average + max pooling through a shared MLP, as in the release) or ``"avg"``
            (average pooling only, squeeze-and-excitation style).

    Shapes: ``(B, C, H, W)`` → weights ``(B, C, 1, 1)`` in ``(0, 1)``.
    """

    def __init__(self, channels: int, reduction: int = 16, variant: str = "cbam") -> None:
        super().__init__()
        if channels < 1 or reduction < 1:
            raise ValueError(f"channels and reduction must be positive, got {channels}, {reduction}")
        if variant not in _CHANNEL_ATTENTIONS:
            raise ValueError(f"channel attention variant must be one of {_CHANNEL_ATTENTIONS}, got {variant!r}")
        hidden = max(1, channels // reduction)
        self.variant = variant
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.mlp(F.adaptive_avg_pool2d(x, 1))
        if self.variant == "cbam":
            out = out + self.mlp(F.adaptive_max_pool2d(x, 1))
        return torch.sigmoid(out)


class AFSA(nn.Module):
    """Adjacent-frame semantic-aware fusion (paper's AFSA equations): gate both inputs by their cosine similarity, then
    re-weight the current frame's channels by the reference's channel attention and by its own.

    Args:
        channels: channels ``C`` of both inputs.
        similarity: ``"channel_cosine"`` (default, release: cosine across channels per pixel) or
            ``"spatial_cosine"`` (cosine per channel over positions).
        sigmoid_gate: pass the similarity through a sigmoid before gating (release: ``True``).
        channel_attention: ``"cbam"`` (default, avg + max pooling) or ``"avg"`` for both ``CA₁`` and ``CA₂``.
        reduction: channel-attention MLP ratio (16 as in the release).
        eps: numerical floor of the cosine's norms.

    Examples::

        >>> afsa = AFSA(256)
        >>> a, b = torch.rand(2, 256, 88, 88), torch.rand(2, 256, 88, 88)
        >>> afsa(a, b).shape
        torch.Size([2, 256, 88, 88])

    Shapes: ``a``, ``b``: ``(B, C, H, W)`` → ``(B, C, H, W)``.
    """

    def __init__(
        self,
        channels: int,
        similarity: str = "channel_cosine",
        sigmoid_gate: bool = True,
        channel_attention: str = "cbam",
        reduction: int = 16,
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        if similarity not in _SIMILARITIES:
            raise ValueError(f"similarity must be one of {_SIMILARITIES}, got {similarity!r}")
        self.similarity = similarity
        self.sigmoid_gate = sigmoid_gate
        self.eps = eps
        self.ca1 = ChannelAttention(channels, reduction, channel_attention)
        self.ca2 = ChannelAttention(channels, reduction, channel_attention)

    def similarity_map(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Similarity equation: cosine map ``(B, 1, H, W)`` (channel_cosine) or ``(B, C, 1, 1)`` (spatial_cosine)."""
        if self.similarity == "channel_cosine":
            return F.cosine_similarity(a, b, dim=1, eps=self.eps).unsqueeze(1)
        return F.cosine_similarity(a.flatten(2), b.flatten(2), dim=2, eps=self.eps)[..., None, None]

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape != b.shape:
            raise ValueError(f"AFSA inputs must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
        gate = self.similarity_map(a, b)
        if self.sigmoid_gate:
            gate = torch.sigmoid(gate)
        a_g, b_g = a * gate, b * gate  # gating equation
        out = a_g * self.ca1(b_g)  # pooling fusion, first term
        return out * self.ca2(out)  # pooling fusion, second term
