from usseg_models.losses.dsanet_loss import DSANetLoss  # noqa: F401
from usseg_models.losses.intrasense_loss import IntraSenseLoss  # noqa: F401
