"""MONAI-style transforms for ultrasound: clip windowing, Gamma speckle, intensity, resize + inverse, fan detection,
and :mod:`usseg_models.transforms.pipeline`, the one network-input pipeline per model shared by training, inference,
evaluation and the server (``ModelPipeline(kind, size).inputs(array)`` for one array, ``.transform()`` for MONAI
dictionaries). The fan detection (:mod:`~usseg_models.transforms.fan`) is a standalone transform, not part of the
pipeline.
"""

from usseg_models.transforms.clip import ClipWindow, ClipWindowd, RandClipTargetd, window_indices
from usseg_models.transforms.errors import PreprocessingError
from usseg_models.transforms.fan import MaskOutsideFan, MaskOutsideFand, detect_fan
from usseg_models.transforms.intensity import (
    ChannelNormalize,
    ChannelNormalized,
    RepeatChannels,
    RepeatChannelsd,
    RGBToGrey,
    RGBToGreyd,
    ScaleToUnit,
    ScaleToUnitd,
    rgb_to_grey,
    scale_to_unit,
)
from usseg_models.transforms.pipeline import Augmentation, ModelPipeline, postprocess_logits
from usseg_models.transforms.resize import ResizeToNetwork, ResizeToNetworkd, resize_xy, restore_size
from usseg_models.transforms.speckle import RandSpeckleNoise, RandSpeckleNoised
from usseg_models.transforms.steps import IMAGENET_MEAN, IMAGENET_STD, UssegCompose

__all__ = [
    "window_indices",
    "ClipWindow",
    "ClipWindowd",
    "RandClipTargetd",
    "RandSpeckleNoise",
    "RandSpeckleNoised",
    "scale_to_unit",
    "rgb_to_grey",
    "ScaleToUnit",
    "ScaleToUnitd",
    "RGBToGrey",
    "RGBToGreyd",
    "RepeatChannels",
    "RepeatChannelsd",
    "ChannelNormalize",
    "ChannelNormalized",
    "resize_xy",
    "restore_size",
    "ResizeToNetwork",
    "ResizeToNetworkd",
    "detect_fan",
    "MaskOutsideFan",
    "MaskOutsideFand",
    "ModelPipeline",
    "Augmentation",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PreprocessingError",
    "postprocess_logits",
    "UssegCompose",
]
