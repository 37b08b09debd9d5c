"""The one table of network presets: name and configuration → constructor arguments and input size.

``paper`` is the faithful default, ``small`` the narrow variant for CPU tests and the sample app. The networks
themselves only take constructor arguments; the square input size preprocessing resizes to lives here, next to
them, and never reaches a constructor.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Preset", "PRESETS", "get_preset"]


@dataclass(frozen=True)
class Preset:
    """Constructor keyword arguments of one network configuration plus its square input size (pixels)."""

    kwargs: dict[str, Any] = field(default_factory=dict)
    spatial_size: int = 64


PRESETS: dict[str, dict[str, Preset]] = {
    "dsanet": {
        # Paper / released code: Res2Net-50 v1b 26w×4s, 12 attention layers, 352 px (≈ 306 M parameters).
        "paper": Preset(
            dict(
                spatial_dims=2, in_channels=3, out_channels=1, backbone_layers=(3, 4, 6, 3),
                backbone_planes=(64, 128, 256, 512), stem_width=32, base_width=26, scale=4, num_attention_layers=12,
            ),
            spatial_size=352,
        ),
        # CPU tests and the sample app: narrow Res2Net (one block per stage, widths 8..64), 2 attention layers.
        "small": Preset(
            dict(
                spatial_dims=2, in_channels=3, out_channels=1, backbone_layers=(1, 1, 1, 1),
                backbone_planes=(8, 16, 32, 64), stem_width=8, base_width=26, scale=4, num_attention_layers=2,
            ),
            spatial_size=64,
        ),
    },
    "intrasense": {
        # Paper: torchvision-compatible ResNet-50, GCP + CDR at the deepest stage, 256 px input.
        "paper": Preset(
            dict(
                spatial_dims=2, in_channels=3, out_channels=1, encoder_block="bottleneck",
                encoder_layers=(3, 4, 6, 3), encoder_widths=(64, 128, 256, 512),
                decoder_channels=(256, 128, 64, 32, 16),
            ),
            spatial_size=256,
        ),
        # Narrow, shallow variant for CPU tests and quick checks (trains a few steps in seconds on 2 cores).
        "small": Preset(
            dict(
                spatial_dims=2, in_channels=3, out_channels=1, encoder_block="bottleneck",
                encoder_layers=(1, 1, 1, 1), encoder_widths=(8, 16, 32, 64), decoder_channels=(64, 32, 16, 16, 8),
            ),
            spatial_size=64,
        ),
    },
    "unet": {
        # MONAI UNet baseline (Ronneberger-style widths) at IntraSense-Net's 256 px, same training budget.
        "paper": Preset(
            dict(
                spatial_dims=2, in_channels=3, out_channels=1, channels=(64, 128, 256, 512, 1024),
                strides=(2, 2, 2, 2), num_res_units=0,
            ),
            spatial_size=256,
        ),
        "small": Preset(
            dict(
                spatial_dims=2, in_channels=3, out_channels=1, channels=(8, 16, 32, 64), strides=(2, 2, 2),
                num_res_units=0,
            ),
            spatial_size=64,
        ),
    },
}


def get_preset(name: str, config: str = "paper") -> Preset:
    """A deep copy of the preset ``config`` of network ``name`` (raises ``ValueError`` naming the choices)."""
    if name not in PRESETS:
        raise ValueError(f"unknown network {name!r}; expected one of {sorted(PRESETS)}")
    table = PRESETS[name]
    if config not in table:
        raise ValueError(f"unknown configuration {config!r} for {name}; expected one of {sorted(table)}")
    return copy.deepcopy(table[config])
