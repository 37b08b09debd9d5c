"""Intensity transforms: scaling to ``[0, 1]``, colour -> grey, grey -> 3 channels, per-channel mean/std.

Scaling rule (:func:`scale_to_unit`):

- ``mode="dtype"``: unsigned integers are divided by their type's maximum (uint8 / 255, uint16 / 65535); bool
  maps to {0, 1}. Floats and signed integers carry no range of their own: values already in ``[0, 1]`` are kept,
  values in ``[0, 255]`` are divided by 255 (8-bit data stored in a wider type, as NIfTI often is), anything else
  is min/max scaled per image.
- ``mode="minmax"``: ``(x - min) / (max - min)`` per image (a constant image maps to 0).

Grey from colour uses ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` (the rule of ``docs/DESIGN.md``); an alpha
channel is dropped. The ImageNet constants live in :mod:`usseg_models.transforms.steps`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from usseg_models.io.conventions import BT601_WEIGHTS
from usseg_models.transforms.errors import PreprocessingError

__all__ = [
    "BT601_WEIGHTS",
    "scale_to_unit",
    "rgb_to_grey",
    "ScaleToUnit",
    "ScaleToUnitd",
    "ScaleToUnitD",
    "ScaleToUnitDict",
    "RGBToGrey",
    "RGBToGreyd",
    "RGBToGreyD",
    "RGBToGreyDict",
    "RepeatChannels",
    "RepeatChannelsd",
    "RepeatChannelsD",
    "RepeatChannelsDict",
    "ChannelNormalize",
    "ChannelNormalized",
    "ChannelNormalizeD",
    "ChannelNormalizeDict",
]

_MODES = ("dtype", "minmax")


def _minmax(x: Any) -> Any:
    lo, hi = x.min(), x.max()
    if float(hi - lo) <= 0:
        return x * 0
    return (x - lo) / (hi - lo)


def scale_to_unit(img: Any, mode: str = "dtype") -> Any:
    """Scale an image to float32 on ``[0, 1]`` by the module's rule.

    Args:
        img: numpy array or torch tensor of any shape and dtype.
        mode: ``"dtype"`` (by the type's range) or ``"minmax"`` (per image).

    Returns:
        float32 array/tensor of the same shape and kind.

    Raises:
        ValueError: unknown ``mode``.
        PreprocessingError: an empty image.

    Examples::

        >>> scale_to_unit(np.array([0, 128, 255], dtype=np.uint8))
        array([0.       , 0.5019608, 1.       ], dtype=float32)
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    is_torch = isinstance(img, torch.Tensor)
    if (img.numel() if is_torch else np.asarray(img).size) == 0:
        raise PreprocessingError("cannot scale an empty image")
    src_dtype = img.dtype
    x = img.float() if is_torch else np.asarray(img).astype(np.float32)
    if mode == "minmax":
        return _minmax(x)
    if is_torch:
        unsigned = src_dtype in (torch.uint8, torch.uint16, torch.uint32, torch.uint64)
        info_max = float(torch.iinfo(src_dtype).max) if unsigned else None
        is_bool = src_dtype == torch.bool
    else:
        unsigned = np.issubdtype(src_dtype, np.unsignedinteger)
        info_max = float(np.iinfo(src_dtype).max) if unsigned else None
        is_bool = src_dtype == np.bool_
    if is_bool:
        return x
    if unsigned:
        return x / info_max
    lo, hi = float(x.min()), float(x.max())
    if lo >= 0 and hi <= 1:
        return x
    if lo >= 0 and hi <= 255:
        return x / 255.0
    return _minmax(x)


def rgb_to_grey(img: Any, channel_dim: int = -1, keepdim: bool = False) -> Any:
    """BT.601 luma of a colour image (float32); a 1-channel input is returned as float32 unchanged.

    Args:
        img: array/tensor with 1, 3 (RGB) or 4 (RGBA, alpha dropped) entries along ``channel_dim``.
        channel_dim: the colour axis (``-1`` for reader output, ``0`` channel-first).
        keepdim: keep the colour axis with size 1.

    Raises:
        PreprocessingError: when the colour axis has another size.
    """
    n = img.shape[channel_dim]
    if n not in (1, 3, 4):
        raise PreprocessingError(
            f"expected 1, 3 or 4 colour channels along axis {channel_dim}, got shape {tuple(img.shape)}"
        )
    is_torch = isinstance(img, torch.Tensor)
    x = img.float() if is_torch else np.asarray(img).astype(np.float32)
    if n == 1:
        return x if keepdim else (x.squeeze(channel_dim) if is_torch else np.squeeze(x, channel_dim))
    if is_torch:
        w = torch.tensor(BT601_WEIGHTS, dtype=x.dtype, device=x.device)
        rgb = torch.movedim(x, channel_dim, -1)[..., :3]
        grey = (rgb * w).sum(-1)
        return grey.unsqueeze(channel_dim % x.ndim) if keepdim else grey
    rgb = np.moveaxis(x, channel_dim, -1)[..., :3]
    grey = (rgb @ np.asarray(BT601_WEIGHTS, dtype=np.float32)).astype(np.float32)
    return np.expand_dims(grey, channel_dim % x.ndim) if keepdim else grey


class ScaleToUnit(Transform):
    """Array transform for :func:`scale_to_unit`.

    Args:
        mode: ``"dtype"`` or ``"minmax"``.
    """

    backend = [torch.Tensor, np.ndarray]

    def __init__(self, mode: str = "dtype") -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        self.mode = mode

    def __call__(self, img: Any) -> Any:
        return scale_to_unit(img, self.mode)


class RGBToGrey(Transform):
    """Colour to BT.601 grey, keeping a size-1 channel axis (channel-first ``(C, ...)`` by default).

    Args:
        channel_dim: the colour axis.

    Shapes:
        ``(3, X, Y[, T])`` or ``(1, X, Y[, T])`` -> ``(1, X, Y[, T])`` float32.
    """

    backend = [torch.Tensor, np.ndarray]

    def __init__(self, channel_dim: int = 0) -> None:
        self.channel_dim = int(channel_dim)

    def __call__(self, img: Any) -> Any:
        return rgb_to_grey(img, self.channel_dim, keepdim=True)


class RepeatChannels(Transform):
    """Replicate a single grey channel ``n`` times (grey -> "RGB" for ImageNet-initialised encoders).

    Args:
        n: number of output channels (3 for ImageNet encoders).
        channel_dim: the channel axis (``0`` channel-first, ``1`` for frame-first clips ``(T, C, X, Y)``).

    Shapes:
        ``(1, X, Y)`` -> ``(n, X, Y)``; an input that already has ``n`` channels is returned unchanged.

    Raises:
        PreprocessingError: when the channel axis has a size other than 1 or ``n``.
    """

    backend = [torch.Tensor, np.ndarray]

    def __init__(self, n: int = 3, channel_dim: int = 0) -> None:
        if int(n) < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.n = int(n)
        self.channel_dim = int(channel_dim)

    def __call__(self, img: Any) -> Any:
        c = img.shape[self.channel_dim]
        if c == self.n:
            return img
        if c != 1:
            raise PreprocessingError(
                f"RepeatChannels needs 1 channel along axis {self.channel_dim}, got shape {tuple(img.shape)}"
            )
        if isinstance(img, torch.Tensor):
            return torch.repeat_interleave(img, self.n, dim=self.channel_dim)
        return np.repeat(img, self.n, axis=self.channel_dim)


class ChannelNormalize(Transform):
    """``(x - mean[c]) / std[c]`` per channel (ImageNet normalisation with the constants of ``steps``).

    Args:
        mean: one value per channel.
        std: one positive value per channel.
        channel_dim: the channel axis.

    Raises:
        ValueError: mismatched ``mean``/``std`` lengths or a non-positive ``std``.
        PreprocessingError: an input whose channel count differs from ``len(mean)``.
    """

    backend = [torch.Tensor, np.ndarray]

    def __init__(self, mean: Sequence[float], std: Sequence[float], channel_dim: int = 0) -> None:
        if len(mean) != len(std):
            raise ValueError(f"mean and std must have the same length, got {len(mean)} and {len(std)}")
        if any(float(s) <= 0 for s in std):
            raise ValueError(f"std values must be > 0, got {std}")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.channel_dim = int(channel_dim)

    def _shape(self, ndim: int) -> list[int]:
        shape = [1] * ndim
        shape[self.channel_dim % ndim] = len(self.mean)
        return shape

    def __call__(self, img: Any) -> Any:
        if img.shape[self.channel_dim] != len(self.mean):
            raise PreprocessingError(
                f"expected {len(self.mean)} channels along axis {self.channel_dim}, got shape {tuple(img.shape)}"
            )
        shape = self._shape(img.ndim)
        if isinstance(img, torch.Tensor):
            x = img if img.is_floating_point() else img.float()
            mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).reshape(shape)
            std = torch.tensor(self.std, dtype=x.dtype, device=x.device).reshape(shape)
            return (x - mean) / std
        x = np.asarray(img, dtype=np.float32)
        return (x - np.reshape(self.mean, shape).astype(np.float32)) / np.reshape(self.std, shape).astype(np.float32)


class ArrayMapd(MapTransform):
    """Apply one array transform (any callable) to every present key: the shared base of the simple dictionary
    wrappers of this package."""

    def __init__(self, keys: KeysCollection, transform: Callable[[Any], Any], allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.transform = transform

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d


class ScaleToUnitd(ArrayMapd):
    """Dictionary :class:`ScaleToUnit`."""

    backend = ScaleToUnit.backend

    def __init__(self, keys: KeysCollection, mode: str = "dtype", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, ScaleToUnit(mode), allow_missing_keys)


class RGBToGreyd(ArrayMapd):
    """Dictionary :class:`RGBToGrey`."""

    backend = RGBToGrey.backend

    def __init__(self, keys: KeysCollection, channel_dim: int = 0, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, RGBToGrey(channel_dim), allow_missing_keys)


class RepeatChannelsd(ArrayMapd):
    """Dictionary :class:`RepeatChannels`."""

    backend = RepeatChannels.backend

    def __init__(self, keys: KeysCollection, n: int = 3, channel_dim: int = 0, allow_missing_keys: bool = False):
        super().__init__(keys, RepeatChannels(n, channel_dim), allow_missing_keys)


class ChannelNormalized(ArrayMapd):
    """Dictionary :class:`ChannelNormalize`."""

    backend = ChannelNormalize.backend

    def __init__(
        self,
        keys: KeysCollection,
        mean: Sequence[float],
        std: Sequence[float],
        channel_dim: int = 0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, ChannelNormalize(mean, std, channel_dim), allow_missing_keys)


ScaleToUnitD = ScaleToUnitDict = ScaleToUnitd
RGBToGreyD = RGBToGreyDict = RGBToGreyd
RepeatChannelsD = RepeatChannelsDict = RepeatChannelsd
ChannelNormalizeD = ChannelNormalizeDict = ChannelNormalized
