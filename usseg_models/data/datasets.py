"""Discover training data in the folder layouts users have, and serve it as torch Datasets.

Layouts recognised (``DIR`` is what the user passes; every layout may sit under split folders such as
``DIR/train/...``, ``DIR/val/...``, recorded as the record's ``split``). Public data sets as shipped (VTUS/Vivim,
CAMUS, EchoNet-Dynamic, BUSI), explicit ``--images``/``--masks`` pairing and CSV manifests (``DIR`` may be a
``.csv`` file) are described in :mod:`usseg_models.data.layouts`; the generic rules are:

Video (:func:`discover_clips`):

- MONAI Label datastore: ``DIR/<id>.dcm|.nii.gz|.nii|.nrrd|.mp4|.avi|.mov`` + ``DIR/labels/final/<id>.nii.gz``
  (label volume ``(X, Y, T)``, see ``docs/DESIGN.md``).
- Mask beside the cine: ``DIR/<id>.dcm`` + ``DIR/<id>_mask.nii.gz``.
- Frame folders as ASTR/VTUS ship them (ASTR's loader reads ``ROOT/<split>/image/<video>/<frame>`` and takes the
  mask from the same path with ``image`` replaced by ``mask``): ``DIR/[<split>/]<frames>/<video>/<frame>.jpg|png``
  with a parallel ``DIR/[<split>/]<masks>/<video>/<frame>.png``; ``<frames>`` is one of :data:`FRAME_DIR_NAMES`
  (``image``, ``images``, ``frames``, ``Frame``, ...) and ``<masks>`` one of :data:`MASK_DIR_NAMES` (``mask``,
  ``masks``, ``GT``, ``labels``, ...). Masks pair with frames by file stem (a ``.jpg`` frame may have a ``.png``
  mask); frames are ordered by natural sort of their names (``2.png`` before ``10.png``). Frames without a mask
  file make a sparse-frame clip (``ClipRecord.labelled``: keyframes, ED/ES); a clip with no mask at all is skipped.

Images (:func:`discover_images`):

- BUSI style: ``name.png`` + ``name_mask.png`` (extra ``name_mask_1.png`` masks are merged), any depth.
- ``images/`` + ``masks/`` (or ``labels/``, ``labels_clean/``, ``GT/``...) folders with equal stems.
- DICOM (or NIfTI/NRRD) image + ``<id>_mask.png|nii.gz`` beside it, and the MONAI Label layout above.

Labels are binarised by :func:`binarize_label`. Subjects (for k-fold by subject) come from :func:`subject_of`.
Preprocessing (resize, intensity, ImageNet normalisation, 3 channels) is the project's one shared definition in
:mod:`usseg_models.transforms.preprocessing`; this module adds only random flips/rotations for training, applied
identically to every frame of a clip and to its masks.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from usseg_models.errors import UssegError

__all__ = [
    "FRAME_DIR_NAMES",
    "MASK_DIR_NAMES",
    "IMAGE_EXTS",
    "VOLUME_EXTS",
    "VIDEO_EXTS",
    "ClipRecord",
    "ImageRecord",
    "discover_clips",
    "discover_images",
    "subject_of",
    "binarize_label",
    "ClipWindowDataset",
    "ImageSegDataset",
    "DataLayoutError",
    "load_clip",
    "augment_consistently",
    "load_image_pair",
    "load_clip_arrays",
    "load_image_arrays",
    "worker_init_fn",
]

logger = logging.getLogger(__name__)

FRAME_DIR_NAMES = ("image", "images", "img", "imgs", "frame", "frames", "Frame", "Frames", "JPEGImages")
MASK_DIR_NAMES = (
    "mask", "masks", "labels_clean", "labels", "label", "GT", "gt", "ground_truth", "Annotations", "annotations",
)
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif")
VOLUME_EXTS = (".dcm", ".nii.gz", ".nii", ".nrrd", ".nhdr")
VIDEO_EXTS = (".mp4", ".m4v", ".mov", ".avi")
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


@functools.lru_cache(maxsize=4096)
def _listing(folder: Path) -> tuple[Path, ...]:
    return tuple(sorted(p for p in folder.iterdir() if p.is_file())) if folder.is_dir() else ()


def _find_label(img: Path, exts: Sequence[str]) -> list[Path]:
    """Label file(s) for an image/cine file by the beside, MONAI Label and parallel-folder rules."""
    stem, parent = _stem(img), img.parent
    found = sorted(
        p for p in _listing(parent)
        if _ext(p) in exts and MASK_SUFFIX.search(_stem(p)) and
        MASK_SUFFIX.sub("", _stem(p)) == stem
    )
    if found:
        return found
    final = parent / "labels" / "final"
    if final.is_dir():
        found = [p for p in _listing(final) if _stem(p) == stem and _ext(p) in exts]
        if found:
            return found[:1]
    if parent.name in FRAME_DIR_NAMES:
        for name in MASK_DIR_NAMES:
            mdir = parent.parent / name
            if mdir.is_dir():
                found = [p for p in _listing(mdir) if _ext(p) in exts and
                         (_stem(p) == stem or MASK_SUFFIX.sub("", _stem(p)) == stem)]
                if found:
                    return found
    return []


def _num_frames(path: Path) -> int | None:
    """Frames in a DICOM/NIfTI/NRRD/video file from its header only (``None`` = single-frame image, or unknown)."""
    from usseg_models.io.image import probe_header

    try:
        return probe_header(path).num_frames
    except Exception:  # noqa: BLE001 - unreadable headers are reported when the file is loaded
        return None


def _is_label_path(path: Path, root: Path) -> bool:
    rel = path.relative_to(root).parts[:-1]
    return MASK_SUFFIX.search(_stem(path)) is not None or any(p in MASK_DIR_NAMES for p in rel)


def _check_dir(data_dir: str | Path) -> Path:
    root = Path(data_dir)
    if not root.is_dir():
        raise DataLayoutError(f"data folder not found: {root}")
    return root


def discover_images(
    data_dir: str | Path, split: str | None = None, subject_pattern: str | None = None
) -> list[ImageRecord]:
    """Find image/mask pairs under ``data_dir`` (layouts in the module docstring), sorted by id.

    Args:
        data_dir: root folder, or a CSV manifest (:func:`usseg_models.data.layouts.read_manifest`).
        split: keep only records of this split (e.g. ``"train"``; case-insensitive); ``None`` keeps all.
        subject_pattern: regex with one group overriding :func:`subject_of`.

    Raises:
        DataLayoutError: when the folder is missing or holds no image with a mask.
    """
    from usseg_models.data import layouts

    if Path(data_dir).is_file() and _ext(Path(data_dir)) == ".csv":
        records = [r for r in layouts.read_manifest(data_dir, "images", subject_pattern)
                   if _split_matches(r.split, split)]
        if not records:
            raise DataLayoutError(f"manifest {data_dir} lists no image" + (f" for split {split!r}" if split else ""))
        return sorted(records, key=lambda r: r.id)
    root = _check_dir(data_dir)
    exts = IMAGE_EXTS + VOLUME_EXTS
    found = layouts.layout_images(root, subject_pattern)
    claimed = {r.image for r in found}
    records, unlabelled = [r for r in found if _split_matches(r.split, split)], 0
    for img in sorted(root.rglob("*")):
        if not img.is_file() or _ext(img) not in exts or _is_label_path(img, root) or img in claimed:
            continue
        if _ext(img) in VOLUME_EXTS and _num_frames(img):
            continue  # a cine: see discover_clips
        labels = _find_label(img, exts)
        if not labels:
            unlabelled += 1
            continue
        rec_split = _split_of(img, root)
        if not _split_matches(rec_split, split):
            continue
        ident = _stem(img) if rec_split is None else f"{rec_split}/{_stem(img)}"
        records.append(ImageRecord(ident, img, tuple(labels), subject_of(_stem(img), subject_pattern), rec_split))
    if unlabelled:
        logger.info("%d image(s) under %s have no mask and were skipped", unlabelled, root)
    if not records:
        raise DataLayoutError(
            f"no image/mask pairs under {root}" + (f" for split {split!r}" if split else "")
            + ": expected name.png + name_mask.png, images/ + masks/ folders, <id> + labels/final/<id>, CAMUS or "
            "BUSI as shipped; pair other folders with --images DIR --masks DIR or a CSV manifest"
        )
    return sorted(records, key=lambda r: r.id)


def _frame_folder_clips(root: Path, subject_pattern: str | None) -> list[ClipRecord]:
    from usseg_models.data.layouts import _frame_clip

    clips = []
    for fdir in sorted(p for p in root.rglob("*") if p.is_dir() and p.name in FRAME_DIR_NAMES):
        mdirs = [fdir.parent / n for n in MASK_DIR_NAMES if (fdir.parent / n).is_dir()]
        videos = [v for v in sorted(fdir.iterdir()) if v.is_dir()]
        if not mdirs or not videos:
            continue
        for video in videos:
            mvideo = next((m / video.name for m in mdirs if (m / video.name).is_dir()), None)
            if mvideo is None:
                continue
            record = _frame_clip(video, mvideo, _split_of(fdir, root), subject_pattern)
            if record is not None:
                clips.append(record)
    return clips


def discover_clips(
    data_dir: str | Path, split: str | None = None, subject_pattern: str | None = None,
    cache_dir: str | Path | None = None,
) -> list[ClipRecord]:
    """Find videos with per-frame masks under ``data_dir`` (layouts in the module docstring), sorted by id.

    Args:
        data_dir: root folder, or a CSV manifest (:func:`usseg_models.data.layouts.read_manifest`).
        split: keep only clips of this split (case-insensitive); ``None`` keeps all.
        subject_pattern: regex with one group overriding :func:`subject_of`.
        cache_dir: where generated label volumes (EchoNet tracings) go; default
            :func:`usseg_models.data.layouts.label_cache_dir`.

    Raises:
        DataLayoutError: when nothing usable is found.
    """
    from usseg_models.data import layouts

    if Path(data_dir).is_file() and _ext(Path(data_dir)) == ".csv":
        clips = [c for c in layouts.read_manifest(data_dir, "clips", subject_pattern) if _split_matches(c.split, split)]
        if not clips:
            raise DataLayoutError(f"manifest {data_dir} lists no clip" + (f" for split {split!r}" if split else ""))
        return sorted(clips, key=lambda c: c.id)
    root = _check_dir(data_dir)
    clips = layouts.layout_clips(root, subject_pattern, cache_dir)
    claimed = {c.image if isinstance(c.image, Path) else c.image[0] for c in clips}
    clips += [c for c in _frame_folder_clips(root, subject_pattern) if c.image[0] not in claimed]
    for vol in sorted(root.rglob("*")):
        if not vol.is_file() or _ext(vol) not in VOLUME_EXTS + VIDEO_EXTS or _is_label_path(vol, root):
            continue
        if vol in claimed:
            continue
        if any(p in FRAME_DIR_NAMES for p in vol.relative_to(root).parts[:-1]):
            continue
        if not _num_frames(vol):
            continue  # a single-frame image: see discover_images
        labels = _find_label(vol, VOLUME_EXTS)
        if not labels:
            continue
        rec_split = _split_of(vol, root)
        ident = _stem(vol) if rec_split is None else f"{rec_split}/{_stem(vol)}"
        clips.append(ClipRecord(ident, vol, labels[0], subject_of(_stem(vol), subject_pattern), rec_split))
    clips = [c for c in clips if _split_matches(c.split, split)]
    if not clips:
        raise DataLayoutError(
            f"no clips with masks under {root}" + (f" for split {split!r}" if split else "")
            + ": expected <id>.dcm|.mp4 + labels/final/<id>.nii.gz, <id>_mask.nii.gz beside, "
            "<split>/<frames>/<video>/*.png with a parallel <masks>/<video>/ folder, or VTUS/Vivim, CAMUS, "
            "EchoNet-Dynamic as shipped; pair other folders with --images DIR --masks DIR or a CSV manifest"
        )
    return sorted(clips, key=lambda c: c.id)


# --------------------------------------------------------------------------------------------------------------
# loading + shared preprocessing


def _load(path: Path) -> tuple[np.ndarray, dict]:
    from usseg_models.io import load_image

    array, meta = load_image(path)
    return np.asarray(array), meta


def _is_colour(meta: dict) -> bool:
    return meta.get("original_channel_dim") == -1


def _load_label(paths: Path | Sequence[Path], label_value: int | None) -> np.ndarray:
    paths = [paths] if isinstance(paths, Path) else list(paths)
    out = None
    for p in paths:
        arr, meta = _load(p)
        lab = binarize_label(arr, label_value, colour=_is_colour(meta))
        out = lab if out is None else np.maximum(out, lab)
    return out


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


def _prep():
    from usseg_models.transforms import preprocessing

    return preprocessing


def load_clip_arrays(record: ClipRecord, label_value: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reader arrays of one clip: ``(cine (X, Y, T[, 3]) stored dtype, label (X, Y, T) uint8 0/1)``.

    Raises:
        DataLayoutError: when the cine and its mask volume disagree in size or frame count.
    """
    if isinstance(record.image, tuple):
        cine = _load_frames(record.image)
        frames = [None if p is None else _load_label(p, label_value) for p in record.label]
        known = next((f for f in frames if f is not None), None)
        if known is None:
            raise DataLayoutError(f"clip {record.id} has no mask at all")
        label = np.stack([np.zeros_like(known) if f is None else f for f in frames], axis=2)
    else:
        cine, meta = _load(record.image)
        if meta.get("num_frames") is None:  # a single-frame file: one-frame cine
            cine = cine[:, :, None]
        label = _load_label(record.label, label_value)
    if label.ndim == 2:
        label = label[..., None]
    if tuple(cine.shape[:3]) != tuple(label.shape[:3]):
        raise DataLayoutError(
            f"clip {record.id}: cine shape {cine.shape[:3]} and mask volume {label.shape[:3]} differ "
            "((X, Y, T) expected)"
        )
    return cine, label


def load_image_arrays(record: ImageRecord, label_value: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reader arrays of one image: ``(image (X, Y[, 3]) stored dtype, label (X, Y) uint8 0/1)``.

    Raises:
        DataLayoutError: when image and mask sizes differ.
    """
    image, _ = _load(record.image)
    label = _load_label(record.label, label_value)
    if label.ndim == 3 and label.shape[-1] == 1:
        label = label[..., 0]
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if tuple(image.shape[:2]) != tuple(label.shape[:2]):
        raise DataLayoutError(f"image {record.image} {image.shape[:2]} and mask {label.shape[:2]} sizes differ")
    return image, label


def load_clip(record: ClipRecord, spatial_size: int, label_value: int | None = None) -> tuple[torch.Tensor, ...]:
    """Load and preprocess one clip: ``(frames (T, 3, S, S) float32, masks (T, 1, S, S) float32)``."""
    pp = _prep()
    cine, label = load_clip_arrays(record, label_value)
    frames = torch.as_tensor(pp.preprocess_cine(cine, spatial_size)).float()
    masks = torch.as_tensor(pp.preprocess_cine_label(label, spatial_size)).float()
    return frames, masks


def load_image_pair(record: ImageRecord, spatial_size: int, label_value: int | None = None) -> tuple[torch.Tensor, ...]:
    """Load and preprocess one image: ``(image (3, S, S) float32, mask (1, S, S) float32)``."""
    pp = _prep()
    image, label = load_image_arrays(record, label_value)
    img = torch.as_tensor(pp.preprocess_image(image, spatial_size)).float()
    lab = torch.as_tensor(pp.preprocess_image_label(label, spatial_size)).float()
    return img, lab


def augment_consistently(tensors: Sequence[torch.Tensor], rng: np.random.Generator, rotate: bool) -> list[torch.Tensor]:
    """Random flips of both spatial axes (and a random multiple of 90° when ``rotate``), identical for all inputs.

    Inputs are ``(..., H, W)``; the same draw applies to every frame and mask, so a clip stays consistent.
    """
    out = list(tensors)
    for axis in (-2, -1):
        if rng.random() < 0.5:
            out = [t.flip(axis) for t in out]
    if rotate:
        k = int(rng.integers(0, 4))
        if k:
            out = [torch.rot90(t, k, dims=(-2, -1)) for t in out]
    return [t.contiguous() for t in out]


class _RandomMixin:
    def set_random_state(self, seed: int) -> None:
        """Seed the augmentation (also reseeded per DataLoader worker by :func:`worker_init_fn`)."""
        self.rng = np.random.default_rng(seed)


class ClipWindowDataset(_RandomMixin, Dataset):
    """DSANet training samples: one item per (clip, labelled target frame), a 3-frame window and its masks.

    Clips are loaded and preprocessed once (cached at ``spatial_size``); windows follow
    :func:`usseg_models.transforms.clip.window_indices` (index 0 = target t, then t-1, t-2). With sparse-frame
    labels (:attr:`ClipRecord.labelled`) only windows whose **target** is labelled are made, and ``valid`` marks
    which of the window's three frames have masks, so the auxiliary terms of unlabelled frames drop out of
    :class:`~usseg_models.losses.DSANetLoss`; unlabelled frames still serve as input context.

    Args:
        records: clips from :func:`discover_clips`.
        spatial_size: square network input size.
        augment: random flips, the same for all frames and masks of a window.
        label_value: class kept as foreground (see :func:`binarize_label`).
        window: frames per sample (3 for DSANet).
        seed: augmentation seed.

    Item:
        ``{"image": (T, 3, S, S), "label": (T, 1, S, S), "valid": (T,) float, "id": str, "frame": int}``.

    Examples::

        >>> ds = ClipWindowDataset(discover_clips("data/"), spatial_size=64)  # doctest: +SKIP
        >>> ds[0]["image"].shape  # doctest: +SKIP
        torch.Size([3, 3, 64, 64])
    """

    def __init__(
        self,
        records: Sequence[ClipRecord],
        spatial_size: int,
        augment: bool = False,
        label_value: int | None = None,
        window: int = 3,
        seed: int = 0,
    ) -> None:
        if not records:
            raise ValueError("ClipWindowDataset needs at least one clip record")
        if int(spatial_size) < 8:
            raise ValueError(f"spatial_size must be >= 8, got {spatial_size}")
        self.records = list(records)
        self.spatial_size, self.augment, self.window = int(spatial_size), bool(augment), int(window)
        self.label_value = label_value
        self.clips = [load_clip(r, self.spatial_size, label_value) for r in self.records]
        self.labelled = [set(r.labelled_frames(frames.shape[0])) for r, (frames, _) in zip(self.records, self.clips)]
        self.index = [(c, t) for c, (frames, _) in enumerate(self.clips) for t in range(frames.shape[0])
                      if t in self.labelled[c]]
        if not self.index:
            raise ValueError("no labelled target frame in these clips")
        self.set_random_state(seed)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        from usseg_models.transforms.clip import window_indices

        c, t = self.index[i]
        frames, masks = self.clips[c]
        idx = window_indices(frames.shape[0], t, self.window)
        image, label = frames[idx], masks[idx]
        valid = torch.tensor([1.0 if i in self.labelled[c] else 0.0 for i in idx])
        if self.augment:
            image, label = augment_consistently([image, label], self.rng, rotate=False)
        return {"image": image, "label": label, "valid": valid, "id": self.records[c].id, "frame": t}


class ImageSegDataset(_RandomMixin, Dataset):
    """IntraSense-Net / UNet samples: one preprocessed image and its mask.

    Args:
        records: images from :func:`discover_images`.
        spatial_size: square network input size (256 in the IntraSense-Net paper).
        augment: random flips and 90° rotations (the paper trains with flips and rotations).
        label_value: class kept as foreground (see :func:`binarize_label`).
        seed: augmentation seed.

    Item:
        ``{"image": (3, S, S), "label": (1, S, S), "id": str}``.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        spatial_size: int,
        augment: bool = False,
        label_value: int | None = None,
        seed: int = 0,
    ) -> None:
        if not records:
            raise ValueError("ImageSegDataset needs at least one image record")
        if int(spatial_size) < 8:
            raise ValueError(f"spatial_size must be >= 8, got {spatial_size}")
        self.records = list(records)
        self.spatial_size, self.augment, self.label_value = int(spatial_size), bool(augment), label_value
        self.items = [load_image_pair(r, self.spatial_size, label_value) for r in self.records]
        self.set_random_state(seed)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        image, label = self.items[i]
        if self.augment:
            image, label = augment_consistently([image, label], self.rng, rotate=True)
        return {"image": image, "label": label, "id": self.records[i].id}


def worker_init_fn(worker_id: int) -> None:
    """DataLoader hook: give each worker its own augmentation stream."""
    info = torch.utils.data.get_worker_info()
    if info is not None and hasattr(info.dataset, "set_random_state"):
        info.dataset.set_random_state(int(info.seed % 2**31))
