"""Pairing images with masks by file stem: a folder of frames with a folder of masks, ``--images`` with ``--masks``.

- :func:`pair_frame_masks` pairs the frames of one clip folder with a folder of masks by file stem
  (``<stem>_mask`` also matches); frames without a mask make a sparse-frame clip (``ClipRecord.labelled``).
- :func:`pair_folders` pairs ``--images DIR`` with ``--masks DIR`` by file stem (any extension on either side,
  GIF masks included; ``<stem>_mask[_N]`` also matches, several masks of one image are merged), recursively with
  the same relative sub-path preferred; for clips, sub-folders of frames pair with sub-folders of masks, and cine
  files with label volumes. The pairs are written as a manifest
  (:func:`usseg_models.data.manifest.write_manifest`) and read back like any.

Also holds the record helpers the layout modules share (record id with its split, folder walk).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from usseg_models.data.records import (
    IMAGE_EXTS,
    MASK_SUFFIX,
    VIDEO_EXTS,
    VOLUME_EXTS,
    ClipRecord,
    DataLayoutError,
    _ext,
    _natural_key,
    _stem,
    subject_of,
)

__all__ = ["pair_frame_masks", "pair_folders", "frame_folder_clip", "sub_folders"]

logger = logging.getLogger(__name__)


def _ident(stem: str, split: str | None) -> str:
    return stem if split is None else f"{split}/{stem}"


def sub_folders(root: Path) -> list[Path]:
    """``root`` and every folder below it (hidden ones skipped), sorted."""
    return sorted(p for p in [root, *root.rglob("*")] if p.is_dir() and not p.name.startswith("."))


# ---------------------------------------------------------------------------------------------- frame folders
def pair_frame_masks(
    frame_dir: Path, mask_dir: Path
) -> tuple[tuple[Path, ...], tuple[Path | None, ...], tuple[int, ...] | None] | None:
    """Pair a folder of frames with a folder of masks by file stem (``<stem>_mask`` also matches).

    Returns:
        ``(frames, masks, labelled)``: frames in natural order, the mask of each frame or ``None``, and the labelled
        frame indices (``None`` when every frame has a mask); ``None`` when no frame has a mask (or no frames).
    """
    frames = tuple(sorted((p for p in frame_dir.iterdir() if p.is_file() and _ext(p) in IMAGE_EXTS),
                          key=_natural_key))
    if not frames or not mask_dir.is_dir():
        return None
    masks: dict[str, Path] = {}
    for p in sorted(mask_dir.iterdir()):
        if p.is_file() and _ext(p) in IMAGE_EXTS:
            masks.setdefault(_stem(p), p)
            masks.setdefault(MASK_SUFFIX.sub("", _stem(p)), p)
    labels = tuple(masks.get(_stem(f)) for f in frames)
    labelled = tuple(i for i, m in enumerate(labels) if m is not None)
    if not labelled:
        return None
    return frames, labels, (None if len(labelled) == len(frames) else labelled)


def frame_folder_clip(video: Path, mask_video: Path, split: str | None,
                      subject_pattern: str | None) -> ClipRecord | None:
    """The clip of a folder of frames whose masks are in ``mask_video`` (``None`` when no mask matches a frame)."""
    paired = pair_frame_masks(video, mask_video)
    if paired is None:
        logger.info("%s: no mask in %s matches a frame; clip skipped", video, mask_video)
        return None
    frames, labels, labelled = paired
    if labelled is not None:
        logger.info("%s: %d of %d frames have masks (sparse-frame labels)", video, len(labelled), len(frames))
    return ClipRecord(_ident(video.name, split), frames, labels, subject_of(video.name, subject_pattern), split,
                      labelled)


# ------------------------------------------------------------------------------------------ --images/--masks
def _mask_index(masks_dir: Path, exts: Sequence[str]) -> dict[str, list[Path]]:
    index: dict[str, list[Path]] = {}
    for p in sorted(masks_dir.rglob("*")):
        if p.is_file() and _ext(p) in exts and not p.name.startswith("."):
            index.setdefault(MASK_SUFFIX.sub("", _stem(p)), []).append(p)
    return index


def _pick(candidates: list[Path], rel_parent: Path, masks_dir: Path) -> list[Path]:
    """Masks of one image: those in the same relative sub-folder when any, else all with the stem."""
    same = [m for m in candidates if m.parent.relative_to(masks_dir) == rel_parent]
    if same:
        return same
    folders = {m.parent for m in candidates}
    if len(folders) > 1:
        raise DataLayoutError(f"ambiguous masks for one image in several folders: {sorted(map(str, candidates))[:4]}")
    return candidates


def pair_folders(images_dir: str | os.PathLike, masks_dir: str | os.PathLike, kind: str) -> list[dict]:
    """Manifest rows pairing ``images_dir`` with ``masks_dir`` by stem (see the module docstring).

    Args:
        images_dir, masks_dir: the two folders.
        kind: ``"images"`` (image files) or ``"clips"`` (cine/video files, or sub-folders of frames).

    Raises:
        DataLayoutError: a folder is missing, nothing pairs, or a mask stem is ambiguous.
    """
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    for d, what in ((images_dir, "images"), (masks_dir, "masks")):
        if not d.is_dir():
            raise DataLayoutError(f"{what} folder not found: {d}")
    rows, unpaired = [], []
    label_exts = IMAGE_EXTS + VOLUME_EXTS
    if kind == "clips":
        frame_dirs = [d for d in sub_folders(images_dir)
                      if d != images_dir and any(_ext(p) in IMAGE_EXTS for p in d.iterdir() if p.is_file())]
        for d in frame_dirs:
            m = masks_dir / d.relative_to(images_dir)
            if m.is_dir() and pair_frame_masks(d, m) is not None:
                rows.append({"image": str(d.resolve()), "mask": str(m.resolve())})
            else:
                unpaired.append(d)
        files = [p for p in sorted(images_dir.rglob("*")) if p.is_file() and _ext(p) in VOLUME_EXTS + VIDEO_EXTS]
    elif kind == "images":
        files = [p for p in sorted(images_dir.rglob("*")) if p.is_file() and _ext(p) in IMAGE_EXTS + VOLUME_EXTS]
    else:
        raise ValueError(f"kind must be 'clips' or 'images', got {kind!r}")
    index = _mask_index(masks_dir, label_exts)
    for f in files:
        if f.name.startswith("."):
            continue
        candidates = index.get(_stem(f)) or index.get(MASK_SUFFIX.sub("", _stem(f)))
        if not candidates:
            unpaired.append(f)
            continue
        chosen = _pick(candidates, f.parent.relative_to(images_dir), masks_dir)
        if kind == "clips" and len(chosen) > 1:
            raise DataLayoutError(f"{f}: several label volumes match: {[str(c) for c in chosen]}")
        rows.append({"image": str(f.resolve()), "mask": [str(c.resolve()) for c in chosen]})
    if unpaired:
        logger.info("%d item(s) under %s have no mask in %s: %s", len(unpaired), images_dir, masks_dir,
                    ", ".join(p.name for p in unpaired[:5]))
    if not rows:
        raise DataLayoutError(f"no file under {images_dir} has a mask with the same name under {masks_dir}")
    return rows
