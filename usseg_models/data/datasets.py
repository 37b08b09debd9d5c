"""Load training data and serve it as torch Datasets built on the one network-input pipeline.

Records come from discovery (``discover_clips``, ``discover_images`` in :mod:`usseg_models.data.discovery`;
public layouts in :mod:`usseg_models.data.layouts`); this module reads their files through the reader registry
(:func:`usseg_models.io.load_image`) and turns them into network inputs with
:class:`~usseg_models.transforms.pipeline.ModelPipeline` — the same pipeline inference uses. The deterministic stage
(grey, ``[0, 1]``, resize) is cached per clip/image; the random stage (flips, rotations, optional Gamma speckle; one
draw per sample for every frame and mask) and the final stage (3 channels, ImageNet normalisation) run per item.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from usseg_models.data.records import (
    ClipRecord,
    DataLayoutError,
    ImageRecord,
    MaskLabelError,
    binarize_label,
    label_values_of,
)
from usseg_models.labels import LabelSet, LabelSetError
from usseg_models.transforms.pipeline import Augmentation, ModelPipeline

__all__ = [
    "ClipWindowDataset",
    "ImageSegDataset",
    "load_clip_arrays",
    "load_image_arrays",
    "mask_values",
    "training_pipeline",
    "worker_init_fn",
]

logger = logging.getLogger(__name__)


def _load(path: Path) -> tuple[np.ndarray, dict]:
    from usseg_models.io import load_image

    array, meta = load_image(path)
    return np.asarray(array), meta


def _is_colour(meta: dict) -> bool:
    return meta.get("original_channel_dim") == -1


def _check_label_args(label_value: int | None, labels: LabelSet | None) -> None:
    if labels is not None and label_value is not None:
        raise ValueError("give either label_value (one class of a multi-class mask) or labels (a label set), not both")
    if labels is not None and not isinstance(labels, LabelSet):
        raise TypeError(f"labels must be a LabelSet, got {type(labels).__name__}")


def _load_label(paths: Path | Sequence[Path], label_value: int | None, labels: LabelSet | None = None) -> np.ndarray:
    """One label file (or several merged): 0/1 foreground (no ``labels``), else class indices of ``labels``."""
    paths = [paths] if isinstance(paths, Path) else list(paths)
    out = None
    for p in paths:
        arr, meta = _load(p)
        if labels is None:
            lab = binarize_label(arr, label_value, colour=_is_colour(meta))
        else:
            try:
                lab = labels.to_indices(label_values_of(arr, colour=_is_colour(meta)), unknown="error")
            except LabelSetError as exc:
                raise MaskLabelError(f"{p}: {exc}") from exc
        out = lab if out is None else np.maximum(out, lab)
    return out


def mask_values(records: Sequence[ClipRecord | ImageRecord]) -> list[int]:
    """Sorted non-zero label values found in the mask files of ``records`` (for ``--labels auto``).

    Only the labelled frames' files of frame-folder clips are read (the others are ``None``).
    """
    found: set[int] = set()
    for r in records:
        label = r.label
        paths = [label] if isinstance(label, Path) else [p for p in label if p is not None]
        for p in paths:
            arr, meta = _load(p)
            found.update(int(v) for v in np.unique(label_values_of(arr, colour=_is_colour(meta))))
    return sorted(found - {0})


def _load_frames(frames: Sequence[Path]) -> np.ndarray:
    """Frame files → cine ``(X, Y, T[, 3])`` (colour kept only when every frame is colour)."""
    loaded = [_load(f) for f in frames]
    arrays = [a for a, _ in loaded]
    if len({_is_colour(m) for _, m in loaded}) > 1:  # mixed grey/colour frames: make all grey
        arrays = [a[..., :3].mean(axis=-1).round().astype(a.dtype) if _is_colour(m) else a for a, m in loaded]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DataLayoutError(f"frames of {frames[0].parent} have different sizes: {sorted(shapes)}")
    return np.stack(arrays, axis=2)


def load_clip_arrays(record: ClipRecord, label_value: int | None = None,
                     labels: LabelSet | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reader arrays of one clip: ``(cine (X, Y, T[, 3]) stored dtype, label (X, Y, T) uint8)``.

    The label is 0/1 foreground (:func:`binarize_label` with ``label_value``), or with ``labels`` the class indices
    of its structures (``labels.to_indices``: 0 = background, ``i`` = ``labels.values[i - 1]``). Frames without a
    mask (sparse-frame labels) are 0 either way; :attr:`ClipRecord.labelled` says which are real.

    Raises:
        DataLayoutError: when the cine and its mask volume disagree in size or frame count.
        MaskLabelError: a mask holds values outside ``labels``.
    """
    _check_label_args(label_value, labels)
    if isinstance(record.image, tuple):
        cine = _load_frames(record.image)
        frames = [None if p is None else _load_label(p, label_value, labels) for p in record.label]
        known = next((f for f in frames if f is not None), None)
        if known is None:
            raise DataLayoutError(f"clip {record.id} has no mask at all")
        label = np.stack([np.zeros_like(known) if f is None else f for f in frames], axis=2)
    else:
        cine, meta = _load(record.image)
        if meta.get("num_frames") is None:  # a single-frame file: one-frame cine
            cine = cine[:, :, None]
        label = _load_label(record.label, label_value, labels)
    if label.ndim == 2:
        label = label[..., None]
    if tuple(cine.shape[:3]) != tuple(label.shape[:3]):
        raise DataLayoutError(
            f"clip {record.id}: cine shape {cine.shape[:3]} and mask volume {label.shape[:3]} differ "
            "((X, Y, T) expected)"
        )
    return cine, label


def load_image_arrays(record: ImageRecord, label_value: int | None = None,
                      labels: LabelSet | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reader arrays of one image: ``(image (X, Y[, 3]) stored dtype, label (X, Y) uint8)``: 0/1 foreground, or the
    class indices of ``labels`` (as :func:`load_clip_arrays`).

    Raises:
        DataLayoutError: when image and mask sizes differ.
        MaskLabelError: a mask holds values outside ``labels``.
    """
    _check_label_args(label_value, labels)
    image, _ = _load(record.image)
    label = _load_label(record.label, label_value, labels)
    if label.ndim == 3 and label.shape[-1] == 1:
        label = label[..., 0]
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if tuple(image.shape[:2]) != tuple(label.shape[:2]):
        raise DataLayoutError(f"image {record.image} {image.shape[:2]} and mask {label.shape[:2]} sizes differ")
    return image, label


def training_pipeline(kind: str, spatial_size: int, augment: bool | Augmentation, seed: int = 0,
                      label_classes: bool = False) -> ModelPipeline:
    """The pipeline of a training set: ``augment`` True = :meth:`Augmentation.training` of the kind, False = none;
    ``label_classes`` keeps class-index labels (a label set) instead of {0, 1} foreground."""
    aug = Augmentation.training(kind) if augment is True else (augment or None)
    return ModelPipeline(kind, spatial_size, augmentation=aug, seed=seed, label_classes=label_classes)


def _check_size(spatial_size: int) -> int:
    if int(spatial_size) < 8:
        raise ValueError(f"spatial_size must be >= 8, got {spatial_size}")
    return int(spatial_size)


class _PipelineMixin:
    pipeline: ModelPipeline

    def set_random_state(self, seed: int) -> None:
        """Seed the augmentation (also reseeded per DataLoader worker by :func:`worker_init_fn`)."""
        self.pipeline.set_random_state(int(seed))

    def _keep_args(
        self, records: Sequence, spatial_size: int, augment: bool | Augmentation, label_value: int | None,
        labels: LabelSet | None, what: str,
    ) -> None:
        """Check and keep the arguments both datasets share (``what`` names a record in the empty-records error)."""
        if not records:
            raise ValueError(f"{type(self).__name__} needs at least one {what} record")
        _check_label_args(label_value, labels)
        self.records = list(records)
        self.spatial_size = _check_size(spatial_size)
        self.augment, self.label_value, self.labels = bool(augment), label_value, labels

    def _base(self, image, label) -> tuple[torch.Tensor, torch.Tensor]:
        """Reader arrays through the pipeline's deterministic stage (what the dataset caches): grey ``[0, 1]``
        image and ``{0, 1}`` label (class indices with a label set) at the network size, ``(T, 1, S, S)`` per clip,
        ``(1, S, S)`` per image."""
        d = self.pipeline.base(image, label)
        return d["image"], d["label"]


class ClipWindowDataset(_PipelineMixin, Dataset):
    """DSANet training samples: one item per (clip, labelled target frame), a 3-frame window and its masks.

    Clips are loaded once through the pipeline's deterministic stage (cached at ``spatial_size``, one grey channel);
    windows follow :func:`usseg_models.transforms.clip.window_indices` (index 0 = target t, then t-1, t-2) and go
    through the random and final stages per item. With sparse-frame labels (:attr:`ClipRecord.labelled`) only
    windows whose **target** is labelled are made, and ``valid`` marks which of the window's three frames have
    masks, so the auxiliary terms of unlabelled frames drop out of :class:`~usseg_models.losses.DSANetLoss`;
    unlabelled frames still serve as input context.

    Args:
        records: clips from :func:`discover_clips`.
        spatial_size: square network input size.
        augment: ``True`` = :meth:`Augmentation.training` for clips (flips, the same for all frames and masks of a
            window), an :class:`Augmentation` (e.g. with speckle), or ``False``.
        label_value: class kept as foreground (see :func:`binarize_label`).
        labels: a :class:`~usseg_models.labels.LabelSet` of several structures: labels become class indices
            (``labels.to_indices``; values outside the set are an error). Not with ``label_value``.
        window: frames per sample (3 for DSANet).
        seed: augmentation seed.

    Item:
        ``{"image": (T, 3, S, S), "label": (T, 1, S, S), "valid": (T,) float, "id": str, "frame": int}`` (label:
        0/1, or class indices with ``labels``).

    Examples::

        >>> ds = ClipWindowDataset(discover_clips("data/"), spatial_size=64)  # doctest: +SKIP
        >>> ds[0]["image"].shape  # doctest: +SKIP
        torch.Size([3, 3, 64, 64])
    """

    def __init__(
        self,
        records: Sequence[ClipRecord],
        spatial_size: int,
        augment: bool | Augmentation = False,
        label_value: int | None = None,
        window: int = 3,
        seed: int = 0,
        labels: LabelSet | None = None,
    ) -> None:
        self._keep_args(records, spatial_size, augment, label_value, labels, "clip")
        self.window = int(window)
        self.pipeline = training_pipeline("cine", self.spatial_size, augment, seed, label_classes=labels is not None)
        self.clips = [self._base(*load_clip_arrays(r, label_value, labels)) for r in self.records]
        self.labelled = [set(r.labelled_frames(frames.shape[0])) for r, (frames, _) in zip(self.records, self.clips)]
        self.index = [(c, t) for c, (frames, _) in enumerate(self.clips) for t in range(frames.shape[0])
                      if t in self.labelled[c]]
        if not self.index:
            raise ValueError("no labelled target frame in these clips")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        from usseg_models.transforms.clip import window_indices

        c, t = self.index[i]
        frames, masks = self.clips[c]
        idx = window_indices(frames.shape[0], t, self.window)
        image, label = self.pipeline.train_sample(frames[idx], masks[idx])
        valid = torch.tensor([1.0 if i in self.labelled[c] else 0.0 for i in idx])
        return {"image": image, "label": label, "valid": valid, "id": self.records[c].id, "frame": t}


class ImageSegDataset(_PipelineMixin, Dataset):
    """IntraSense-Net / UNet samples: one image and its mask through the shared pipeline.

    Args:
        records: images from :func:`discover_images`.
        spatial_size: square network input size (256 in the IntraSense-Net paper).
        augment: ``True`` = :meth:`Augmentation.training` for images (flips and 90-degree rotations; the paper
            trains with flips and rotations), an :class:`Augmentation`, or ``False``.
        label_value: class kept as foreground (see :func:`binarize_label`).
        seed: augmentation seed.
        labels: a label set of several structures (labels become class indices; see :class:`ClipWindowDataset`).

    Item:
        ``{"image": (3, S, S), "label": (1, S, S), "id": str}`` (label: 0/1, or class indices with ``labels``).
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        spatial_size: int,
        augment: bool | Augmentation = False,
        label_value: int | None = None,
        seed: int = 0,
        labels: LabelSet | None = None,
    ) -> None:
        self._keep_args(records, spatial_size, augment, label_value, labels, "image")
        self.pipeline = training_pipeline("image", self.spatial_size, augment, seed, label_classes=labels is not None)
        self.items = [self._base(*load_image_arrays(r, label_value, labels)) for r in self.records]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        image, label = self.pipeline.train_sample(*self.items[i])
        return {"image": image, "label": label, "id": self.records[i].id}


def worker_init_fn(worker_id: int) -> None:
    """DataLoader hook: give each worker its own augmentation stream."""
    info = torch.utils.data.get_worker_info()
    if info is not None and hasattr(info.dataset, "set_random_state"):
        info.dataset.set_random_state(int(info.seed % 2**31))
