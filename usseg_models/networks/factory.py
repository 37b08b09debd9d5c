"""Build the project's networks by name and configuration (``paper`` = faithful default, ``small`` = CPU tests).

The arguments and input sizes come from the preset table :mod:`usseg_models.networks.presets`; the network
classes take plain constructor arguments. The MONAI ``UNet`` baseline is built here too.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch.nn as nn

from usseg_models.networks.presets import get_preset

__all__ = ["NETWORK_MODULES", "get_config", "network_kwargs", "build_network", "network_spatial_size"]

# network name -> (module path, class name)
NETWORK_MODULES = {
    "dsanet": ("usseg_models.networks.nets.dsanet", "DSANet"),
    "intrasense": ("usseg_models.networks.nets.intrasense", "IntraSenseNet"),
    "unet": ("monai.networks.nets", "UNet"),
}


def network_kwargs(name: str, config: str = "paper") -> dict[str, Any]:
    """Constructor keyword arguments of the named configuration (a copy)."""
    return get_preset(name, config).kwargs


def get_config(name: str, config: str = "paper") -> dict[str, Any]:
    """The named configuration as one dict: constructor kwargs plus ``spatial_size`` (for reports and checks)."""
    preset = get_preset(name, config)
    return {**preset.kwargs, "spatial_size": preset.spatial_size}


def network_spatial_size(name: str, config: str = "paper") -> int:
    """Square input size (pixels) the configuration was designed for."""
    return int(get_preset(name, config).spatial_size)


def build_network(name: str, config: str = "paper", **overrides: Any) -> nn.Module:
    """Instantiate network ``name`` ("dsanet", "intrasense" or "unet") in configuration ``config``.

    ``overrides`` replace constructor arguments (for example ``pretrained_path=...`` or ablation switches).
    """
    kwargs = {**network_kwargs(name, config), **overrides}
    module_path, class_name = NETWORK_MODULES[name]
    cls = getattr(importlib.import_module(module_path), class_name)
    return cls(**kwargs)
