"""Discover training data in the generic folder layouts (public data sets as shipped: :mod:`usseg_models.data.layouts`).

Every layout may sit under split folders such as ``DIR/train/...``, ``DIR/val/...``, recorded as the record's
``split``. ``DIR`` may also be a ``.csv`` manifest (:func:`usseg_models.data.manifest.read_manifest`).

Video (:func:`discover_clips`):

- MONAI Label datastore: ``DIR/<id>.dcm|.nii.gz|.nii|.nrrd|.mp4|.avi|.mov`` + ``DIR/labels/final/<id>.nii.gz``
  (label volume ``(X, Y, T)``, see ``docs/DESIGN.md``).
- Mask beside the cine: ``DIR/<id>.dcm`` + ``DIR/<id>_mask.nii.gz``.
- Frame folders as ASTR/VTUS ship them (ASTR's loader reads ``ROOT/<split>/image/<video>/<frame>`` and takes the
  mask from the same path with ``image`` replaced by ``mask``): ``DIR/[<split>/]<frames>/<video>/<frame>.jpg|png``
  with a parallel ``DIR/[<split>/]<masks>/<video>/<frame>.png``; ``<frames>`` is one of
  :data:`~usseg_models.data.records.FRAME_DIR_NAMES` (``image``, ``images``, ``frames``, ``Frame``, ...) and
  ``<masks>`` one of :data:`~usseg_models.data.records.MASK_DIR_NAMES` (``mask``, ``masks``, ``GT``, ``labels``,
  ...). Masks pair with frames by file stem (a ``.jpg`` frame may have a ``.png`` mask); frames are ordered by
  natural sort of their names (``2.png`` before ``10.png``). Frames without a mask file make a sparse-frame clip
  (``ClipRecord.labelled``: keyframes, ED/ES); a clip with no mask at all is skipped.

Images (:func:`discover_images`):

- BUSI style: ``name.png`` + ``name_mask.png`` (extra ``name_mask_1.png`` masks are merged), any depth.
- ``images/`` + ``masks/`` (or ``labels/``, ``labels_clean/``, ``GT/``...) folders with equal stems.
- DICOM (or NIfTI/NRRD) image + ``<id>_mask.png|nii.gz`` beside it, and the MONAI Label layout above.

Whether a file is a cine is read from its header only (:func:`usseg_models.io.formats.probe_header`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from usseg_models.data.records import (
    FRAME_DIR_NAMES,
    IMAGE_EXTS,
    MASK_DIR_NAMES,
    MASK_SUFFIX,
    VIDEO_EXTS,
    VOLUME_EXTS,
    ClipRecord,
    DataLayoutError,
    ImageRecord,
    _ext,
    _split_matches,
    _split_of,
    _stem,
    subject_of,
)

__all__ = ["discover_clips", "discover_images"]

logger = logging.getLogger(__name__)


class _LabelFinder:
    """Label file(s) of an image or cine by the beside, MONAI Label and parallel-folder rules.

    Each folder is listed and indexed by file stem once per discovery (one finder per call: a folder that changes
    between two discoveries is read again), so pairing N images costs O(N), not a scan of the folder per image
    (CAMUS as shipped, 2000 images beside their masks: 24 s → well under a second).
    """

    def __init__(self) -> None:
        self._folders: dict[Path, tuple[dict[str, list[Path]], dict[str, list[Path]]]] = {}

    def _index(self, folder: Path) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
        """``({stem: files}, {stem without its mask suffix: mask files})``, each list in sorted path order."""
        if folder not in self._folders:
            by_stem: dict[str, list[Path]] = {}
            by_base: dict[str, list[Path]] = {}
            listing = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
            for p in listing:
                stem = _stem(p)
                by_stem.setdefault(stem, []).append(p)
                if MASK_SUFFIX.search(stem):
                    by_base.setdefault(MASK_SUFFIX.sub("", stem), []).append(p)
            self._folders[folder] = (by_stem, by_base)
        return self._folders[folder]

    def find(self, img: Path, exts: Sequence[str]) -> list[Path]:
        stem, parent = _stem(img), img.parent
        found = [p for p in self._index(parent)[1].get(stem, []) if _ext(p) in exts]
        if found:
            return found
        final = parent / "labels" / "final"
        if final.is_dir():
            found = [p for p in self._index(final)[0].get(stem, []) if _ext(p) in exts]
            if found:
                return found[:1]
        if parent.name in FRAME_DIR_NAMES:
            for name in MASK_DIR_NAMES:
                mdir = parent.parent / name
                if mdir.is_dir():
                    by_stem, by_base = self._index(mdir)
                    found = sorted(p for p in {*by_stem.get(stem, []), *by_base.get(stem, [])} if _ext(p) in exts)
                    if found:
                        return found
        return []


def _num_frames(path: Path) -> int | None:
    """Frames in a DICOM/NIfTI/NRRD/video file from its header only (``None`` = single-frame image, or unknown)."""
    from usseg_models.io.formats import probe_header

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
        data_dir: root folder, or a CSV manifest (:func:`usseg_models.data.manifest.read_manifest`).
        split: keep only records of this split (e.g. ``"train"``; case-insensitive); ``None`` keeps all.
        subject_pattern: regex with one group overriding :func:`subject_of`.

    Raises:
        DataLayoutError: when the folder is missing or holds no image with a mask.
    """
    from usseg_models.data import layouts
    from usseg_models.data.manifest import read_manifest

    if Path(data_dir).is_file() and _ext(Path(data_dir)) == ".csv":
        records = [r for r in read_manifest(data_dir, "images", subject_pattern)
                   if _split_matches(r.split, split)]
        if not records:
            raise DataLayoutError(f"manifest {data_dir} lists no image" + (f" for split {split!r}" if split else ""))
        return sorted(records, key=lambda r: r.id)
    root = _check_dir(data_dir)
    exts = IMAGE_EXTS + VOLUME_EXTS
    found = layouts.layout_images(root, subject_pattern)
    claimed = {r.image for r in found}
    records, unlabelled = [r for r in found if _split_matches(r.split, split)], 0
    finder = _LabelFinder()
    for img in sorted(root.rglob("*")):
        if not img.is_file() or _ext(img) not in exts or _is_label_path(img, root) or img in claimed:
            continue
        if _ext(img) in VOLUME_EXTS and _num_frames(img):
            continue  # a cine: see discover_clips
        labels = finder.find(img, exts)
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
    from usseg_models.data.pairing import frame_folder_clip

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
            record = frame_folder_clip(video, mvideo, _split_of(fdir, root), subject_pattern)
            if record is not None:
                clips.append(record)
    return clips


def discover_clips(
    data_dir: str | Path, split: str | None = None, subject_pattern: str | None = None,
    cache_dir: str | Path | None = None,
) -> list[ClipRecord]:
    """Find videos with per-frame masks under ``data_dir`` (layouts in the module docstring), sorted by id.

    Args:
        data_dir: root folder, or a CSV manifest (:func:`usseg_models.data.manifest.read_manifest`).
        split: keep only clips of this split (case-insensitive); ``None`` keeps all.
        subject_pattern: regex with one group overriding :func:`subject_of`.
        cache_dir: where generated label volumes (EchoNet tracings) go; default
            :func:`usseg_models.data.echonet.label_cache_dir`.

    Raises:
        DataLayoutError: when nothing usable is found.
    """
    from usseg_models.data import layouts
    from usseg_models.data.manifest import read_manifest

    if Path(data_dir).is_file() and _ext(Path(data_dir)) == ".csv":
        clips = [c for c in read_manifest(data_dir, "clips", subject_pattern) if _split_matches(c.split, split)]
        if not clips:
            raise DataLayoutError(f"manifest {data_dir} lists no clip" + (f" for split {split!r}" if split else ""))
        return sorted(clips, key=lambda c: c.id)
    root = _check_dir(data_dir)
    clips = layouts.layout_clips(root, subject_pattern, cache_dir)
    claimed = {c.image if isinstance(c.image, Path) else c.image[0] for c in clips}
    clips += [c for c in _frame_folder_clips(root, subject_pattern) if c.image[0] not in claimed]
    finder = _LabelFinder()
    for vol in sorted(root.rglob("*")):
        if not vol.is_file() or _ext(vol) not in VOLUME_EXTS + VIDEO_EXTS or _is_label_path(vol, root):
            continue
        if vol in claimed:
            continue
        if any(p in FRAME_DIR_NAMES for p in vol.relative_to(root).parts[:-1]):
            continue
        if not _num_frames(vol):
            continue  # a single-frame image: see discover_images
        labels = finder.find(vol, VOLUME_EXTS)
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
