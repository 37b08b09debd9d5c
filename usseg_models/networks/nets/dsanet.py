"""DSANet: Dual Semantic-Aware Network for noise-suppressed ultrasound video segmentation.

Zhou et al., "Dual Semantic-Aware Network for Noise Suppressed Ultrasound Video Segmentation", arXiv:2507.07443.
Where the paper is ambiguous or the authors' released code differs from it, the choices are listed in
``docs/paper-readings.md`` (section "DSANet: readings"): the paper's reading is the default where the paper states
one that can be implemented, the release's otherwise (e.g. AFSA's similarity), and the alternatives are options.
The release's scrambling reshape after LGSA's attention is not copied ("DSANet: the released-code bug we do not
copy").
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from usseg_models.networks.blocks.afsa import AFSA
from usseg_models.networks.blocks.lgsa import LGSA, conv_bn_relu
from usseg_models.networks.blocks.res2net import Res2NetV1b

__all__ = ["UNetDecoder", "DSANet"]


class UNetDecoder(nn.Module):
    """UNet-style decoder over a four-level pyramid: three times (transposed conv 2×2 → concat skip →
    two conv3×3-BN-ReLU), ``C₄@h/8 → C₃ → C₂ → C₁@h``.

    The paper gives the decoders no equation (overview figure only); this is the authors' release architecture
    (``docs/paper-readings.md``, "DSANet: data flow", steps 2 and 4).

    Args:
        channels: pyramid widths ``(C₁, C₂, C₃, C₄)`` from fine to coarse.

    Shapes: four maps ``(B, Cₖ, h/2ᵏ⁻¹, w/2ᵏ⁻¹)`` → ``(B, C₁, h, w)``.
    """

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        channels = tuple(channels)
        self.ups = nn.ModuleList()
        self.convs = nn.ModuleList()
        for fine, coarse in zip(reversed(channels[:-1]), reversed(channels[1:])):
            self.ups.append(nn.ConvTranspose2d(coarse, fine, kernel_size=2, stride=2))
            self.convs.append(nn.Sequential(conv_bn_relu(2 * fine, fine), conv_bn_relu(fine, fine)))

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        for up, conv, skip in zip(self.ups, self.convs, reversed(feats[:-1])):
            x = conv(torch.cat([up(x), skip], dim=1))
        return x


class DSANet(nn.Module):
    """DSANet for 2D ultrasound cines: segments the target frame ``t`` using frames ``t-1`` and ``t-2``.

    Data flow (paper overview figure; ``docs/paper-readings.md``, "DSANet: data flow"):

    1. a shared Res2Net-50 v1b backbone encodes each frame into ``C₁@H/4 … C₄@H/32`` (``256 … 2048``);
    2. each frame **position** (t, t-1, t-2) has its own UNet decoder (separate weights) → ``C₁@H/4``;
    3. AFSA twice (paper's AFSA equations): ``memory = AFSA(d(t-1), d(t-2))``; ``F = AFSA(d(t), memory)``;
    4. LGSA (paper's LGSA equations): attention + conv pyramid on ``F``, reassembled with the target's backbone
       pyramid into two paths;
    5. two fused UNet decoders → concat ``2·C₁`` → conv3×3-BN-ReLU → ``C₁/2`` → 1×1 conv → logits at ``H/4``,
       upsampled bilinearly (``align_corners=True``) to ``H × W``;
    6. auxiliary heads (training): ``p(t-1)`` = 1×1 conv on ``memory``; ``p(t-2)`` = 1×1 conv on ``d(t-2)``.

    Ablations (paper's four rows: ``use_afsa``/``use_lgsa`` = F/F baseline, T/F, F/T, T/T full):

    - ``use_afsa=False``: no AFSA is built; ``F = d(t)`` (the target decoder's output goes straight on) and the
      auxiliary ``p(t-1)`` head reads ``d(t-1)`` instead of the memory. The past frames then only receive auxiliary
      supervision, so in eval mode their decoders are skipped.
    - ``use_lgsa=False``: no attention, conv pyramid, reassembly or fused decoders are built; the head
      (conv3×3-BN-ReLU ``C₁ → C₁/2``, 1×1 conv) reads ``F`` directly.

    Feature reuse: :meth:`encode_frame` runs only the shared backbone, whose output depends on the frame alone, so a
    streaming predictor can compute it once per frame and reuse it for the (up to) three targets whose window holds
    that frame. The per-frame decoders are tied to the frame's **position** in the window (a frame is decoded by the
    t-decoder as a target, by the t-1 decoder one step later, ...), so their outputs cannot be reused across targets;
    :meth:`decode_from_features` recomputes them from the cached backbone features.

    Args:
        spatial_dims: must be 2.
        in_channels: channels per frame (3: grey replicated, so ImageNet weights load).
        out_channels: logit channels (1 for binary segmentation).
        backbone_layers: Res2Net blocks per stage.
        backbone_planes: Res2Net bottleneck planes per stage (stage widths are ``4 ×`` these).
        stem_width: Res2Net deep-stem width (stem outputs ``2 ×``).
        base_width: Res2Net group width per 64 planes (26).
        scale: Res2Net scale (4).
        num_attention_layers: stacked LGSA attention layers (12).
        use_afsa: build and use AFSA (ablation switch).
        use_lgsa: build and use LGSA (ablation switch).
        similarity: AFSA similarity, ``"channel_cosine"`` (default) or ``"spatial_cosine"``.
        sigmoid_gate: AFSA sigmoid on the similarity (default ``True``).
        channel_attention: AFSA channel attention, ``"cbam"`` (default) or ``"avg"``.
        pairing: LGSA reassembly, ``"crossed"`` (paper, default) or ``"like"`` (release).
        attn_residual: residual around each attention layer (default ``False`` as paper/release).
        attn_norm: LayerNorm before each attention layer (default ``False`` as paper/release).
        reproduce_release_bug: reproduce the release's scrambling reshape after attention (default ``False``).
        pretrained_path: local Res2Net ImageNet checkpoint (``res2net50_v1b_26w_4s-3cf99910.pth``) for the backbone;
            strict key matching, never downloaded.

    Examples::

        >>> net = DSANet(backbone_layers=(1, 1, 1, 1), backbone_planes=(8, 16, 32, 64), stem_width=8,
        ...              num_attention_layers=2).eval()
        >>> x = torch.rand(2, 3, 3, 64, 64)   # (B, T=3: t, t-1, t-2, C, H, W)
        >>> net(x).shape                        # eval: target logits
        torch.Size([2, 1, 64, 64])
        >>> [tuple(o.shape) for o in net(x, return_aux=True)]   # target, p(t-1), p(t-2)
        [(2, 1, 64, 64), (2, 1, 64, 64), (2, 1, 64, 64)]

    Shapes: input ``(B, 3, C, H, W)`` with ``H, W`` divisible by 32 → ``(B, out_channels, H, W)`` (eval) or a tuple
    of three such tensors (training mode or ``return_aux=True``).
    """

    num_frames = 3
    size_divisor = 32

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1,
        backbone_layers: Sequence[int] = (3, 4, 6, 3),
        backbone_planes: Sequence[int] = (64, 128, 256, 512),
        stem_width: int = 32,
        base_width: int = 26,
        scale: int = 4,
        num_attention_layers: int = 12,
        use_afsa: bool = True,
        use_lgsa: bool = True,
        similarity: str = "channel_cosine",
        sigmoid_gate: bool = True,
        channel_attention: str = "cbam",
        pairing: str = "crossed",
        attn_residual: bool = False,
        attn_norm: bool = False,
        reproduce_release_bug: bool = False,
        pretrained_path: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"DSANet is 2D (frames of a cine): spatial_dims must be 2, got {spatial_dims}")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"in_channels and out_channels must be positive, got {in_channels}, {out_channels}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.use_afsa = use_afsa
        self.use_lgsa = use_lgsa
        self.backbone = Res2NetV1b(
            in_channels, backbone_layers, backbone_planes, stem_width, base_width, scale, pretrained_path
        )
        widths = self.backbone.out_channels
        if any(c % 2 for c in widths) or widths[0] < 2:
            raise ValueError(f"backbone stage widths must be even and >= 2, got {widths}")
        c1 = widths[0]
        self.frame_decoders = nn.ModuleList([UNetDecoder(widths) for _ in range(self.num_frames)])
        if use_afsa:
            kw = dict(similarity=similarity, sigmoid_gate=sigmoid_gate, channel_attention=channel_attention)
            self.afsa_memory = AFSA(c1, **kw)
            self.afsa_target = AFSA(c1, **kw)
        if use_lgsa:
            self.lgsa = LGSA(widths, num_attention_layers, attn_residual, attn_norm, pairing, reproduce_release_bug)
            self.fused_decoders = nn.ModuleList([UNetDecoder(widths) for _ in range(2)])
            head_in = 2 * c1
        else:
            head_in = c1
        self.head = nn.Sequential(conv_bn_relu(head_in, max(1, c1 // 2)), nn.Conv2d(max(1, c1 // 2), out_channels, 1))
        self.aux_head_t1 = nn.Conv2d(c1, out_channels, 1)
        self.aux_head_t2 = nn.Conv2d(c1, out_channels, 1)

    @torch.jit.unused
    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` naming the problem for a clip tensor that does not fit the network."""
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"DSANet expects a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 5:
            raise ValueError(f"DSANet expects (B, 3, C, H, W) clips, got {x.ndim}-D input of shape {tuple(x.shape)}")
        _, t, c, h, w = x.shape
        if t != self.num_frames:
            raise ValueError(f"DSANet expects {self.num_frames} frames (t, t-1, t-2) on axis 1, got {t}")
        if c != self.in_channels:
            raise ValueError(f"DSANet expects {self.in_channels} channels per frame on axis 2, got {c}")
        if h % self.size_divisor or w % self.size_divisor or h == 0 or w == 0:
            raise ValueError(f"spatial size {h}x{w} must be positive multiples of {self.size_divisor}")
        # The finiteness check reads data, so it runs eagerly only (not under tracing, torch.export/compile).
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()) and not torch.isfinite(x).all():
            raise ValueError("DSANet input contains NaN or infinite values")

    def encode_frame(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Shared backbone on independent frames: ``(N, C, H, W)`` → ``[C₁@H/4, C₂@H/8, C₃@H/16, C₄@H/32]``.

        The result depends on the frame alone and can be cached and reused for every target window holding it.
        """
        return self.backbone(frames)

    def decode_from_features(
        self,
        feats_t: Sequence[torch.Tensor],
        feats_t1: Sequence[torch.Tensor],
        feats_t2: Sequence[torch.Tensor],
        output_size: Sequence[int],
        return_aux: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Everything after the backbone, from the three frames' backbone pyramids (see :meth:`encode_frame`).

        Args:
            feats_t, feats_t1, feats_t2: backbone pyramids of frames t, t-1, t-2 (each four ``(B, Cₖ, ·, ·)`` maps).
            output_size: ``(H, W)`` of the logits (the input frame size).
            return_aux: also return the auxiliary ``p(t-1)``, ``p(t-2)`` logits.

        Returns:
            ``(B, out_channels, H, W)`` target logits, or ``(target, aux_t1, aux_t2)``.
        """
        size = (int(output_size[0]), int(output_size[1]))
        d_t = self.frame_decoders[0](feats_t)
        need_past = self.use_afsa or return_aux
        memory = d_t2 = None
        if need_past:
            d_t1 = self.frame_decoders[1](feats_t1)
            d_t2 = self.frame_decoders[2](feats_t2)
            memory = self.afsa_memory(d_t1, d_t2) if self.use_afsa else d_t1
        fused = self.afsa_target(d_t, memory) if self.use_afsa else d_t
        if self.use_lgsa:
            path_a, path_b = self.lgsa(fused, feats_t)
            fused = torch.cat([self.fused_decoders[0](path_a), self.fused_decoders[1](path_b)], dim=1)
        target = self._upsample(self.head(fused), size)
        if not return_aux:
            return target
        return target, self._upsample(self.aux_head_t1(memory), size), self._upsample(self.aux_head_t2(d_t2), size)

    @staticmethod
    def _upsample(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=True)

    def forward(
        self, x: torch.Tensor, return_aux: bool | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(B, 3, C, H, W)`` clip (t, t-1, t-2) → target logits, or ``(target, p(t-1), p(t-2))`` when
        ``return_aux`` (default: ``self.training``)."""
        self.check_input(x)
        if return_aux is None:
            return_aux = self.training
        b, t, c, h, w = x.shape
        feats = [f.unflatten(0, (b, t)) for f in self.encode_frame(x.flatten(0, 1))]
        per_frame = [[f[:, i] for f in feats] for i in range(t)]
        return self.decode_from_features(per_frame[0], per_frame[1], per_frame[2], (h, w), return_aux)
