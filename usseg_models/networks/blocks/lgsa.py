"""LGSA: the Local-and-Global Semantic-Aware module of DSANet (Zhou et al., arXiv:2507.07443, LGSA section).

LGSA turns the temporally fused feature ``F`` (``C₁@H/4``, output of AFSA) into a global pyramid and reassembles it
with the target frame's own (temporally unconditional) backbone pyramid. In the order of the paper's LGSA equations:

1. stacked self-attention over every ``H/4`` position: ``Z ← softmax(Q Kᵀ / √C) V`` with ``Q, K, V = Linear(Z)``,
   applied ``N`` times (12 in the release; single head, no residual, no norm, no FFN, no positional encoding);
2. the global pyramid ``F_g¹…⁴``: four stages of two conv3×3-BN-ReLU (first conv at stride 1 keeping the width,
   second conv to the stage width, at stride 2 from the second stage on) with the backbone's widths and strides;
3. channel split-and-reassembly with the local pyramid ``F_l¹…⁴`` (the target frame's raw backbone stage outputs):
   each level's channels are halved and regrouped into two fused pyramids, one per fused decoder.

The release reshapes the attention output ``(B, HW, C)`` straight to ``(B, C, H, W)``, reinterpreting memory and
scrambling the feature map spatially. Here the tokens are put back correctly; ``reproduce_release_bug=True``
reproduces the release's reshape for comparison. Readings, options and the bug: ``docs/paper-readings.md``,
"DSANet: readings" (D4-D8) and "DSANet: the released-code bug we do not copy".
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["SelfAttentionLayer", "conv_bn_relu", "reassemble_channels", "LGSA"]

_PAIRINGS = ("crossed", "like")


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """conv3×3 (padding 1, no bias) → BatchNorm → ReLU: the unit of the paper's LGSA conv pyramid (and of the
    release's UNet decoders and head; no equation of its own)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SelfAttentionLayer(nn.Module):
    """One single-head self-attention layer ``softmax(Q Kᵀ / √C) V`` (paper's stacked self-attention equation).

    Computed with :func:`torch.nn.functional.scaled_dot_product_attention` on one explicit head ``(B, 1, N, C)``
    (default scale ``1/√C``), so its fused flash kernels apply and memory stays linear in the number of tokens
    (the release's explicit ``N × N`` map is ~240 MB per layer per sample at 352 px).

    Args:
        channels: token width ``C``.
        residual: add the input to the attention output (``Z + Attn(Z)``; release: no).
        norm: pre-normalise the tokens with LayerNorm before the projections (release: no).

    Shapes: ``(B, N, C)`` → ``(B, N, C)``.
    """

    def __init__(self, channels: int, residual: bool = False, norm: bool = False) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be positive, got {channels}")
        self.residual = residual
        self.norm = nn.LayerNorm(channels) if norm else nn.Identity()
        self.query = nn.Linear(channels, channels)
        self.key = nn.Linear(channels, channels)
        self.value = nn.Linear(channels, channels)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        z = self.norm(tokens)
        # (B, 1, N, C): with an explicit head axis the fused (flash) kernels are eligible on CPU and GPU; 3-D
        # input falls back to the math path on CPU (measured 2.2x slower here, and quadratic memory).
        q, k, v = (proj(z).unsqueeze(1) for proj in (self.query, self.key, self.value))
        out = F.scaled_dot_product_attention(q, k, v).squeeze(1)
        return tokens + out if self.residual else out


def reassemble_channels(
    local: torch.Tensor, global_: torch.Tensor, pairing: str = "crossed"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel split-and-reassembly of one pyramid level (paper's LGSA reassembly equation).

    With ``L = [L₁ | L₂]`` and ``G = [G₁ | G₂]`` split into channel halves (local features first in every output):

    - ``"crossed"`` (paper, default): ``A = [L₁ | G₂]``, ``B = [L₂ | G₁]`` — each path mixes complementary halves;
    - ``"like"`` (release code): ``A = [L₁ | G₁]``, ``B = [L₂ | G₂]``.

    Args:
        local: ``(B, C, H, W)`` target-frame backbone features ``F_l``.
        global_: ``(B, C, H, W)`` global features ``F_g``.
        pairing: ``"crossed"`` or ``"like"``.

    Returns:
        Two ``(B, C, H, W)`` tensors, one per fused decoder.
    """
    if pairing not in _PAIRINGS:
        raise ValueError(f"pairing must be one of {_PAIRINGS}, got {pairing!r}")
    if local.shape != global_.shape:
        raise ValueError(f"local {tuple(local.shape)} and global {tuple(global_.shape)} features must match")
    half = local.shape[1] // 2
    l1, l2 = local[:, :half], local[:, half:]
    g1, g2 = global_[:, :half], global_[:, half:]
    if pairing == "crossed":
        return torch.cat([l1, g2], 1), torch.cat([l2, g1], 1)
    return torch.cat([l1, g1], 1), torch.cat([l2, g2], 1)


class LGSA(nn.Module):
    """Local-and-global semantic-aware module (paper's LGSA equations): stacked self-attention → global conv
    pyramid → channel split-and-reassembly with the local pyramid.

    Args:
        stage_channels: backbone stage widths ``(C₁, C₂, C₃, C₄)`` (``(256, 512, 1024, 2048)`` for Res2Net-50); the
            input ``F`` has ``C₁`` channels; every width must be even (channels are split in halves).
        num_layers: stacked attention layers (12 in the paper/release).
        attn_residual: residual connection around each attention layer (release: no).
        attn_norm: LayerNorm before each attention layer (release: no).
        pairing: ``"crossed"`` (paper, default) or ``"like"`` (release); see :func:`reassemble_channels`.
        reproduce_release_bug: reshape the attention output like the release (spatially scrambled).

    Examples::

        >>> lgsa = LGSA((32, 64, 128, 256), num_layers=2)
        >>> f = torch.rand(2, 32, 16, 16)
        >>> local = [torch.rand(2, c, 16 // 2**i, 16 // 2**i) for i, c in enumerate((32, 64, 128, 256))]
        >>> path_a, path_b = lgsa(f, local)
        >>> [tuple(t.shape) for t in path_a]
        [(2, 32, 16, 16), (2, 64, 8, 8), (2, 128, 4, 4), (2, 256, 2, 2)]

    Shapes: ``f``: ``(B, C₁, h, w)``; ``local``: four maps ``(B, Cₖ, h/2ᵏ⁻¹, w/2ᵏ⁻¹)`` → two such pyramids.
    """

    def __init__(
        self,
        stage_channels: Sequence[int] = (256, 512, 1024, 2048),
        num_layers: int = 12,
        attn_residual: bool = False,
        attn_norm: bool = False,
        pairing: str = "crossed",
        reproduce_release_bug: bool = False,
    ) -> None:
        super().__init__()
        stage_channels = tuple(int(c) for c in stage_channels)
        if len(stage_channels) != 4 or any(c < 2 or c % 2 for c in stage_channels):
            raise ValueError(f"stage_channels needs 4 even positive widths, got {stage_channels}")
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        if pairing not in _PAIRINGS:
            raise ValueError(f"pairing must be one of {_PAIRINGS}, got {pairing!r}")
        self.stage_channels = stage_channels
        self.pairing = pairing
        self.reproduce_release_bug = reproduce_release_bug
        c1 = stage_channels[0]
        self.attention = nn.ModuleList([SelfAttentionLayer(c1, attn_residual, attn_norm) for _ in range(num_layers)])
        stages = []
        in_ch = c1
        for k, out_ch in enumerate(stage_channels):
            stages.append(nn.Sequential(conv_bn_relu(in_ch, in_ch), conv_bn_relu(in_ch, out_ch, 1 if k == 0 else 2)))
            in_ch = out_ch
        self.stages = nn.ModuleList(stages)

    def attend(self, f: torch.Tensor) -> torch.Tensor:
        """Stacked self-attention equation over all positions of ``f`` ``(B, C, h, w)`` → ``(B, C, h, w)``."""
        b, c, h, w = f.shape
        tokens = f.flatten(2).transpose(1, 2)  # (B, hw, C)
        for layer in self.attention:
            tokens = layer(tokens)
        if self.reproduce_release_bug:
            return tokens.reshape(b, c, h, w)  # release: (hw, C) memory read as (C, h, w)
        return tokens.transpose(1, 2).reshape(b, c, h, w)

    def global_features(self, f: torch.Tensor) -> list[torch.Tensor]:
        """``F`` → attention → global pyramid ``F_g¹…⁴`` (paper's LGSA conv-pyramid step, "three conv layers")."""
        g = self.attend(f)
        out = []
        for stage in self.stages:
            g = stage(g)
            out.append(g)
        return out

    def forward(self, f: torch.Tensor, local: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if f.ndim != 4 or f.shape[1] != self.stage_channels[0]:
            raise ValueError(f"LGSA expects (B, {self.stage_channels[0]}, h, w) input, got {tuple(f.shape)}")
        if len(local) != 4:
            raise ValueError(f"LGSA needs 4 local feature maps, got {len(local)}")
        path_a, path_b = [], []
        for lk, gk in zip(local, self.global_features(f)):
            a, b = reassemble_channels(lk, gk, self.pairing)
            path_a.append(a)
            path_b.append(b)
        return path_a, path_b
