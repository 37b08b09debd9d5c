"""Function-style access to the one network-input pipeline (:mod:`usseg_models.transforms.pipeline`).

Each function here is a call of :class:`~usseg_models.transforms.pipeline.ModelPipeline` — there is no second
implementation — for callers that hold one array rather than a MONAI dictionary (predictors, refinement, tests).
:func:`cine_transforms` / :func:`image_transforms` return the pipeline's MONAI ``Compose`` (evaluation).

Examples::

    >>> cine = np.random.randint(0, 255, (120, 90, 5), dtype=np.uint8)     # reader (X, Y, T)
    >>> preprocess_cine(cine, 64).shape
    torch.Size([5, 3, 64, 64])
    >>> postprocess_logits(torch.randn(5, 1, 64, 64), (120, 90)).shape    # label volume (X, Y, T)
    (120, 90, 5)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np  # noqa: F401 - used by the doctest
import torch

from usseg_models.transforms.errors import PreprocessingError
from usseg_models.transforms.pipeline import Augmentation, ModelPipeline, postprocess_logits
from usseg_models.transforms.steps import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CineToUnitGreyd,
    ImageToUnitGreyd,
    UssegCompose,
    cine_to_unit_grey,
    image_to_unit_grey,
    imagenet_normalize,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PreprocessingError",
    "imagenet_normalize",
    "cine_to_unit_grey",
    "image_to_unit_grey",
    "preprocess_cine",
    "preprocess_image",
    "preprocess_cine_label",
    "preprocess_image_label",
    "postprocess_logits",
    "CineToUnitGreyd",
    "ImageToUnitGreyd",
    "UssegCompose",
    "cine_transforms",
    "image_transforms",
]


def preprocess_cine(
    frames: Any, spatial_size: int | Sequence[int], fan_mask: bool = False, intensity: str = "dtype"
) -> torch.Tensor:
    """Reader cine ``(X, Y, T[, 3])`` -> network frames ``(T, 3, S, S)`` float32 (``ModelPipeline("cine").inputs``).

    Raises:
        PreprocessingError: another shape.
    """
    return ModelPipeline("cine", spatial_size, fan_mask, intensity).inputs(frames)


def preprocess_image(
    image: Any, spatial_size: int | Sequence[int], fan_mask: bool = False, intensity: str = "dtype"
) -> torch.Tensor:
    """Reader image ``(X, Y[, 1|3])`` -> network input ``(3, S, S)`` float32 (``ModelPipeline("image").inputs``).

    Raises:
        PreprocessingError: another shape.
    """
    return ModelPipeline("image", spatial_size, fan_mask, intensity).inputs(image)


def preprocess_cine_label(mask: Any, spatial_size: int | Sequence[int]) -> torch.Tensor:
    """Label volume ``(X, Y, T)`` (any non-zero = foreground) -> ``(T, 1, S, S)`` float32 in {0, 1} (nearest).

    Raises:
        PreprocessingError: not ``(X, Y, T)`` (a trailing size-1 axis is accepted).
    """
    return ModelPipeline("cine", spatial_size).labels(mask)


def preprocess_image_label(mask: Any, spatial_size: int | Sequence[int]) -> torch.Tensor:
    """Image label ``(X, Y)`` or ``(X, Y, 1)`` -> ``(1, S, S)`` float32 in {0, 1} (nearest).

    Raises:
        PreprocessingError: another shape.
    """
    return ModelPipeline("image", spatial_size).labels(mask)


def _augmentation(train: bool, kind: str, speckle_L: float | None, speckle_prob: float,
                  rotate_degrees: float = 0.0) -> Augmentation | None:
    if not train and speckle_L is None:
        return None
    return Augmentation(flips=train, rot90=train and kind == "image", rotate_degrees=rotate_degrees if train else 0.0,
                        speckle_L=speckle_L, speckle_prob=speckle_prob)


def cine_transforms(
    spatial_size: int,
    train: bool,
    speckle_L: float | None = None,
    speckle_prob: float = 1.0,
    fan_mask: bool = False,
    image_key: str = "image",
    label_key: str = "label",
    index_key: str = "frame_index",
    window: int = 3,
    random_window: bool = False,
) -> UssegCompose:
    """The cine pipeline as one MONAI dictionary ``Compose`` (:meth:`ModelPipeline.transform`).

    Input: ``data[image_key]`` reader cine ``(X, Y, T[, 3])``; optional ``data[label_key]`` ``(X, Y, T)``; optional
    ``data[index_key]`` target frame ``t`` — when present, only the window ``window_indices(T, t, window)`` is kept.
    Output: image ``(T', 3, S, S)`` float32 normalised, label ``(T', 1, S, S)`` float32 {0, 1} (``T'`` = window or
    all frames), ``"<key>_original_xy"`` recorded.

    Args:
        spatial_size: network size ``S``.
        train: random flips of each spatial axis (p = 0.5 each), one draw for all frames of the clip and its label.
        speckle_L: when set, multiplicative Gamma speckle with ``L`` looks, a field per frame (training augmentation
            or the paper's robustness evaluation; applies with ``train`` False too).
        speckle_prob: probability of applying the speckle to a sample.
        fan_mask: zero outside the detected fan.
        image_key, label_key, index_key: dictionary keys.
        window: DSANet window length.
        random_window: draw the target frame uniformly per sample (stored under ``index_key``); honours
            ``set_random_state``.
    """
    pipe = ModelPipeline("cine", spatial_size, fan_mask, image_key=image_key, label_key=label_key)
    return pipe.transform(_augmentation(train, "cine", speckle_L, speckle_prob), window, index_key, random_window)


def image_transforms(
    spatial_size: int,
    train: bool,
    speckle_L: float | None = None,
    speckle_prob: float = 1.0,
    fan_mask: bool = False,
    rotate_degrees: float = 0.0,
    image_key: str = "image",
    label_key: str = "label",
) -> UssegCompose:
    """The image pipeline as one MONAI dictionary ``Compose`` (:meth:`ModelPipeline.transform`).

    Input: ``data[image_key]`` ``(X, Y[, 1|3])``; optional ``data[label_key]`` ``(X, Y[, 1])``.
    Output: image ``(3, S, S)`` float32 normalised, label ``(1, S, S)`` float32 {0, 1}.

    Args:
        spatial_size: network size ``S``.
        train: flips of each axis, a random multiple of 90 degrees and, when ``rotate_degrees > 0``, a small-angle
            rotation, identical for image and label (see :class:`~usseg_models.transforms.pipeline.Augmentation`).
        speckle_L, speckle_prob: Gamma speckle (see :func:`cine_transforms`).
        fan_mask: zero outside the detected fan.
        rotate_degrees: maximal small-angle rotation (0 = none).
        image_key, label_key: dictionary keys.
    """
    pipe = ModelPipeline("image", spatial_size, fan_mask, image_key=image_key, label_key=label_key)
    return pipe.transform(_augmentation(train, "image", speckle_L, speckle_prob, rotate_degrees))
