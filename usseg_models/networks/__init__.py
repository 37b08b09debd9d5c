"""Networks: DSANet (video) and IntraSense-Net (image), their blocks, configurations and checkpoints."""

from usseg_models.networks.factory import build_network, get_config, network_spatial_size

__all__ = ["build_network", "get_config", "network_spatial_size"]
# Each network module appends itself below (one line each).
from usseg_models.networks.nets.dsanet import DSANet  # noqa: E402, I001
__all__ += ["DSANet"]
from usseg_models.networks.nets.intrasense import IntraSenseNet  # noqa: E402, I001
__all__ += ["IntraSenseNet"]
