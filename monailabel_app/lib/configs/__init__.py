"""Task configs of the usseg app, one per model; ``main.py`` discovers them here."""

from monailabel_app.lib.configs.dsanet import DSANetConfig
from monailabel_app.lib.configs.intrasense import IntraSenseConfig

__all__ = ["DSANetConfig", "IntraSenseConfig", "CONFIGS"]

# model name (as in ``--conf models dsanet,intrasense``) -> TaskConfig class
CONFIGS = {"dsanet": DSANetConfig, "intrasense": IntraSenseConfig}
