"""Detection of the imaging fan (the beam region) so burned-in text, ECG traces, colour bars and calibration marks
outside it are ignored.

Heuristic (:func:`detect_fan`), on a grey image scaled to ``[0, 1]``; lengths scale with ``s = min(X, Y)``:

1. **Candidate pixels.**
   - Cine (``(X, Y, T)``, ``T >= 2``): pixels that *change over time* (temporal standard deviation
     ``> temporal_threshold``), are not black (temporal maximum ``> intensity_threshold``) and are textured in
     at least one frame (3x3 neighbourhood not constant: flat panels that merely change colour drop out). Burned-in
     annotations are static, so they drop out here; moving overlays (ECG sweep, clock) survive but are small
     and separate from the fan. If fewer than ``min_fraction`` of the pixels change (a frozen or duplicated
     cine), the single-image rule below is used on the temporal maximum instead.
   - Single image (``(X, Y)``): textured pixels brighter than ``intensity_threshold`` whose neighbourhood (a
     square of side ``~0.03 s``) is mostly such pixels (local fill ``> density_threshold``); flat header bands
     and panels are not textured. Speckle texture is dense; characters, tick marks, dotted depth scales and
     thin drawn lines are sparse and vanish.
2. **Clean-up.** Morphological opening (radius ``~0.005 s``) cuts thin bridges (a sector outline touching
   text), then closing (radius ``~0.02 s``) joins speckle into one region.
3. **Largest connected component** (8-connectivity): the fan is the biggest live region; separate text,
   colour bars and ECG traces are discarded. For cines, other changing regions of at least ``merge_fraction``
   (3 %) of the largest one and compact (inscribed radius at least twice the closing radius, so not a bar or a
   trace) are kept too: a sector's near field cut off by a dark band. Static overlays are already gone there.
4. **Holes filled and convex hull**: dark cavities (blood pools, cysts) and dark borders inside the sector are
   restored. A sector or linear field of view is convex, so the hull is the fan's shape; a curvilinear probe's
   concave near-field arc is filled (a small over-estimate at the apex).

The result is a boolean ``(X, Y)`` mask with one connected component (all ``True`` — "no masking" — when no
candidate region is found, logged as a warning). The heuristic cannot recover a far field that is black in
every frame, and Doppler colour boxes count as part of the fan when they lie inside it (they usually do).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from usseg_models.transforms.errors import PreprocessingError
from usseg_models.transforms.intensity import rgb_to_grey, scale_to_unit

__all__ = [
    "detect_fan",
    "convex_hull_mask",
    "MaskOutsideFan",
    "MaskOutsideFand",
    "MaskOutsideFanD",
    "MaskOutsideFanDict",
]

logger = logging.getLogger(__name__)

_FLAT_VARIANCE = 1e-6  # local variance (on [0, 1]) below which a neighbourhood counts as a flat fill


def _largest_components(mask: np.ndarray, keep_fraction: float | None = None, min_thickness: float = 0.0):
    """The largest 8-connected component, plus, when ``keep_fraction`` is given, those at least that fraction of its
    size whose inscribed-circle radius is at least ``min_thickness`` (compact regions, not bars or traces)."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    largest = int(np.argmax(sizes))
    if keep_fraction is None or n == 1:
        return labels == largest
    index = np.arange(1, n + 1)
    thickness = np.asarray(ndimage.maximum(ndimage.distance_transform_edt(mask), labels, index))
    keep = index[(sizes[1:] >= keep_fraction * sizes[largest]) & (thickness >= min_thickness)]
    return np.isin(labels, np.union1d(keep, [largest]))


def convex_hull_mask(mask: np.ndarray) -> np.ndarray:
    """Filled convex hull of the ``True`` pixels of a 2D mask (pixel centres; the input pixels are kept).

    Args:
        mask: boolean ``(X, Y)``.

    Returns:
        boolean ``(X, Y)``; the input itself when the points are collinear or fewer than 3.
    """
    mask = np.asarray(mask, bool)
    edge = mask & ~ndimage.binary_erosion(mask, border_value=0)  # the hull of a region is the hull of its edge
    pts = np.argwhere(edge)
    if len(pts) < 3:
        return mask.copy()
    try:
        hull = ConvexHull(pts)
    except QhullError:  # collinear points
        return mask.copy()
    lo, hi = pts.min(0), pts.max(0) + 1
    gx, gy = np.meshgrid(np.arange(lo[0], hi[0]), np.arange(lo[1], hi[1]), indexing="ij")
    inside = np.ones(gx.shape, bool)
    for a, b, c in hull.equations:  # facets a x + b y + c <= 0 inside
        inside &= a * gx + b * gy + c <= 1e-9
    out = mask.copy()
    out[lo[0] : hi[0], lo[1] : hi[1]] |= inside
    return out


def _closing(mask: np.ndarray, radius: int) -> np.ndarray:
    """Closing by a Euclidean disk through distance transforms (linear time in the image size for any radius).

    Zero padding wider than the radius keeps it extensive at the image border (a fan touching the border keeps it).
    """
    p = int(radius) + 2
    padded = np.pad(mask, p)
    dilated = ndimage.distance_transform_edt(~padded) <= radius
    closed = ndimage.distance_transform_edt(dilated) > radius
    return closed[p:-p, p:-p]


def _opening(mask: np.ndarray, radius: int) -> np.ndarray:
    """Opening by a Euclidean disk; edge padding, so regions are not eroded from the image border."""
    p = int(radius) + 2
    padded = np.pad(mask, p, mode="edge")
    eroded = ndimage.distance_transform_edt(padded) > radius
    opened = ndimage.distance_transform_edt(~eroded) <= radius
    return opened[p:-p, p:-p] & mask


def _textured(img: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood is not constant (flat fills such as header bands and panels are not)."""
    mean = ndimage.uniform_filter(img, size=3)
    return ndimage.uniform_filter(img * img, size=3) - mean * mean > _FLAT_VARIANCE


def _dense_bright(img: np.ndarray, intensity_threshold: float, density_threshold: float, window: int) -> np.ndarray:
    bright = (img > intensity_threshold) & _textured(img)
    fill = ndimage.uniform_filter(bright.astype(np.float32), size=window, mode="constant")
    return bright & (fill > density_threshold)


def detect_fan(
    image: np.ndarray,
    intensity_threshold: float = 0.02,
    temporal_threshold: float = 0.01,
    density_threshold: float = 0.6,
    min_fraction: float = 0.01,
    merge_fraction: float = 0.03,
    max_frames: int = 64,
) -> np.ndarray:
    """Binary mask ``(X, Y)`` of the imaging fan of a grey image or cine (heuristic of the module docstring).

    Args:
        image: grey ``(X, Y)`` image or ``(X, Y, T)`` cine, any dtype (scaled to ``[0, 1]`` by its type's range,
            see :func:`~usseg_models.transforms.intensity.scale_to_unit`); convert colour first
            (:func:`~usseg_models.transforms.intensity.rgb_to_grey`).
        intensity_threshold: grey level (on ``[0, 1]``) above which a pixel counts as "not black".
        temporal_threshold: temporal standard deviation above which a cine pixel counts as "changing".
        density_threshold: for single images, the fraction of bright pixels a neighbourhood needs.
        min_fraction: for cines, the fraction of changing pixels below which the single-image rule is used.
        merge_fraction: for cines, changing regions at least this fraction of the largest one join the fan
            before the hull (a sector's near field separated from the rest by a dark band).
        max_frames: longer cines are read at this many evenly spaced frames (bounded time and memory).

    Returns:
        boolean ``(X, Y)`` mask, one 8-connected component.

    Raises:
        PreprocessingError: an input that is not 2D or 3D, or smaller than 8 pixels on a side.

    Examples::

        >>> cine = np.zeros((64, 64, 4), np.float32)
        >>> cine[16:48, 16:48] = np.random.default_rng(0).random((32, 32, 4))
        >>> fan = detect_fan(cine)
        >>> fan.shape, bool(fan[32, 32]), bool(fan[2, 2])
        ((64, 64), True, False)
    """
    arr = np.asarray(image)
    if arr.ndim not in (2, 3):
        raise PreprocessingError(f"detect_fan needs a grey (X, Y) image or (X, Y, T) cine, got shape {arr.shape}")
    if min(arr.shape[:2]) < 8:
        raise PreprocessingError(f"image too small for fan detection: {arr.shape}")
    if arr.ndim == 3 and arr.shape[2] > max_frames > 0:
        arr = arr[..., np.linspace(0, arr.shape[2] - 1, max_frames).round().astype(int)]
    x = scale_to_unit(arr)
    s = min(x.shape[:2])
    window = max(3, int(round(0.03 * s)) | 1)
    open_r = max(1, int(round(0.005 * s)))
    close_r = max(2, int(round(0.02 * s)))

    temporal = x.ndim == 3 and x.shape[2] >= 2
    if temporal:
        live = (x.std(axis=2) > temporal_threshold) & (x.max(axis=2) > intensity_threshold)
        live &= np.any([_textured(x[..., k]) for k in range(x.shape[2])], axis=0)
        if live.mean() < min_fraction:
            logger.info("fan detection: only %.3f%% of pixels change; using the image rule", 100 * live.mean())
            live = _dense_bright(x.max(axis=2), intensity_threshold, density_threshold, window)
            temporal = False
        else:
            # suppress isolated flicker (compression noise at text edges) before morphology
            live = ndimage.binary_opening(live, structure=np.ones((2, 2), bool))
    else:
        x2 = x[..., 0] if x.ndim == 3 else x
        live = _dense_bright(x2, intensity_threshold, density_threshold, window)

    cand = _closing(_opening(live, open_r), close_r)
    if not cand.any():
        logger.warning("fan detection found no imaging region; returning an all-True mask")
        return np.ones(x.shape[:2], bool)
    fan = _largest_components(cand, merge_fraction if temporal else None, min_thickness=2 * close_r)
    fan = ndimage.binary_fill_holes(fan)
    return convex_hull_mask(fan)


def _apply_fan(img: Any, fan: np.ndarray) -> Any:
    """Zero a channel-first ``(C, X, Y[, T])`` image outside the ``(X, Y)`` fan (type and dtype kept)."""
    if tuple(img.shape[1:3]) != fan.shape:
        raise PreprocessingError(f"fan mask {fan.shape} does not match the image's (X, Y) {tuple(img.shape[1:3])}")
    shape = (1, *fan.shape) + (1,) * (img.ndim - 3)
    if isinstance(img, torch.Tensor):
        return img * torch.as_tensor(fan.reshape(shape), device=img.device).to(img.dtype)
    arr = np.asarray(img)
    return arr * fan.reshape(shape).astype(arr.dtype)


class MaskOutsideFan(Transform):
    """Zero everything outside the detected fan (channel-first input, the mask shared by channels and frames).

    Args:
        kwargs: thresholds passed to :func:`detect_fan`.

    Shapes:
        ``(C, X, Y)`` or ``(C, X, Y, T)`` -> same shape and type. Colour (``C = 3``) is converted to grey for the
        detection only.

    Examples::

        >>> cine = torch.zeros(1, 64, 64, 4); cine[:, 16:48, 16:48] = torch.rand(1, 32, 32, 4)
        >>> cine[:, 2:4, 2:20] = 1.0  # a static burned-in line
        >>> bool(MaskOutsideFan()(cine)[0, 3, 10, 0] == 0)
        True
    """

    backend = [torch.Tensor, np.ndarray]

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs

    def fan(self, img: Any) -> np.ndarray:
        """The boolean ``(X, Y)`` fan mask of a channel-first image or cine."""
        if img.ndim not in (3, 4):
            raise PreprocessingError(f"MaskOutsideFan needs (C, X, Y) or (C, X, Y, T), got shape {tuple(img.shape)}")
        arr = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        grey = rgb_to_grey(arr, channel_dim=0) if arr.shape[0] != 1 else arr[0]
        if arr.shape[0] != 1:  # luma of integer colour keeps the colour's value range
            grey = grey.astype(arr.dtype) if np.issubdtype(arr.dtype, np.integer) else grey
        return detect_fan(grey, **self.kwargs)

    def __call__(self, img: Any) -> Any:
        return _apply_fan(img, self.fan(img))


class MaskOutsideFand(MapTransform):
    """Dictionary :class:`MaskOutsideFan`; the fan is detected on ``source_key`` and applied to every key.

    Args:
        keys: keys to mask (images; masking a label is rarely wanted).
        source_key: key to detect the fan on (default: the first key).
        mask_key: when set, the boolean ``(X, Y)`` fan is stored under this key.
        allow_missing_keys: do not raise when a key is absent.
        kwargs: thresholds passed to :func:`detect_fan`.
    """

    backend = MaskOutsideFan.backend

    def __init__(
        self,
        keys: KeysCollection,
        source_key: str | None = None,
        mask_key: str | None = None,
        allow_missing_keys: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.source_key = source_key if source_key is not None else self.keys[0]
        self.mask_key = mask_key
        self.masker = MaskOutsideFan(**kwargs)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.source_key not in d:
            if self.allow_missing_keys:
                return d
            raise KeyError(f"MaskOutsideFand: source key {self.source_key!r} missing; keys are {list(d)}")
        fan = self.masker.fan(d[self.source_key])
        for key in self.key_iterator(d):
            d[key] = _apply_fan(d[key], fan)
        if self.mask_key is not None:
            d[self.mask_key] = fan
        return d


MaskOutsideFanD = MaskOutsideFanDict = MaskOutsideFand
