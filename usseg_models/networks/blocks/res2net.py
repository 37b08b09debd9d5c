"""Res2Net-50 v1b (26w×4s) backbone whose parameter names load ``res2net50_v1b_26w_4s-3cf99910.pth``.

Res2Net (Gao et al., "Res2Net: A New Multi-scale Backbone Architecture", TPAMI 2021) replaces the 3×3 convolution
of a ResNet bottleneck by ``scale`` groups of ``width`` channels processed hierarchically (paper Eq. 1):
``y_1 = x_1``-style split where ``y_i = K_i(x_i + y_{i-1})`` for ``1 < i < s`` and the last group is passed on
(or average-pooled in the first block of a stage). The "v1b" variant uses a deep stem (three 3×3 convolutions,
32-32-64) and average-pool downsampling in the projection shortcut.

DSANet (Zhou et al.) uses the four stage outputs of this backbone, ``256@H/4, 512@H/8, 1024@H/16, 2048@H/32``.

Weights are only ever read from a local file (``pretrained_path``); nothing is downloaded. Whether DSANet's
authors used them is unclear (``docs/paper-readings.md``, "DSANet: readings", D10).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence

import torch
import torch.nn as nn

from usseg_models.networks.pretrained import load_pretrained_state

__all__ = ["Bottle2neck", "Res2NetV1b", "load_res2net_weights"]

logger = logging.getLogger(__name__)


class Bottle2neck(nn.Module):
    """Res2Net bottleneck: 1×1 conv → ``scale`` hierarchical 3×3 groups (Res2Net Eq. 1) → 1×1 conv, + shortcut.

    Args:
        inplanes: input channels.
        planes: bottleneck planes; the block outputs ``planes * 4`` channels.
        stride: stride of the 3×3 group convolutions (and of the shortcut's average pool).
        downsample: optional shortcut projection.
        base_width: group width per 64 planes (26 for "26w").
        scale: number of groups (4 for "4s").
        stype: ``"stage"`` (first block of a stage: groups are not chained, last group is average-pooled)
            or ``"normal"``.

    Shapes: ``(B, inplanes, H, W)`` → ``(B, 4 * planes, H / stride, W / stride)``.
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        base_width: int = 26,
        scale: int = 4,
        stype: str = "normal",
    ) -> None:
        super().__init__()
        if scale < 2:
            raise ValueError(f"scale must be >= 2, got {scale}")
        if stype not in ("normal", "stage"):
            raise ValueError(f"stype must be 'normal' or 'stage', got {stype!r}")
        width = int(math.floor(planes * (base_width / 64.0)))
        if width < 1:
            raise ValueError(f"planes={planes} with base_width={base_width} gives a group width of 0")
        self.width = width
        self.scale = scale
        self.stype = stype
        self.nums = scale - 1
        self.conv1 = nn.Conv2d(inplanes, width * scale, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width * scale)
        self.pool = nn.AvgPool2d(kernel_size=3, stride=stride, padding=1) if stype == "stage" else nn.Identity()
        self.convs = nn.ModuleList(
            [nn.Conv2d(width, width, kernel_size=3, stride=stride, padding=1, bias=False) for _ in range(self.nums)]
        )
        self.bns = nn.ModuleList([nn.BatchNorm2d(width) for _ in range(self.nums)])
        self.conv3 = nn.Conv2d(width * scale, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        spx = torch.split(out, self.width, dim=1)
        parts = []
        sp = spx[0]
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            sp = spx[i] if (i == 0 or self.stype == "stage") else sp + spx[i]
            sp = self.relu(bn(conv(sp)))
            parts.append(sp)
        parts.append(self.pool(spx[self.nums]))
        out = self.bn3(self.conv3(torch.cat(parts, dim=1)))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Res2NetV1b(nn.Module):
    """Res2Net v1b backbone returning the four stage outputs (no classifier in ``forward``); every block is a
    :class:`Bottle2neck` (Res2Net Eq. 1), the v1b stem and shortcuts have no equation of their own.

    The default arguments build Res2Net-50 v1b 26w×4s exactly as distributed; its parameter names
    (``conv1.0``, ``conv1.1``, ..., ``layer1.0.convs.0``, ``layer1.0.bns.0``, ``layer1.0.downsample.1``) match
    ``res2net50_v1b_26w_4s-3cf99910.pth``. The ImageNet classifier (``fc``, average pool) is not built: a
    segmentation network never uses it, and unused parameters would break DistributedDataParallel. The file's
    ``fc.*`` entries are ignored when loading.

    Args:
        in_channels: input channels (3 for ImageNet weights).
        layers: blocks per stage (``(3, 4, 6, 3)`` for Res2Net-50).
        planes: bottleneck planes per stage; stage outputs are ``4 * planes``.
        stem_width: width of the first two stem convolutions; the stem outputs ``2 * stem_width`` channels.
        base_width: Res2Net group width per 64 planes.
        scale: Res2Net scale (groups per block).
        pretrained_path: optional local checkpoint to load (strict on every key except ``fc.*``).

    Examples::

        >>> net = Res2NetV1b()
        >>> feats = net(torch.randn(1, 3, 352, 352))
        >>> [tuple(f.shape) for f in feats]
        [(1, 256, 88, 88), (1, 512, 44, 44), (1, 1024, 22, 22), (1, 2048, 11, 11)]
    """

    def __init__(
        self,
        in_channels: int = 3,
        layers: Sequence[int] = (3, 4, 6, 3),
        planes: Sequence[int] = (64, 128, 256, 512),
        stem_width: int = 32,
        base_width: int = 26,
        scale: int = 4,
        pretrained_path: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be positive, got {in_channels}")
        if len(layers) != 4 or len(planes) != 4:
            raise ValueError(f"layers and planes need 4 entries each, got {tuple(layers)} and {tuple(planes)}")
        if any(n < 1 for n in layers) or any(p < 1 for p in planes) or stem_width < 1:
            raise ValueError("layers, planes and stem_width must be positive")
        self.out_channels = tuple(int(p) * Bottle2neck.expansion for p in planes)
        self.base_width = base_width
        self.scale = scale
        self.inplanes = 2 * stem_width
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, stem_width, 3, 2, 1, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem_width, stem_width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem_width, 2 * stem_width, 3, 1, 1, bias=False),
        )
        self.bn1 = nn.BatchNorm2d(2 * stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(planes[0], layers[0], stride=1)
        self.layer2 = self._make_layer(planes[1], layers[1], stride=2)
        self.layer3 = self._make_layer(planes[2], layers[2], stride=2)
        self.layer4 = self._make_layer(planes[3], layers[3], stride=2)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if pretrained_path is not None:
            load_res2net_weights(self, pretrained_path)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottle2neck.expansion:
            downsample = nn.Sequential(
                nn.AvgPool2d(kernel_size=stride, stride=stride, ceil_mode=True, count_include_pad=False),
                nn.Conv2d(self.inplanes, planes * Bottle2neck.expansion, kernel_size=1, stride=1, bias=False),
                nn.BatchNorm2d(planes * Bottle2neck.expansion),
            )
        kw = dict(base_width=self.base_width, scale=self.scale)
        blocks_list = [Bottle2neck(self.inplanes, planes, stride, downsample, stype="stage", **kw)]
        self.inplanes = planes * Bottle2neck.expansion
        blocks_list += [Bottle2neck(self.inplanes, planes, **kw) for _ in range(1, blocks)]
        return nn.Sequential(*blocks_list)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, C, H, W)`` → four stage outputs at strides 4, 8, 16, 32 with ``4 * planes`` channels."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        f1 = self.layer1(x)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [f1, f2, f3, f4]


def load_res2net_weights(model: nn.Module, path: str | os.PathLike, prefix: str = "") -> None:
    """Load a Res2Net state dict from a local file with strict name and shape matching.

    ``fc.*`` (ImageNet classifier) is ignored. ``num_batches_tracked`` buffers absent from older files are
    tolerated (they do not affect inference). Any other missing, unexpected or wrongly shaped key raises
    :class:`~usseg_models.errors.CheckpointError` listing them.

    Args:
        model: the :class:`Res2NetV1b` to fill.
        path: local ``.pth`` file holding a state dict (optionally under ``"state_dict"``/``"model"``).
        prefix: prefix to strip from the file's keys (for example ``"module."``); ``"module."`` is always stripped.
    """
    load_pretrained_state(model, path, "the Res2Net backbone", strip_prefixes=(prefix, "module."))
