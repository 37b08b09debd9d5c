"""Training loops (DDP-capable) for DSANet, IntraSense-Net and the UNet baseline; splits, schedule, curves."""

from usseg_models.training.dsanet import train_dsanet
from usseg_models.training.engine import TrainSettings, fit
from usseg_models.training.image import train_intrasense, train_unet
from usseg_models.training.splits import holdout_split, kfold_splits

__all__ = ["train_dsanet", "train_intrasense", "train_unet", "fit", "TrainSettings", "kfold_splits", "holdout_split"]
