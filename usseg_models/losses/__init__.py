from usseg_models.losses.dsanet_loss import DSANetLoss  # noqa: F401
