"""Training-data records and the naming rules every layout shares.

:class:`ClipRecord` (one video, possibly with sparse-frame labels) and :class:`ImageRecord` (one image with its mask
files) are what discovery (:mod:`usseg_models.data.discovery`, :mod:`usseg_models.data.layouts`) produces and the
datasets (:mod:`usseg_models.data.datasets`) load. Also here: file extensions, frame/mask folder names, split
folder names, subjects for k-fold (:func:`subject_of`) and label binarisation (:func:`binarize_label`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from usseg_models.errors import UssegError
from usseg_models.io.formats import suffixes_of
from usseg_models.labels import LabelSetError

__all__ = [
    "FRAME_DIR_NAMES",
    "MASK_DIR_NAMES",
    "IMAGE_EXTS",
    "VOLUME_EXTS",
    "VIDEO_EXTS",
    "MASK_SUFFIX",
    "SPLIT_NAME",
    "DataLayoutError",
    "ClipRecord",
    "ImageRecord",
    "subject_of",
    "binarize_label",
    "label_values_of",
    "MaskLabelError",
]

FRAME_DIR_NAMES = ("image", "images", "img", "imgs", "frame", "frames", "Frame", "Frames", "JPEGImages")
MASK_DIR_NAMES = (
    "mask", "masks", "labels_clean", "labels", "label", "GT", "gt", "ground_truth", "Annotations", "annotations",
)
# file name endings from the format registry: always an image; a volume whose header says image or cine; a video
IMAGE_EXTS = suffixes_of("image")
VOLUME_EXTS = suffixes_of(None)
VIDEO_EXTS = suffixes_of("cine")
MASK_SUFFIX = re.compile(r"_(mask|label|seg|gt)(_\d+)?$", re.IGNORECASE)


class DataLayoutError(UssegError, ValueError):
    """No usable image/label pairs were found (message names the folder and the layouts tried)."""


@dataclass(frozen=True)
class ClipRecord:
    """One video: a cine file (``image`` is a Path) or ordered frame files (``image`` is a tuple of Paths).

    ``labelled`` lists the 0-based frames whose masks are real (sparse-frame labels: keyframes, ED/ES, the frames
    a user reviewed); ``None`` means every frame. Frame-folder clips may then hold ``None`` in ``label`` for the
    frames without a mask file; those frames are never read and never supervise training.
    """

    id: str
    image: Path | tuple[Path, ...]
    label: Path | tuple[Path | None, ...]
    subject: str
    split: str | None = None
    labelled: tuple[int, ...] | None = None

    def labelled_frames(self, num_frames: int) -> list[int]:
        """Sorted labelled frame indices of a clip of ``num_frames`` frames (out-of-range entries dropped)."""
        if self.labelled is None:
            return list(range(num_frames))
        return sorted({int(t) for t in self.labelled if 0 <= int(t) < num_frames})


@dataclass(frozen=True)
class ImageRecord:
    """One image with one or more mask files (merged by union)."""

    id: str
    image: Path
    label: tuple[Path, ...] = field(default_factory=tuple)
    subject: str = ""
    split: str | None = None


def _ext(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _stem(path: Path) -> str:
    ext = _ext(path)
    return path.name[: -len(ext)] if ext else path.name


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def subject_of(identifier: str, pattern: str | None = None) -> str:
    """Subject of an image/clip id, for splits that keep a subject's images together.

    Default rule: ``patient0001_2CH_ED`` → ``patient0001`` (CAMUS); a leading number ``019_2HC`` → ``019`` (HC18:
    several images per subject share it); otherwise the id itself (every image its own subject).
    ``pattern`` (a regex with one group) overrides the rule.
    """
    if pattern:
        m = re.search(pattern, identifier)
        return m.group(1) if m else identifier
    m = re.match(r"(patient\d+)", identifier, re.IGNORECASE) or re.match(r"(\d+)(?=[_\-\s.]|$)", identifier)
    return m.group(1) if m else identifier


def binarize_label(label: np.ndarray, label_value: int | None = None, colour: bool | None = None) -> np.ndarray:
    """Foreground mask (uint8 0/1) from a label array.

    Args:
        label: ``(X, Y[, T])`` integer label, or a colour ``(..., 3|4)`` mask (channels reduced by max).
        label_value: keep only this class (e.g. 1 = LV cavity in CAMUS); ``None`` = foreground is ``> 127`` for
            0/255-style masks (maximum above 127, robust to JPEG noise) and ``> 0`` otherwise.
        colour: whether the last axis is colour (the reader's ``original_channel_dim == -1``); ``None`` guesses
            colour for a 3D array whose last axis has 3 or 4 entries (pass it for cines of 3 or 4 frames).
    """
    arr = np.asarray(label)
    if colour is None:
        colour = arr.ndim == 3 and arr.shape[-1] in (3, 4)
    if colour:
        arr = arr[..., :3].max(axis=-1)
    if label_value is not None:
        return (arr == label_value).astype(np.uint8)
    cut = 127 if arr.size and arr.max() > 127 else 0
    return (arr > cut).astype(np.uint8)


def label_values_of(label: np.ndarray, colour: bool | None = None) -> np.ndarray:
    """Label values of a mask as stored (uint8 ``(X, Y[, T])``): a colour mask ``(..., 3|4)`` is reduced by max over
    its channels (as :func:`binarize_label` does), everything else is kept value for value (CAMUS 0/1/2/3).

    Raises:
        MaskLabelError: values that are not whole numbers in 0..255.
    """
    arr = np.asarray(label)
    if colour is None:
        colour = arr.ndim == 3 and arr.shape[-1] in (3, 4)
    if colour:
        arr = arr[..., :3].max(axis=-1)
    if arr.dtype.kind == "f" and (not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr))):
        raise MaskLabelError("a multi-structure mask must hold whole label values")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise MaskLabelError(f"label values must be in 0..255, found {arr.min()}..{arr.max()}")
    return arr.astype(np.uint8)


class MaskLabelError(DataLayoutError, LabelSetError):
    """A mask holds label values outside the label set of the run (message names the file and the values)."""


SPLIT_NAME = re.compile(r"^(train|training|val|valid|validation|test|testing|dev)(dataset|set|_\w+)?$", re.IGNORECASE)


def _split_of(path: Path, root: Path) -> str | None:
    """First folder under ``root`` on the way to ``path`` named like a split (``train``, ``val``, ``TestDataset``...).

    Other folders (BUSI's ``benign``/``malignant`` class folders, layout folders) are not splits.
    """
    for part in path.relative_to(root).parts[:-1]:
        if SPLIT_NAME.match(part):
            return part
    return None


def _split_matches(record_split: str | None, wanted: str | None) -> bool:
    """Split filter: ``None`` keeps everything; otherwise case-insensitive equality (``test`` matches ``Test``)."""
    return wanted is None or (record_split or "").lower() == wanted.lower()
