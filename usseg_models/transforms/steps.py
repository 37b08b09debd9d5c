"""The deterministic steps of the network-input pipeline (:mod:`usseg_models.transforms.pipeline`), one each.

Array level (reader arrays in, channel-first tensors out):

- :func:`cine_to_unit_grey` / :func:`image_to_unit_grey`: colour -> grey (ITU-R BT.601 luma), intensity -> ``[0, 1]``
  by the stored type's range (:func:`~usseg_models.transforms.intensity.scale_to_unit`);
- :func:`cine_label_to_tensor` / :func:`image_label_to_tensor`: any non-zero label -> ``{0, 1}`` float, frame-first;
- :data:`IMAGENET_MEAN` / :data:`IMAGENET_STD` (defined here once) for :func:`imagenet_normalize`.

Dictionary level: :class:`CineToUnitGreyd`, :class:`ImageToUnitGreyd`, the label counterparts, the image/label
geometry check and :class:`UssegCompose` (a MONAI ``Compose`` that lets the project's input errors through).

Layouts (``docs/DESIGN.md``): reader arrays are spatial-first ``(X, Y[, T])`` plus a trailing colour axis; these
steps return ``(T, 1, X, Y)`` per cine and ``(1, X, Y)`` per image, X staying the first spatial axis.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import Compose, MapTransform

from usseg_models.errors import UssegError
from usseg_models.transforms.errors import PreprocessingError
from usseg_models.transforms.intensity import ArrayMapd, ChannelNormalize, rgb_to_grey, scale_to_unit

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "imagenet_normalize",
    "cine_to_unit_grey",
    "image_to_unit_grey",
    "cine_label_to_tensor",
    "image_label_to_tensor",
    "CineToUnitGreyd",
    "ImageToUnitGreyd",
    "CineLabelToTensord",
    "ImageLabelToTensord",
    "SameGeometryd",
    "PlainFloatd",
    "UssegCompose",
]

_CHUNK = 16  # frames converted from colour at a time

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_normalize(channel_dim: int = 0) -> ChannelNormalize:
    """The ImageNet mean/std normalisation with the constants of this module, on ``channel_dim``."""
    return ChannelNormalize(IMAGENET_MEAN, IMAGENET_STD, channel_dim)


def _to_numpy(a: Any) -> np.ndarray:
    if isinstance(a, MetaTensor):
        a = a.as_tensor()
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _check_size(shape: tuple[int, ...], what: str) -> None:
    if min(shape[:2]) < 1 or (len(shape) > 2 and shape[2] < 1):
        raise PreprocessingError(f"{what} is empty: shape {shape}")


def _has_colour_axis(a: np.ndarray, ndim: int, layouts: str) -> bool:
    """Whether reader array ``a`` is ``ndim`` axes plus a trailing colour axis (1, 3 or 4 channels), not ``ndim``.

    Raises:
        PreprocessingError: any other shape (``layouts`` names the accepted ones in the message).
    """
    if a.ndim == ndim + 1 and a.shape[-1] in (1, 3, 4):
        return True
    if a.ndim == ndim:
        return False
    raise PreprocessingError(f"{layouts}, got shape {a.shape}")


def _label_array(mask: Any, ndim: int, what: str, layouts: str) -> np.ndarray:
    """Reader label of ``ndim`` axes (a trailing size-1 axis dropped), checked non-empty.

    Raises:
        PreprocessingError: any other shape (``layouts`` names the accepted ones in the message).
    """
    a = _to_numpy(mask)
    if a.ndim == ndim + 1 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != ndim:
        raise PreprocessingError(f"{layouts}, got shape {a.shape}")
    _check_size(a.shape, what)
    return a


def cine_to_unit_grey(frames: Any) -> torch.Tensor:
    """Reader cine -> grey ``[0, 1]`` float32 ``(T, 1, X, Y)`` (integers scaled by their dtype's range).

    Args:
        frames: ``(X, Y, T)`` grey or ``(X, Y, T, C)`` colour (``C`` in 1, 3, 4), any dtype.

    Raises:
        PreprocessingError: any other shape.
    """
    a = _to_numpy(frames)
    colour = _has_colour_axis(a, 3, "a cine must be (X, Y, T) or (X, Y, T, 3)")
    _check_size(a.shape, "cine")
    if not colour:
        grey = scale_to_unit(a)
    elif np.issubdtype(a.dtype, np.unsignedinteger):
        # luma is linear, so grey-then-scale equals scale-then-grey; chunks keep a float copy of a long colour
        # cine out of memory
        grey = np.empty(a.shape[:3], np.float32)
        for k in range(0, a.shape[2], _CHUNK):
            grey[:, :, k : k + _CHUNK] = rgb_to_grey(a[:, :, k : k + _CHUNK], channel_dim=-1)
        grey /= np.float32(np.iinfo(a.dtype).max)
    else:
        grey = rgb_to_grey(scale_to_unit(a), channel_dim=-1)
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(grey, 2, 0)[:, None])).float()


def image_to_unit_grey(image: Any) -> torch.Tensor:
    """Reader image -> grey ``[0, 1]`` float32 ``(1, X, Y)`` (integers scaled by their dtype's range).

    Args:
        image: ``(X, Y)`` grey or ``(X, Y, 1|3|4)`` colour-last (a trailing axis of one is one grey channel).

    Raises:
        PreprocessingError: any other shape.
    """
    a = _to_numpy(image)
    colour = _has_colour_axis(a, 2, "an image must be (X, Y), (X, Y, 1) or (X, Y, 3)")
    _check_size(a.shape[:2], "image")
    grey = rgb_to_grey(scale_to_unit(a), channel_dim=-1) if colour else scale_to_unit(a)
    return torch.from_numpy(np.ascontiguousarray(grey[None])).float()


def _binary(a: np.ndarray, classes: bool = False) -> torch.Tensor:
    """``{0, 1}`` foreground (any non-zero), or with ``classes`` the values themselves (class indices)."""
    return torch.from_numpy(np.ascontiguousarray(a if classes else a > 0)).float()


def cine_label_to_tensor(mask: Any, classes: bool = False) -> torch.Tensor:
    """Label volume ``(X, Y, T)`` (any non-zero = foreground) -> ``(T, 1, X, Y)`` float32 in {0, 1}; with
    ``classes`` the class indices are kept (several structures, :class:`~usseg_models.labels.LabelSet`).

    Raises:
        PreprocessingError: not ``(X, Y, T)`` (a trailing size-1 axis is accepted).
    """
    a = _label_array(mask, 3, "cine label", "a cine label must be (X, Y, T)")
    return _binary(np.moveaxis(a, 2, 0)[:, None], classes)


def image_label_to_tensor(mask: Any, classes: bool = False) -> torch.Tensor:
    """Image label ``(X, Y)`` or ``(X, Y, 1)`` -> ``(1, X, Y)`` float32 in {0, 1} (class indices with ``classes``).

    Raises:
        PreprocessingError: another shape.
    """
    a = _label_array(mask, 2, "image label", "an image label must be (X, Y) or (X, Y, 1)")
    return _binary(a[None], classes)


class CineToUnitGreyd(ArrayMapd):
    """Dictionary form of :func:`cine_to_unit_grey` (image keys) -> ``(T, 1, X, Y)`` in ``[0, 1]``."""

    def __init__(
        self, keys: KeysCollection, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, cine_to_unit_grey, allow_missing_keys)


class ImageToUnitGreyd(ArrayMapd):
    """Dictionary form of :func:`image_to_unit_grey` (image keys) -> ``(1, X, Y)`` in ``[0, 1]``."""

    def __init__(
        self, keys: KeysCollection, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, image_to_unit_grey, allow_missing_keys)


class CineLabelToTensord(ArrayMapd):
    """Dictionary form of :func:`cine_label_to_tensor` (label keys; absent keys are skipped)."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = True, classes: bool = False) -> None:
        super().__init__(keys, functools.partial(cine_label_to_tensor, classes=classes), allow_missing_keys)


class ImageLabelToTensord(ArrayMapd):
    """Dictionary form of :func:`image_label_to_tensor` (label keys; absent keys are skipped)."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = True, classes: bool = False) -> None:
        super().__init__(keys, functools.partial(image_label_to_tensor, classes=classes), allow_missing_keys)


class SameGeometryd(MapTransform):
    """Refuse an image and label that differ in frames or ``(X, Y)`` (cines ``(T, 1, X, Y)``, images ``(1, X, Y)``)."""

    def __init__(self, image_key: str, label_key: str) -> None:
        super().__init__((image_key, label_key), allow_missing_keys=True)
        self.image_key, self.label_key = image_key, label_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.image_key in d and self.label_key in d:
            a, b = tuple(d[self.image_key].shape), tuple(d[self.label_key].shape)
            if (a[0], *a[-2:]) != (b[0], *b[-2:]):
                raise PreprocessingError(f"image {a} and label {b} differ in frames or size")
        return d


def _plain_float(a: Any) -> torch.Tensor:
    """float32 plain tensor: MONAI's random flips/rotations return MetaTensors with per-sample operation histories
    that are neither needed downstream (the original size is recorded under ``<key>_original_xy``) nor safe to
    collate with torch's default collate."""
    t = a.as_tensor() if isinstance(a, MetaTensor) else torch.as_tensor(a)
    return t.float().contiguous()


class PlainFloatd(ArrayMapd):
    """Present keys -> contiguous float32 ``torch.Tensor`` (no ``MetaTensor``)."""

    def __init__(self, keys: KeysCollection) -> None:
        super().__init__(keys, _plain_float, allow_missing_keys=True)


class UssegCompose(Compose):
    """MONAI ``Compose`` that re-raises the project's own input errors unwrapped.

    MONAI wraps any exception raised inside a transform in a ``RuntimeError`` ("applying transform ..."); callers of
    these pipelines (CLI, server) rely on :class:`~usseg_models.errors.UssegError` reaching them as such.
    """

    def __call__(self, input_: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(input_, *args, **kwargs)
        except RuntimeError as exc:
            cause: BaseException | None = exc
            while cause is not None and not isinstance(cause, UssegError):
                cause = cause.__cause__
            if cause is None:
                raise
            raise cause from exc
