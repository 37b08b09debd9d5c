"""Build the project's networks by name and configuration (``paper`` = faithful default, ``small`` = CPU tests).

Each network module defines ``CONFIGS = {"paper": {...}, "small": {...}}``; a configuration holds the
constructor keyword arguments plus ``spatial_size`` (the square input size preprocessing resizes to).
The MONAI ``UNet`` baseline is configured here so that it trains under the same budget as IntraSense-Net.
"""

from __future__ import annotations

import copy
import importlib
from typing import Any

import torch.nn as nn

__all__ = ["NETWORK_MODULES", "UNET_CONFIGS", "get_config", "build_network", "network_spatial_size"]

# network name -> (module path, class name)
NETWORK_MODULES = {
    "dsanet": ("usseg_models.networks.nets.dsanet", "DSANet"),
    "intrasense": ("usseg_models.networks.nets.intrasense", "IntraSenseNet"),
}

UNET_CONFIGS: dict[str, dict[str, Any]] = {
    # MONAI UNet baseline (Ronneberger-style widths) at IntraSense-Net's 256 px.
    "paper": dict(
        spatial_dims=2, in_channels=3, out_channels=1, channels=(64, 128, 256, 512, 1024), strides=(2, 2, 2, 2),
        num_res_units=0, spatial_size=256,
    ),
    "small": dict(
        spatial_dims=2, in_channels=3, out_channels=1, channels=(8, 16, 32, 64), strides=(2, 2, 2),
        num_res_units=0, spatial_size=64,
    ),
}


def get_config(name: str, config: str = "paper") -> dict[str, Any]:
    """Return a copy of the named configuration (constructor kwargs + ``spatial_size``)."""
    if name == "unet":
        table = UNET_CONFIGS
    elif name in NETWORK_MODULES:
        module_path, _ = NETWORK_MODULES[name]
        table = importlib.import_module(module_path).CONFIGS
    else:
        raise ValueError(f"unknown network {name!r}; expected one of {sorted([*NETWORK_MODULES, 'unet'])}")
    if config not in table:
        raise ValueError(f"unknown configuration {config!r} for {name}; expected one of {sorted(table)}")
    return copy.deepcopy(table[config])


def network_spatial_size(name: str, config: str = "paper") -> int:
    """Square input size (pixels) the configuration was designed for."""
    return int(get_config(name, config)["spatial_size"])


def build_network(name: str, config: str = "paper", **overrides: Any) -> nn.Module:
    """Instantiate network ``name`` ("dsanet", "intrasense" or "unet") in configuration ``config``.

    ``overrides`` replace constructor arguments (for example ``pretrained_path=...`` or ablation switches).
    """
    kwargs = get_config(name, config)
    kwargs.pop("spatial_size", None)
    kwargs.update(overrides)
    if name == "unet":
        from monai.networks.nets import UNet

        return UNet(**kwargs)
    module_path, class_name = NETWORK_MODULES[name]
    cls = getattr(importlib.import_module(module_path), class_name)
    return cls(**kwargs)
