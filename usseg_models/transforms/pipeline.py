"""THE network-input pipeline: one MONAI transform pipeline per model, used by training, inference, evaluation and
the MONAI Label app, with its inverse (network output back to the original size) beside it.

A :class:`ModelPipeline` has three stages, each a MONAI dictionary ``Compose`` over the keys ``image``/``label``:

1. ``base`` (deterministic): colour -> grey (BT.601 luma), intensity -> ``[0, 1]`` by the stored type's range,
   the image/label geometry check, an optional DSANet window, resize to the network size ``S``
   (bilinear images, nearest labels). Output ``(T, 1, S, S)`` per cine, ``(1, S, S)`` per image. Training caches
   this stage's output (one grey channel: a third of the memory of the final input).
2. ``augment`` (random, seeded with :meth:`ModelPipeline.set_random_state`; only when an :class:`Augmentation`
   is given): random flips of both spatial axes, random multiples of 90 degrees, a small-angle rotation and
   multiplicative Gamma speckle (:class:`~usseg_models.transforms.speckle.RandSpeckleNoised`). Each spatial draw is
   made **once per sample and applied to every frame of the clip and to its masks**; speckle touches images only,
   a fresh field per frame.
3. ``finish`` (deterministic): grey replicated to 3 channels, ImageNet mean/std normalisation (so ImageNet-
   initialised encoders see what they were trained on), plain float32 tensors.

Inference runs ``base`` + ``finish``; training runs ``base`` (cached) + ``augment`` + ``finish``; the paper's
speckle-robustness evaluation runs ``base`` + ``augment`` with speckle only + ``finish``. So for the same frames,
inference and training without augmentation give identical tensors (``tests/test_transforms_pipeline.py``).

The inverse (:func:`postprocess_logits`, :meth:`ModelPipeline.inverse`): **logits** are resized bilinearly
(``align_corners=False``) to the original ``(X, Y)`` and thresholded at 0 (foreground = logit > 0), which gives
smoother boundaries than thresholding first and resizing the binary mask.

Examples::

    >>> pipe = ModelPipeline("cine", 64)
    >>> cine = np.random.randint(0, 255, (120, 90, 5), dtype=np.uint8)     # reader (X, Y, T)
    >>> pipe.inputs(cine).shape
    torch.Size([5, 3, 64, 64])
    >>> pipe.inverse(torch.randn(5, 1, 64, 64), (120, 90)).shape           # label volume (X, Y, T)
    (120, 90, 5)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Lambdad, RandFlipd, RandRotate90d, RandRotated, SqueezeDimd, Transform

from usseg_models.transforms.clip import ClipWindowd, RandClipTargetd
from usseg_models.transforms.errors import PreprocessingError
from usseg_models.transforms.intensity import ChannelNormalized, RepeatChannelsd
from usseg_models.transforms.resize import ResizeToNetworkd, resize_xy
from usseg_models.transforms.speckle import RandSpeckleNoised
from usseg_models.transforms.steps import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CineLabelToTensord,
    CineToUnitGreyd,
    ImageLabelToTensord,
    ImageToUnitGreyd,
    PlainFloatd,
    SameGeometryd,
    UssegCompose,
)

__all__ = ["KINDS", "Augmentation", "ModelPipeline", "postprocess_logits", "postprocess_probabilities"]

KINDS = ("cine", "image")


@dataclass(frozen=True)
class Augmentation:
    """Random part of the pipeline (stage 2). Every spatial draw is shared by all frames and masks of a sample.

    Attributes:
        flips: flip each spatial axis with p = 0.5.
        rot90: rotate by a uniformly drawn multiple of 90 degrees (exact, no interpolation).
        rotate_degrees: when ``> 0``, a further rotation by up to ``+-rotate_degrees`` (p = 0.5; bilinear image,
            nearest label, zero padding).
        speckle_L: when set, multiplicative Gamma speckle with ``L`` looks on ``[0, 1]`` intensity (images only).
        speckle_prob: probability of applying the speckle to a sample.
    """

    flips: bool = True
    rot90: bool = False
    rotate_degrees: float = 0.0
    speckle_L: float | None = None
    speckle_prob: float = 0.5

    def __post_init__(self) -> None:
        if float(self.rotate_degrees) < 0:
            raise ValueError(f"rotate_degrees must be >= 0, got {self.rotate_degrees}")
        if self.speckle_L is not None and not float(self.speckle_L) > 0:
            raise ValueError(f"speckle_L (looks) must be > 0, got {self.speckle_L}")
        if not 0.0 <= float(self.speckle_prob) <= 1.0:
            raise ValueError(f"speckle_prob must be in [0, 1], got {self.speckle_prob}")

    @classmethod
    def training(cls, kind: str, speckle_L: float | None = None, speckle_prob: float = 0.5) -> Augmentation:
        """The training default of a model kind: flips for clips (DSANet); flips and 90-degree rotations for images
        (the IntraSense-Net paper trains with flips and rotations); optional speckle."""
        return cls(flips=True, rot90=kind == "image", speckle_L=speckle_L, speckle_prob=speckle_prob)

    @classmethod
    def speckle_only(cls, speckle_L: float, prob: float = 1.0) -> Augmentation:
        """Speckle without geometric change: the paper's noise-robustness evaluation."""
        return cls(flips=False, speckle_L=speckle_L, speckle_prob=prob)

    @property
    def spatial(self) -> bool:
        """Whether any geometric transform is drawn."""
        return self.flips or self.rot90 or float(self.rotate_degrees) > 0


def _spatial_augmentation(aug: Augmentation, keys: tuple[str, str]) -> list[Transform]:
    """Random 2D spatial transforms on channel-first ``(C, X, Y)``: one draw per call for all channels and keys."""
    out: list[Transform] = []
    if aug.flips:
        out += [RandFlipd(keys, prob=0.5, spatial_axis=0, allow_missing_keys=True),
                RandFlipd(keys, prob=0.5, spatial_axis=1, allow_missing_keys=True)]
    if aug.rot90:
        out.append(RandRotate90d(keys, prob=0.75, max_k=3, allow_missing_keys=True))
    if float(aug.rotate_degrees) > 0:
        out.append(RandRotated(keys, range_x=math.radians(float(aug.rotate_degrees)), prob=0.5,
                               mode=("bilinear", "nearest"), padding_mode="zeros", allow_missing_keys=True))
    return out


def _to_original(logits: Any, original_xy: Sequence[int], fn: Callable[[torch.Tensor], torch.Tensor],
                 multi: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """To the original size, frames last (the label-volume layout).

    One channel: ``fn`` (elementwise) on the logits, then bilinear resize to ``(X, Y)``. Several channels (``1 + n``
    structures): every channel's logits resized bilinearly, then ``multi`` maps ``(N, C, X, Y)`` to ``(N, X, Y)``.
    """
    original_xy = tuple(int(v) for v in original_xy)
    if len(original_xy) != 2 or min(original_xy) < 1:
        raise PreprocessingError(f"original_xy must be two positive sizes (X, Y), got {original_xy}")
    t = logits.as_tensor() if isinstance(logits, MetaTensor) else logits
    t = torch.as_tensor(t).detach().float().cpu()
    if t.ndim == 2 or (t.ndim == 3 and t.shape[0] == 1):
        return resize_xy(fn(t.reshape(t.shape[-2:])), original_xy, "bilinear")
    if t.ndim == 4 and t.shape[1] == 1:
        return resize_xy(fn(t[:, 0]), original_xy, "bilinear").permute(1, 2, 0)  # (N, X, Y) -> (X, Y, N)
    if t.ndim in (3, 4) and t.shape[-3] >= 3:  # (C, S, S) one image / (N, C, S, S), C = 1 + n structures
        batch = t[None] if t.ndim == 3 else t
        resized = torch.stack([resize_xy(batch[:, c], original_xy, "bilinear") for c in range(batch.shape[1])], 1)
        out = multi(resized)  # (N, X, Y)
        return out[0] if t.ndim == 3 else out.permute(1, 2, 0)
    raise PreprocessingError(f"logits must be (S, S), (C, S, S) or (N, C, S, S) with C = 1 or ≥ 3, "
                             f"got shape {tuple(t.shape)}")


def postprocess_logits(logits: Any, original_xy: Sequence[int]) -> np.ndarray:
    """Network logits -> uint8 mask at the original size (bilinear resize of the logits, then > 0).

    Several channels (``1 + n`` structures): every channel resized bilinearly, then the class index (argmax;
    0 = background, ``i`` = the ``i``-th structure of the model's :class:`~usseg_models.labels.LabelSet`).

    Args:
        logits: ``(S, S)``, ``(C, S, S)`` (one image) or ``(N, C, S, S)`` (N frames or a batch); torch or numpy.
        original_xy: the original ``(X, Y)``.

    Returns:
        ``(X, Y)`` for the first two forms, ``(X, Y, N)`` (the label-volume layout) for the last.

    Raises:
        PreprocessingError: another shape or a bad ``original_xy``.
    """
    shape = tuple(np.shape(logits.as_tensor() if isinstance(logits, MetaTensor) else logits))
    several = len(shape) in (3, 4) and shape[-3] >= 3
    out = _to_original(logits, original_xy, lambda t: t, lambda t: t.argmax(1))
    return np.ascontiguousarray((out if several else out > 0).numpy().astype(np.uint8))


def postprocess_probabilities(logits: Any, original_xy: Sequence[int]) -> np.ndarray:
    """Network logits -> float32 foreground probability at the original size (sigmoid, then bilinear resize; with
    several structures the probability of any structure, ``1 − p(background)``); shapes as
    :func:`postprocess_logits` (used for MAE and probability outputs)."""
    out = _to_original(logits, original_xy, torch.sigmoid, lambda t: 1 - torch.softmax(t, dim=1)[:, 0])
    return np.ascontiguousarray(out.numpy().astype(np.float32))


class ModelPipeline:
    """The network-input pipeline of one model kind (stages in the module docstring).

    Args:
        kind: ``"cine"`` (DSANet: reader ``(X, Y, T[, 3])`` -> ``(T, 3, S, S)``) or ``"image"`` (IntraSense-Net,
            UNet: reader ``(X, Y[, 1|3])`` -> ``(3, S, S)``).
        spatial_size: network size ``S`` (``usseg_models.networks.factory.network_spatial_size``).
        augmentation: the random stage; ``None`` = none (inference).
        seed: seed of the random stage.
        image_key, label_key: dictionary keys.
        label_classes: keep label values as class indices (several structures; labels are resized with nearest
            neighbour, so they survive) instead of {0, 1} foreground.

    Raises:
        ValueError: an unknown ``kind``.
    """

    def __init__(
        self,
        kind: str,
        spatial_size: int | Sequence[int],
        augmentation: Augmentation | None = None,
        seed: int = 0,
        image_key: str = "image",
        label_key: str = "label",
        label_classes: bool = False,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind, self.spatial_size = kind, spatial_size
        self.augmentation = augmentation
        self.image_key, self.label_key = image_key, label_key
        self.label_classes = bool(label_classes)
        self.keys = (image_key, label_key)
        self.channel_dim = 1 if kind == "cine" else 0
        self._base = UssegCompose(self.base_transforms() + [PlainFloatd(self.keys)])
        self._infer = UssegCompose(self.base_transforms() + self.finish_transforms())
        self._train = UssegCompose(self.augment_transforms() + self.finish_transforms())
        self.set_random_state(seed)

    # ------------------------------------------------------------------ stages
    def base_transforms(self, window: int | None = None, index_key: str = "frame_index",
                        random_window: bool = False) -> list[Transform]:
        """Stage 1. With ``window`` (cines), keep only ``window_indices(T, d[index_key], window)`` when the sample
        has an ``index_key`` (drawn uniformly per sample when ``random_window``)."""
        keys = self.keys
        if self.kind == "cine":
            xforms: list[Transform] = [CineToUnitGreyd(self.image_key, allow_missing_keys=True),
                                       CineLabelToTensord(self.label_key, classes=self.label_classes)]
        else:
            xforms = [ImageToUnitGreyd(self.image_key, allow_missing_keys=True),
                      ImageLabelToTensord(self.label_key, classes=self.label_classes)]
        xforms.append(SameGeometryd(self.image_key, self.label_key))
        if self.kind == "cine" and window is not None:
            if random_window:
                xforms.append(RandClipTargetd(self.image_key, index_key=index_key, time_dim=0))
            xforms.append(ClipWindowd(keys, index_key=index_key, window=window, time_dim=0, require_index=False,
                                      allow_missing_keys=True))
        xforms.append(ResizeToNetworkd(keys, self.spatial_size, mode=("bilinear", "nearest"), allow_missing_keys=True))
        return xforms

    def augment_transforms(self, augmentation: Augmentation | None = None) -> list[Transform]:
        """Stage 2 for ``augmentation`` (default: the pipeline's own; empty when there is none)."""
        aug = augmentation or self.augmentation
        if aug is None:
            return []
        keys, xforms = self.keys, []
        if aug.spatial:
            spatial = _spatial_augmentation(aug, keys)
            if self.kind == "cine":
                # (T, 1, S, S) -> (T, S, S): MONAI then sees the frames as channels of one 2D sample, so a single
                # draw moves every frame and mask alike
                spatial = [SqueezeDimd(keys, dim=1, allow_missing_keys=True), *spatial,
                           Lambdad(keys, lambda t: t.unsqueeze(1), allow_missing_keys=True)]
            xforms += spatial
        if aug.speckle_L is not None:
            xforms.append(RandSpeckleNoised(self.image_key, L=aug.speckle_L, prob=aug.speckle_prob,
                                            channel_dim=self.channel_dim))
        return xforms

    def finish_transforms(self) -> list[Transform]:
        """Stage 3: 3 channels, ImageNet normalisation, plain float32 tensors."""
        return [
            RepeatChannelsd(self.image_key, 3, channel_dim=self.channel_dim),
            ChannelNormalized(self.image_key, IMAGENET_MEAN, IMAGENET_STD, channel_dim=self.channel_dim),
            PlainFloatd(self.keys),
        ]

    def transform(self, augmentation: Augmentation | None = None, window: int | None = None,
                  index_key: str = "frame_index", random_window: bool = False) -> UssegCompose:
        """All three stages as one MONAI ``Compose`` over reader arrays (evaluation, MONAI-style data loading)."""
        return UssegCompose(self.base_transforms(window, index_key, random_window)
                            + self.augment_transforms(augmentation) + self.finish_transforms())

    # ------------------------------------------------------------------ calls
    def set_random_state(self, seed: int) -> ModelPipeline:
        """Seed the random stage (training; reseeded per DataLoader worker)."""
        self._train.set_random_state(int(seed))
        return self

    def base(self, image: Any, label: Any = None) -> dict[str, Any]:
        """Stage 1 only: ``{"image": (T, 1, S, S) | (1, S, S), "label": ... (when given)}`` in ``[0, 1]``."""
        data = {self.image_key: image}
        if label is not None:
            data[self.label_key] = label
        return self._base(data)

    def train_sample(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stages 2 + 3 on a ``base`` output (or a window of one): the training sample ``(image, label)``."""
        d = self._train({self.image_key: image, self.label_key: label})
        return d[self.image_key], d[self.label_key]

    def inputs(self, image: Any) -> torch.Tensor:
        """Inference: reader array -> network input ``(T, 3, S, S)`` (cine) or ``(3, S, S)`` (image)."""
        return self._infer({self.image_key: image})[self.image_key]

    def labels(self, label: Any) -> torch.Tensor:
        """Reader label -> ``(T, 1, S, S)`` / ``(1, S, S)`` float32 in {0, 1} (stage 1 on a label alone)."""
        return self._base({self.label_key: label})[self.label_key]

    @staticmethod
    def inverse(logits: Any, original_xy: Sequence[int]) -> np.ndarray:
        """Network logits -> uint8 mask at the original ``(X, Y)`` (:func:`postprocess_logits`)."""
        return postprocess_logits(logits, original_xy)

    @staticmethod
    def inverse_probabilities(logits: Any, original_xy: Sequence[int]) -> np.ndarray:
        """Network logits -> float32 probability at the original ``(X, Y)`` (:func:`postprocess_probabilities`)."""
        return postprocess_probabilities(logits, original_xy)
