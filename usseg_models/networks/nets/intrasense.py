"""IntraSense-Net (Dai, Lai, Kong): ResNet-50 encoder, GCP and CDR blocks, U-Net-style decoder.

The readings chosen where the paper is ambiguous, and the options that switch them, are listed in
``docs/paper-readings.md``, sections "IntraSense-Net: readings" and "IntraSense-Net: equation numbering".

Equation numbers used in this package (the paper gives no code; the numbering follows the order in which the
method section introduces the formulas; where the paper's own numbers differ, the formula is authoritative):

===== ========================================================== ======================================
Eq.   formula                                                    where
===== ========================================================== ======================================
1     ``Q = W_q F, K = W_k F, V = W_v F`` (1x1 convs)            :class:`~..blocks.gcp.NonLocalAttention`
2     ``A = softmax(Q Kᵀ / √d)`` over all H·W positions          :class:`~..blocks.gcp.NonLocalAttention`
3     ``F_nl = A V + F_in``                                      :class:`~..blocks.gcp.NonLocalAttention`
4     ``A_s = σ(conv([avg_c F_nl; max_c F_nl]))``                :class:`~..blocks.gcp.SpatialAttention`
5     ``F_att = A_s ⊙ F_nl``                                     :class:`~..blocks.gcp.SpatialAttention`
6     ``H = -Σ_c p_c log p_c``, ``p = softmax_c(F_att)``         :func:`~..blocks.gcp.normalized_channel_entropy`
7     ``M = H/log C < τ``; standardise F_att where M             :class:`~..blocks.gcp.EntropyRegionWhitening`
8     ``F_dec = F - Proj(F)`` (top-k SVD directions removed)     :func:`~..blocks.cdr.channel_decouple`
9     ``L_IW = α (rank(F) - rank(F_dec)) + β dist(F, F_dec)``    :class:`usseg_models.losses.IntraSenseLoss`
10    ``s = GAP(F_dec)``                                         :class:`~..blocks.cdr.CDR`
11    ``w = σ(MLP(s)), F_out = w ⊙ F_dec``                       :class:`~..blocks.cdr.CDR`
12    ``L = L_CE + L_Dice + λ L_IW``                             :class:`usseg_models.losses.IntraSenseLoss`
===== ========================================================== ======================================

Input sizes: height and width must be at least 32 (one cell of the stride-32 encoder); other sizes that are not
multiples of 32 are padded internally (edge replication) to the next multiple of 32 and the logits are cropped
back, so the output always has the input's spatial size.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.nets.basic_unet import UpCat
from monai.networks.nets.resnet import ResNet, ResNetBlock, ResNetBottleneck

from usseg_models.networks.blocks.cdr import CDR
from usseg_models.networks.blocks.gcp import GCP
from usseg_models.networks.pretrained import load_pretrained_state

__all__ = ["IntraSenseNet", "STRIDE"]

logger = logging.getLogger(__name__)

STRIDE = 32  # total downsampling of the encoder (stem conv 2 × max-pool 2 × three stride-2 stages)

_BLOCKS = {"bottleneck": ResNetBottleneck, "basic": ResNetBlock}


def _check_stages(name: str, stages: Sequence[int]) -> tuple[int, ...]:
    stages = tuple(int(s) for s in stages)
    bad = [s for s in stages if not 0 <= s <= 4]
    if bad or len(set(stages)) != len(stages):
        raise ValueError(f"{name} must be distinct encoder stage indices in 0..4 (4 = deepest), got {stages}")
    return stages


class IntraSenseNet(nn.Module):
    """IntraSense-Net for binary segmentation of ultrasound images (paper Eqs. 1-11; loss Eqs. 9, 12 in
    :class:`usseg_models.losses.IntraSenseLoss`).

    Encoder: MONAI :class:`~monai.networks.nets.resnet.ResNet` (stem stride 2 + max-pool, as torchvision), whose
    parameter names match torchvision's, so an ImageNet ResNet-50 state dict loads through ``pretrained_path``.
    Stage ``i`` features: 0 = stem (H/2), 1..4 = ``layer1..layer4`` (H/4 .. H/32). At each stage listed in
    ``gcp_stages``/``cdr_stages`` the feature map passes GCP then CDR before it is used as a skip (or as the
    decoder's input for stage 4). Decoder: four :class:`~monai.networks.nets.basic_unet.UpCat` steps (bilinear
    upsampling, concatenation with the skip, two conv-norm-act) and a last upsampling to full resolution,
    followed by a 1x1 convolution to ``out_channels`` logits.

    Decoder (no equation in the paper, "U-Net style with skips") and placement of the blocks are this project's
    readings (``docs/paper-readings.md``, "IntraSense-Net: readings", I2 and I16).

    Table 4 ablation rows: baseline ``use_gcp=False, use_cdr=False``; "+GCP w/o entropy"
    ``use_gcp=True, gcp_entropy=False, use_cdr=False``; "+GCP" ``use_gcp=True, use_cdr=False``;
    "+CDR" ``use_gcp=False, use_cdr=True``; full model: all ``True`` (default).

    Args:
        spatial_dims: must be 2.
        in_channels: input channels (3: grey replicated, ImageNet normalisation, so ImageNet weights load).
        out_channels: logit channels (1 for binary masks; foreground = logit > 0).
        encoder_block: ``"bottleneck"`` (ResNet-50) or ``"basic"``.
        encoder_layers: residual blocks per stage (ResNet-50: ``(3, 4, 6, 3)``).
        encoder_widths: base widths per stage (ResNet-50: ``(64, 128, 256, 512)``; bottleneck output ×4).
        decoder_channels: 5 widths: decoder stages at H/16, H/8, H/4, H/2 and the full-resolution head.
        use_gcp: insert GCP blocks (Eqs. 1-7).
        gcp_entropy: enable GCP's entropy-based region whitening (Eqs. 6-7).
        use_cdr: insert CDR blocks (Eqs. 8, 10-11) and expose ``(F, F_dec)`` for ``L_IW``.
        gcp_stages: encoder stages that get a GCP block (default: deepest, ``(4,)``).
        cdr_stages: encoder stages that get a CDR block (default ``(4,)``, applied after GCP).
        gcp_key_reduction: query/key width ``C // gcp_key_reduction``.
        gcp_tau: normalised-entropy threshold τ (paper: 0.5).
        gcp_whitening_stats: ``"region"`` or ``"instance"`` (see :mod:`usseg_models.networks.blocks.gcp`).
        gcp_temperature: softmax temperature of GCP's channel entropy (1 = the paper's literal reading).
        cdr_k: principal directions removed by CDR.
        cdr_reduction: SE bottleneck ratio of CDR.
        cdr_detach_basis: stop the gradient through CDR's SVD basis (see :mod:`usseg_models.networks.blocks.cdr`).
        act: decoder activation (MONAI name or ``(name, kwargs)``).
        norm: decoder normalisation (MONAI name or ``(name, kwargs)``).
        pretrained_path: local file with a torchvision-named ImageNet ResNet state dict (``fc.*`` ignored);
            loaded strictly into the encoder, :class:`~usseg_models.errors.CheckpointError` on any mismatch.
            Nothing is ever downloaded.

    Examples::

        >>> net = IntraSenseNet(encoder_layers=(1, 1, 1, 1), encoder_widths=(8, 16, 32, 64))
        >>> net(torch.randn(2, 3, 64, 64)).shape  # (B, C_in, H, W) -> (B, 1, H, W) logits
        torch.Size([2, 1, 64, 64])
        >>> logits, feats = net(torch.randn(2, 3, 64, 64), return_features=True)
        >>> [tuple(f.shape) for f in feats["cdr"][0]]  # (F, F_dec) per CDR block, at that stage's resolution
        [(2, 256, 2, 2), (2, 256, 2, 2)]
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1,
        encoder_block: str = "bottleneck",
        encoder_layers: Sequence[int] = (3, 4, 6, 3),
        encoder_widths: Sequence[int] = (64, 128, 256, 512),
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        use_gcp: bool = True,
        gcp_entropy: bool = True,
        use_cdr: bool = True,
        gcp_stages: Sequence[int] = (4,),
        cdr_stages: Sequence[int] = (4,),
        gcp_key_reduction: int = 8,
        gcp_tau: float = 0.5,
        gcp_whitening_stats: str = "region",
        gcp_temperature: float = 1.0,
        cdr_k: int = 1,
        cdr_reduction: int = 16,
        cdr_detach_basis: bool = True,
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple = "batch",
        pretrained_path: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"IntraSenseNet is a 2D network: spatial_dims must be 2, got {spatial_dims}")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) must be positive")
        if encoder_block not in _BLOCKS:
            raise ValueError(f"encoder_block must be one of {sorted(_BLOCKS)}, got {encoder_block!r}")
        if len(encoder_layers) != 4 or any(int(n) < 1 for n in encoder_layers):
            raise ValueError(f"encoder_layers must be 4 positive block counts, got {tuple(encoder_layers)}")
        if len(encoder_widths) != 4 or any(int(c) < 1 for c in encoder_widths):
            raise ValueError(f"encoder_widths must be 4 positive widths, got {tuple(encoder_widths)}")
        if len(decoder_channels) != 5 or any(int(c) < 1 for c in decoder_channels):
            raise ValueError(f"decoder_channels must be 5 positive widths, got {tuple(decoder_channels)}")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.use_gcp = bool(use_gcp)
        self.use_cdr = bool(use_cdr)
        self.gcp_stages = _check_stages("gcp_stages", gcp_stages) if use_gcp else ()
        self.cdr_stages = _check_stages("cdr_stages", cdr_stages) if use_cdr else ()

        block = _BLOCKS[encoder_block]
        self.encoder = ResNet(
            block=block, layers=[int(n) for n in encoder_layers], block_inplanes=[int(c) for c in encoder_widths],
            spatial_dims=2, n_input_channels=in_channels, conv1_t_size=7, conv1_t_stride=2,
            shortcut_type="B", feed_forward=False, bias_downsample=False,
        )
        enc_ch = [int(encoder_widths[0])] + [int(c) * block.expansion for c in encoder_widths]
        self.encoder_channels = tuple(enc_ch)

        self.gcp = nn.ModuleDict(
            {
                str(s): GCP(
                    enc_ch[s], key_reduction=gcp_key_reduction, entropy_whitening=gcp_entropy, tau=gcp_tau,
                    whitening_stats=gcp_whitening_stats, entropy_temperature=gcp_temperature,
                )
                for s in self.gcp_stages
            }
        )
        self.cdr = nn.ModuleDict(
            {str(s): CDR(enc_ch[s], k=cdr_k, reduction=cdr_reduction, detach_basis=cdr_detach_basis)
             for s in self.cdr_stages}
        )

        dec = [int(c) for c in decoder_channels]
        up = dict(act=act, norm=norm, bias=False, upsample="nontrainable", pre_conv=None, interp_mode="bilinear",
                  align_corners=False)
        self.decoder = nn.ModuleList(
            [
                UpCat(2, enc_ch[4], enc_ch[3], dec[0], **up),  # H/32 -> H/16
                UpCat(2, dec[0], enc_ch[2], dec[1], **up),  # -> H/8
                UpCat(2, dec[1], enc_ch[1], dec[2], **up),  # -> H/4
                UpCat(2, dec[2], enc_ch[0], dec[3], **up),  # -> H/2
                UpCat(2, dec[3], 0, dec[4], **up),  # -> H (no skip)
            ]
        )
        self.head = nn.Conv2d(dec[4], out_channels, kernel_size=1)

        if pretrained_path is not None:
            self.load_pretrained_encoder(pretrained_path)

    def load_pretrained_encoder(self, path: str | os.PathLike) -> None:
        """Load a torchvision-named ResNet state dict (ImageNet ResNet-50 for the paper configuration).

        ``fc.*`` keys are ignored, a missing ``*.num_batches_tracked`` is tolerated (older torchvision files lack
        it); any other missing, unexpected or shape-mismatched key raises :class:`CheckpointError` listing them.
        A dict with a ``state_dict`` entry is unwrapped first.
        """
        load_pretrained_state(self.encoder, path, "the IntraSenseNet encoder")

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4:
            raise ValueError(f"IntraSenseNet expects (B, C, H, W) input, got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"IntraSenseNet expects {self.in_channels} input channels (grey replicated to 3 with ImageNet "
                f"normalisation), got {x.shape[1]} (input shape {tuple(x.shape)})"
            )
        if min(x.shape[2:]) < STRIDE:
            raise ValueError(
                f"IntraSenseNet needs height and width >= {STRIDE} (encoder stride); got {tuple(x.shape[2:])}. "
                f"Other sizes are padded to a multiple of {STRIDE} internally."
            )

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, list[tuple[torch.Tensor, torch.Tensor]]]]:
        """Segment a batch.

        Args:
            x: ``(B, in_channels, H, W)`` with ``H, W >= 32``.
            return_features: also return ``{"cdr": [(F, F_dec), ...]}``, one pair per CDR block in stage order
                (each ``(B, C_s, H_s, W_s)`` at the padded stage resolution), for ``L_IW``; the list is empty
                when ``use_cdr=False``.

        Returns:
            ``(B, out_channels, H, W)`` logits, or ``(logits, features)`` with ``return_features=True``.
        """
        self._check_input(x)
        h, w = x.shape[2:]
        pad_h, pad_w = (-h) % STRIDE, (-w) % STRIDE
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")

        enc = self.encoder
        feats = [enc.act(enc.bn1(enc.conv1(x)))]
        y = enc.maxpool(feats[0])
        for layer in (enc.layer1, enc.layer2, enc.layer3, enc.layer4):
            y = layer(y)
            feats.append(y)

        pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
        for s in range(5):
            key = str(s)
            if key in self.gcp:
                feats[s] = self.gcp[key](feats[s])
            if key in self.cdr:
                feats[s], pair = self.cdr[key](feats[s], return_features=True)
                pairs.append(pair)

        y = feats[4]
        for i, up in enumerate(self.decoder[:4]):
            y = up(y, feats[3 - i])
        y = self.decoder[4](y, None)
        logits = self.head(y)[:, :, :h, :w]
        if return_features:
            return logits, {"cdr": pairs}
        return logits
