"""Resize to the network's square input size, and back.

The **last two axes** are the spatial ones ``(X, Y)`` (``(C, X, Y)`` images, ``(T, C, X, Y)`` clips, plain
``(X, Y)`` masks); every leading axis is carried through. Images are resized bilinearly
(``align_corners=False``), labels with ``nearest-exact`` (pixel-centre nearest neighbour, so a down/up round trip
keeps a mask where it was). The original ``(X, Y)`` is recorded — in ``meta["original_xy"]`` for a
``MetaTensor`` and under ``"<key>_original_xy"`` in dictionaries — so :func:`restore_size` gives back a mask of the
exact original shape.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import ensure_tuple_rep

from usseg_models.transforms.errors import PreprocessingError

__all__ = [
    "ORIGINAL_XY_KEY",
    "resize_xy",
    "restore_size",
    "ResizeToNetwork",
    "ResizeToNetworkd",
    "ResizeToNetworkD",
    "ResizeToNetworkDict",
]

ORIGINAL_XY_KEY = "original_xy"
_MODES = ("bilinear", "nearest")


def _as_xy(size: int | Sequence[int]) -> tuple[int, int]:
    xy = tuple(int(s) for s in ensure_tuple_rep(size, 2))
    if len(xy) != 2 or min(xy) < 1:
        raise ValueError(f"a spatial size must be one or two positive integers, got {size!r}")
    return xy  # type: ignore[return-value]


def resize_xy(img: Any, size: int | Sequence[int], mode: str = "bilinear") -> Any:
    """Resize the last two axes of ``img`` to ``size``.

    Args:
        img: numpy array or torch tensor ``(..., X, Y)``.
        size: target ``(X', Y')`` or one int for a square.
        mode: ``"bilinear"`` (images; float output) or ``"nearest"`` (labels; the input dtype is kept).

    Returns:
        ``(..., X', Y')`` of the input's kind (numpy or torch; a ``MetaTensor`` keeps its meta).

    Raises:
        ValueError: unknown ``mode`` or a bad ``size``.
        PreprocessingError: an input with fewer than 2 dimensions.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if img.ndim < 2:
        raise PreprocessingError(f"resize needs at least 2 (spatial) dimensions, got shape {tuple(img.shape)}")
    xy = _as_xy(size)
    is_torch = isinstance(img, torch.Tensor)
    t = img.as_tensor() if isinstance(img, MetaTensor) else (img if is_torch else torch.from_numpy(np.asarray(img)))
    lead, (x, y) = tuple(t.shape[:-2]), tuple(t.shape[-2:])
    src_dtype = t.dtype
    flat = t.reshape(-1, 1, x, y)
    flat = flat.float() if not flat.is_floating_point() else flat
    if (x, y) == xy:
        out = flat
    elif mode == "bilinear":
        out = F.interpolate(flat, size=xy, mode="bilinear", align_corners=False)
    else:
        out = F.interpolate(flat, size=xy, mode="nearest-exact")
    out = out.reshape(*lead, *xy)
    if mode == "nearest":
        out = out.to(src_dtype)
    if isinstance(img, MetaTensor):
        return MetaTensor(out, meta=dict(img.meta))
    return out if is_torch else out.numpy()


def restore_size(mask: Any, orig_size: Sequence[int]) -> Any:
    """Bring a network-size mask back to the original ``(X, Y)``: binary (``> 0.5``), uint8, nearest neighbour.

    Args:
        mask: ``(..., S, S)`` mask (probabilities or {0, 1}); numpy or torch.
        orig_size: original ``(X, Y)`` as recorded by :class:`ResizeToNetwork`.

    Returns:
        uint8 ``(..., X, Y)`` of the input's kind with values in {0, 1}.

    Examples::

        >>> m = np.zeros((50, 70), np.uint8); m[10:30, 20:50] = 1
        >>> small = resize_xy(m, 32, mode="nearest")
        >>> restore_size(small, m.shape).shape
        (50, 70)
    """
    if len(tuple(orig_size)) != 2:
        raise PreprocessingError(f"orig_size must be the original (X, Y), got {orig_size!r}")
    xy = _as_xy(orig_size)
    binary = mask > 0.5
    binary = binary.to(torch.uint8) if isinstance(binary, torch.Tensor) else np.asarray(binary).astype(np.uint8)
    return resize_xy(binary, xy, mode="nearest")


class ResizeToNetwork(Transform):
    """Resize the last two axes to the network's square size, recording the original ``(X, Y)``.

    Args:
        spatial_size: the network size ``S`` (or ``(X', Y')``).
        mode: ``"bilinear"`` for images, ``"nearest"`` for labels.

    Shapes:
        ``(..., X, Y)`` -> ``(..., S, S)``; a ``MetaTensor`` gets ``meta["original_xy"] = (X, Y)``.

    Examples::

        >>> ResizeToNetwork(64)(torch.rand(3, 1, 120, 90)).shape
        torch.Size([3, 1, 64, 64])
    """

    backend = [torch.Tensor, np.ndarray]

    def __init__(self, spatial_size: int | Sequence[int], mode: str = "bilinear") -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        self.spatial_size = _as_xy(spatial_size)
        self.mode = mode

    def __call__(self, img: Any) -> Any:
        original = tuple(int(s) for s in img.shape[-2:])
        out = resize_xy(img, self.spatial_size, self.mode)
        if isinstance(out, MetaTensor):
            out.meta[ORIGINAL_XY_KEY] = original
        return out


class ResizeToNetworkd(MapTransform):
    """Dictionary :class:`ResizeToNetwork`; stores each key's original ``(X, Y)`` under ``"<key>_original_xy"``.

    Args:
        keys: keys to resize.
        spatial_size: network size ``S``.
        mode: one mode for all keys or one per key (e.g. ``("bilinear", "nearest")`` for image and label).
        allow_missing_keys: do not raise when a key is absent.
    """

    backend = ResizeToNetwork.backend

    def __init__(
        self,
        keys: KeysCollection,
        spatial_size: int | Sequence[int],
        mode: str | Sequence[str] = "bilinear",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        modes = ensure_tuple_rep(mode, len(self.keys))
        self.resizers = [ResizeToNetwork(spatial_size, m) for m in modes]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, resizer in self.key_iterator(d, self.resizers):
            d[f"{key}_{ORIGINAL_XY_KEY}"] = tuple(int(s) for s in d[key].shape[-2:])
            d[key] = resizer(d[key])
        return d


ResizeToNetworkD = ResizeToNetworkDict = ResizeToNetworkd
