"""Networks: DSANet (video) and IntraSense-Net (image), their blocks, configurations and checkpoints."""

from usseg_models.networks.factory import build_network, get_config, network_spatial_size

__all__ = ["build_network", "get_config", "network_spatial_size"]
# Each network module appends itself below (one line each).
