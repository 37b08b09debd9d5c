"""THE preprocessing definition shared by training, inference, evaluation and the MONAI Label app.

Every path from a reader array to a network input goes through this module, so train and infer cannot drift:

1. colour -> grey (ITU-R BT.601 luma; ultrasound is grey, colour Doppler overlays become grey too);
2. intensity -> ``[0, 1]`` by the stored type's range (:func:`~usseg_models.transforms.intensity.scale_to_unit`);
3. optionally, zero outside the imaging fan (:func:`~usseg_models.transforms.fan.detect_fan`);
4. resize to the network's square size ``S`` (bilinear; labels nearest);
5. (training / robustness evaluation only: random flips, rotations, Gamma speckle on ``[0, 1]``);
6. grey replicated to 3 channels and ImageNet mean/std normalisation (:data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`,
   defined here once), so ImageNet-initialised encoders see what they were trained on.

Layouts (``docs/DESIGN.md``): reader arrays are spatial-first, ``(X, Y[, T])`` plus a trailing colour axis;
network inputs are ``(T, 3, S, S)`` per clip (DSANet windows are cut from it with
:func:`~usseg_models.transforms.clip.window_indices`) and ``(3, S, S)`` per image; X stays the first spatial axis.

Output back to the original size (:func:`postprocess_logits`): the **logits** are resized bilinearly
(``align_corners=False``) to the original ``(X, Y)`` and thresholded at 0 (foreground = logit > 0), which gives
smoother boundaries than thresholding first and resizing the binary mask.

Examples::

    >>> cine = np.random.randint(0, 255, (120, 90, 5), dtype=np.uint8)     # reader (X, Y, T)
    >>> preprocess_cine(cine, 64).shape
    torch.Size([5, 3, 64, 64])
    >>> logits = torch.randn(5, 1, 64, 64)
    >>> postprocess_logits(logits, (120, 90)).shape                        # label volume (X, Y, T)
    (120, 90, 5)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import Compose, MapTransform, RandFlipd, RandRotate90d, RandRotated, Transform

from usseg_models.errors import UssegError
from usseg_models.transforms.clip import ClipWindowd, RandClipTargetd
from usseg_models.transforms.errors import PreprocessingError
from usseg_models.transforms.fan import detect_fan
from usseg_models.transforms.intensity import (
    ChannelNormalize,
    ChannelNormalized,
    RepeatChannelsd,
    rgb_to_grey,
    scale_to_unit,
)
from usseg_models.transforms.resize import ResizeToNetworkd, resize_xy
from usseg_models.transforms.speckle import RandSpeckleNoised

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


def cine_to_unit_grey(frames: Any, intensity: str = "dtype", fan_mask: bool = False) -> torch.Tensor:
    """Reader cine -> grey ``[0, 1]`` float32 ``(T, 1, X, Y)`` (steps 1-3 of the module docstring).

    Args:
        frames: ``(X, Y, T)`` grey or ``(X, Y, T, C)`` colour (``C`` in 1, 3, 4), any dtype.
        intensity: ``"dtype"`` or ``"minmax"`` scaling (see :func:`~usseg_models.transforms.intensity.scale_to_unit`).
        fan_mask: zero the pixels outside the detected imaging fan.

    Raises:
        PreprocessingError: any other shape.
    """
    a = _to_numpy(frames)
    if a.ndim == 4 and a.shape[-1] in (1, 3, 4):
        _check_size(a.shape, "cine")
        if intensity == "dtype" and np.issubdtype(a.dtype, np.unsignedinteger):
            # luma is linear, so grey-then-scale equals scale-then-grey; chunks keep a float copy of a long colour
            # cine out of memory
            grey = np.empty(a.shape[:3], np.float32)
            for k in range(0, a.shape[2], _CHUNK):
                grey[:, :, k : k + _CHUNK] = rgb_to_grey(a[:, :, k : k + _CHUNK], channel_dim=-1)
            grey /= np.float32(np.iinfo(a.dtype).max)
        else:
            grey = rgb_to_grey(scale_to_unit(a, intensity), channel_dim=-1)
    elif a.ndim == 3:
        _check_size(a.shape, "cine")
        grey = scale_to_unit(a, intensity)
    else:
        raise PreprocessingError(f"a cine must be (X, Y, T) or (X, Y, T, 3), got shape {a.shape}")
    if fan_mask:
        grey = grey * detect_fan(grey)[..., None]
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(grey, 2, 0)[:, None])).float()


def image_to_unit_grey(image: Any, intensity: str = "dtype", fan_mask: bool = False) -> torch.Tensor:
    """Reader image -> grey ``[0, 1]`` float32 ``(1, X, Y)``.

    Args:
        image: ``(X, Y)`` grey, ``(X, Y, 1)`` (Slicer's one-slice volume) or ``(X, Y, 3|4)`` colour.
        intensity: ``"dtype"`` or ``"minmax"`` scaling.
        fan_mask: zero the pixels outside the detected imaging fan.

    Raises:
        PreprocessingError: any other shape.
    """
    a = _to_numpy(image)
    if a.ndim == 3 and a.shape[-1] in (1, 3, 4):
        _check_size(a.shape[:2], "image")
        grey = rgb_to_grey(scale_to_unit(a, intensity), channel_dim=-1)
    elif a.ndim == 2:
        _check_size(a.shape, "image")
        grey = scale_to_unit(a, intensity)
    else:
        raise PreprocessingError(f"an image must be (X, Y), (X, Y, 1) or (X, Y, 3), got shape {a.shape}")
    if fan_mask:
        grey = grey * detect_fan(grey)
    return torch.from_numpy(np.ascontiguousarray(grey[None])).float()


def _to_network(grey: torch.Tensor, spatial_size: int | Sequence[int], channel_dim: int) -> torch.Tensor:
    x = resize_xy(grey, spatial_size, mode="bilinear")
    x = torch.repeat_interleave(x, 3, dim=channel_dim)
    return imagenet_normalize(channel_dim)(x)


def preprocess_cine(
    frames: Any, spatial_size: int | Sequence[int], fan_mask: bool = False, intensity: str = "dtype"
) -> torch.Tensor:
    """Reader cine -> network frames ``(T, 3, S, S)`` float32 (grey, ``[0, 1]``, resize, 3 channels, ImageNet).

    Args:
        frames: ``(X, Y, T)`` or ``(X, Y, T, 3)``, any dtype.
        spatial_size: network size ``S`` (see ``usseg_models.networks.factory.network_spatial_size``).
        fan_mask: zero outside the imaging fan before resizing.
        intensity: ``"dtype"`` (default) or ``"minmax"`` scaling to ``[0, 1]``.

    Raises:
        PreprocessingError: a shape other than the two above.
    """
    return _to_network(cine_to_unit_grey(frames, intensity, fan_mask), spatial_size, channel_dim=1)


def preprocess_image(
    image: Any, spatial_size: int | Sequence[int], fan_mask: bool = False, intensity: str = "dtype"
) -> torch.Tensor:
    """Reader image -> network input ``(3, S, S)`` float32 (grey, ``[0, 1]``, resize, 3 channels, ImageNet).

    Args:
        image: ``(X, Y)``, ``(X, Y, 1)`` or ``(X, Y, 3)``, any dtype.
        spatial_size: network size ``S``.
        fan_mask: zero outside the imaging fan before resizing.
        intensity: ``"dtype"`` (default) or ``"minmax"``.

    Raises:
        PreprocessingError: another shape.
    """
    return _to_network(image_to_unit_grey(image, intensity, fan_mask), spatial_size, channel_dim=0)


def _binary(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a > 0)).to(torch.uint8)


def preprocess_cine_label(mask: Any, spatial_size: int | Sequence[int]) -> torch.Tensor:
    """Label volume ``(X, Y, T)`` (any non-zero = foreground) -> ``(T, 1, S, S)`` float32 in {0, 1} (nearest).

    Raises:
        PreprocessingError: not ``(X, Y, T)`` (a trailing size-1 axis is accepted).
    """
    a = _to_numpy(mask)
    if a.ndim == 4 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 3:
        raise PreprocessingError(f"a cine label must be (X, Y, T), got shape {a.shape}")
    _check_size(a.shape, "cine label")
    lab = _binary(np.moveaxis(a, 2, 0)[:, None])
    return resize_xy(lab, spatial_size, mode="nearest").float()


def preprocess_image_label(mask: Any, spatial_size: int | Sequence[int]) -> torch.Tensor:
    """Image label ``(X, Y)`` or ``(X, Y, 1)`` -> ``(1, S, S)`` float32 in {0, 1} (nearest).

    Raises:
        PreprocessingError: another shape.
    """
    a = _to_numpy(mask)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise PreprocessingError(f"an image label must be (X, Y) or (X, Y, 1), got shape {a.shape}")
    _check_size(a.shape, "image label")
    return resize_xy(_binary(a[None]), spatial_size, mode="nearest").float()


def postprocess_logits(logits: Any, original_xy: Sequence[int]) -> np.ndarray:
    """Network logits -> uint8 {0, 1} mask at the original size (bilinear resize of the logits, then > 0).

    Args:
        logits: ``(S, S)``, ``(1, S, S)`` (one image) or ``(N, 1, S, S)`` (N frames or a batch); torch or numpy.
        original_xy: the original ``(X, Y)``.

    Returns:
        ``(X, Y)`` for the first two forms, ``(X, Y, N)`` (the label-volume layout) for the last.

    Raises:
        PreprocessingError: another shape or a bad ``original_xy``.
    """
    original_xy = tuple(int(v) for v in original_xy)
    if len(original_xy) != 2 or min(original_xy) < 1:
        raise PreprocessingError(f"original_xy must be two positive sizes (X, Y), got {original_xy}")
    t = logits.as_tensor() if isinstance(logits, MetaTensor) else logits
    t = torch.as_tensor(t).detach().float().cpu()
    if t.ndim == 2 or (t.ndim == 3 and t.shape[0] == 1):
        return (resize_xy(t.reshape(t.shape[-2:]), original_xy, "bilinear") > 0).numpy().astype(np.uint8)
    if t.ndim == 4 and t.shape[1] == 1:
        out = resize_xy(t[:, 0], original_xy, "bilinear") > 0  # (N, X, Y)
        return np.ascontiguousarray(out.permute(1, 2, 0).numpy().astype(np.uint8))
    raise PreprocessingError(f"logits must be (S, S), (1, S, S) or (N, 1, S, S), got shape {tuple(t.shape)}")


class _Applyd(MapTransform):
    def __init__(self, keys: KeysCollection, fn: Callable[[Any], Any], allow_missing_keys: bool) -> None:
        super().__init__(keys, allow_missing_keys)
        self.fn = fn

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.fn(d[key])
        return d


class CineToUnitGreyd(_Applyd):
    """Dictionary form of :func:`cine_to_unit_grey` (image keys) -> ``(T, 1, X, Y)`` in ``[0, 1]``."""

    def __init__(
        self, keys: KeysCollection, intensity: str = "dtype", fan_mask: bool = False, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, lambda a: cine_to_unit_grey(a, intensity, fan_mask), allow_missing_keys)


class ImageToUnitGreyd(_Applyd):
    """Dictionary form of :func:`image_to_unit_grey` (image keys) -> ``(1, X, Y)`` in ``[0, 1]``."""

    def __init__(
        self, keys: KeysCollection, intensity: str = "dtype", fan_mask: bool = False, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, lambda a: image_to_unit_grey(a, intensity, fan_mask), allow_missing_keys)


class _CineLabeld(_Applyd):
    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = True) -> None:
        super().__init__(keys, lambda a: preprocess_cine_label(a, _no_resize(a)), allow_missing_keys)


class _ImageLabeld(_Applyd):
    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = True) -> None:
        super().__init__(keys, lambda a: preprocess_image_label(a, _no_resize(a)), allow_missing_keys)


class _SameGeometryd(MapTransform):
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


def _no_resize(a: Any) -> tuple[int, int]:
    return int(a.shape[0]), int(a.shape[1])


def _plain_float(a: Any) -> torch.Tensor:
    """float32 plain tensor: MONAI's random flips/rotations return MetaTensors with per-sample operation histories
    that are neither needed downstream (the original size is recorded under ``<key>_original_xy``) nor safe to
    collate with torch's default collate."""
    t = a.as_tensor() if isinstance(a, MetaTensor) else torch.as_tensor(a)
    return t.float().contiguous()


class _ToFloatd(_Applyd):
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
    """MONAI dictionary pipeline for cines, the same steps as :func:`preprocess_cine` / :func:`preprocess_cine_label`.

    Input: ``data[image_key]`` reader cine ``(X, Y, T[, 3])``; optional ``data[label_key]`` ``(X, Y, T)``; optional
    ``data[index_key]`` target frame ``t`` — when present, only the window ``window_indices(T, t, window)`` is kept.
    Output: image ``(T', 3, S, S)`` float32 normalised, label ``(T', 1, S, S)`` float32 {0, 1} (``T'`` = window or
    all frames), ``"<key>_original_xy"`` recorded.

    Args:
        spatial_size: network size ``S``.
        train: add augmentation: random flips of each spatial axis (p = 0.5 each), **one draw for all frames of
            the clip and its label**.
        speckle_L: when set, multiplicative Gamma speckle with ``L`` looks on ``[0, 1]`` intensity, per frame
            (training augmentation or the paper's robustness evaluation; applies with ``train`` False too).
        speckle_prob: probability of applying the speckle to a sample.
        fan_mask: zero outside the detected fan.
        image_key, label_key, index_key: dictionary keys.
        window: DSANet window length.
        random_window: draw the target frame uniformly per sample (stored under ``index_key``, replacing any value
            there), so each sample is one random window of the cine; honours ``set_random_state``.
    """
    keys = (image_key, label_key)
    xforms: list[Transform] = [
        CineToUnitGreyd(image_key, fan_mask=fan_mask),
        _CineLabeld(label_key),
        _SameGeometryd(image_key, label_key),
    ]
    if random_window:
        xforms.append(RandClipTargetd(image_key, index_key=index_key, time_dim=0))
    xforms += [
        ClipWindowd(keys, index_key=index_key, window=window, time_dim=0, require_index=False, allow_missing_keys=True),
        ResizeToNetworkd(keys, spatial_size, mode=("bilinear", "nearest"), allow_missing_keys=True),
    ]
    if train:
        # (T, 1, S, S): MONAI sees T as channels, spatial axes 1 and 2 are X and Y; one draw flips all frames.
        xforms += [
            RandFlipd(keys, prob=0.5, spatial_axis=1, allow_missing_keys=True),
            RandFlipd(keys, prob=0.5, spatial_axis=2, allow_missing_keys=True),
        ]
    if speckle_L is not None:
        xforms.append(RandSpeckleNoised(image_key, L=speckle_L, prob=speckle_prob, channel_dim=1))
    xforms += [
        RepeatChannelsd(image_key, 3, channel_dim=1),
        ChannelNormalized(image_key, IMAGENET_MEAN, IMAGENET_STD, channel_dim=1),
        _ToFloatd(keys),
    ]
    return UssegCompose(xforms)


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
    """MONAI dictionary pipeline for 2D images, the same steps as :func:`preprocess_image` / ``_label``.

    Input: ``data[image_key]`` ``(X, Y[, 1|3])``; optional ``data[label_key]`` ``(X, Y[, 1])``.
    Output: image ``(3, S, S)`` float32 normalised, label ``(1, S, S)`` float32 {0, 1}.

    Args:
        spatial_size: network size ``S``.
        train: add augmentation, identical for image and label: flips of each axis (p = 0.5), a rotation by a
            uniformly drawn multiple of 90 degrees (exact, no interpolation), and, when ``rotate_degrees > 0``, a
            further rotation by up to ``+-rotate_degrees`` (p = 0.5; bilinear image, nearest label, zero padding).
        speckle_L: Gamma speckle looks (see :func:`cine_transforms`).
        speckle_prob: probability of applying the speckle.
        fan_mask: zero outside the detected fan.
        rotate_degrees: maximal small-angle rotation (0 = none).
        image_key, label_key: dictionary keys.
    """
    keys = (image_key, label_key)
    xforms: list[Transform] = [
        ImageToUnitGreyd(image_key, fan_mask=fan_mask),
        _ImageLabeld(label_key),
        _SameGeometryd(image_key, label_key),
        ResizeToNetworkd(keys, spatial_size, mode=("bilinear", "nearest"), allow_missing_keys=True),
    ]
    if train:
        xforms += [
            RandFlipd(keys, prob=0.5, spatial_axis=0, allow_missing_keys=True),
            RandFlipd(keys, prob=0.5, spatial_axis=1, allow_missing_keys=True),
            RandRotate90d(keys, prob=0.75, max_k=3, allow_missing_keys=True),
        ]
        if rotate_degrees > 0:
            xforms.append(
                RandRotated(
                    keys,
                    range_x=math.radians(rotate_degrees),
                    prob=0.5,
                    mode=("bilinear", "nearest"),
                    padding_mode="zeros",
                    allow_missing_keys=True,
                )
            )
    if speckle_L is not None:
        xforms.append(RandSpeckleNoised(image_key, L=speckle_L, prob=speckle_prob, channel_dim=0))
    xforms += [
        RepeatChannelsd(image_key, 3, channel_dim=0),
        ChannelNormalized(image_key, IMAGENET_MEAN, IMAGENET_STD, channel_dim=0),
        _ToFloatd(keys),
    ]
    return UssegCompose(xforms)
