"""Public data sets as they are shipped, explicit image/mask folders and CSV manifests: record discovery.

:func:`usseg_models.data.datasets.discover_clips` / :func:`~usseg_models.data.datasets.discover_images` call
:func:`layout_clips` / :func:`layout_images` first; what a layout here recognises is taken from it (with its
official splits and subjects), everything else under the folder goes through the generic rules of
:mod:`usseg_models.data.datasets`. A CSV file given instead of a folder is read by :func:`read_manifest`.

Layouts (``ROOT`` is what the user passes; each layout may sit anywhere below it):

- **VTUS / Vivim** (``scott-yjyang/Vivim``): ``Train/<clip>/*.jpg`` with ``Train_GT/<clip>/*.png`` and
  ``Test/<clip>/...`` with ``Test_GT/<clip>/...``: any folder ``<A>`` with a sibling ``<A>_GT`` holding the same clip
  folders. Split = ``<A>`` when it is named like a split (``Train``, ``Test``), subject = clip folder name.
  Masks pair with frames by file stem; frames without a mask make a sparse-frame clip (see below).
- **CAMUS** (2023 NIfTI release, ``CAMUS_public/database_nifti``): ``patientNNNN/patientNNNN_{2CH,4CH}_half_sequence
  .nii.gz`` with ``..._half_sequence_gt.nii.gz`` (clips, a label on every frame) and ``patientNNNN_{2CH,4CH}_{ED,ES}
  .nii.gz`` with ``..._gt.nii.gz`` (images). Labels hold 1 = LV cavity, 2 = myocardium, 3 = left atrium: choose the
  structure with ``--label-value`` (default: any non-zero = the whole heart). Subject = patient. The official
  split (``database_split/subgroup_{training,validation,testing}.txt``, beside ``database_nifti``) gives
  ``train``/``val``/``test``; without it there is no split.
- **EchoNet-Dynamic**: ``Videos/<name>.avi`` + ``VolumeTracings.csv`` (``FileName,X1,Y1,X2,Y2,Frame``; the
  EchoNet-Pediatric form ``FileName,X,Y,Frame`` too) [+ ``FileList.csv``, whose ``Split`` column gives
  ``train``/``val``/``test``]. The tracings of a frame are rasterised the EchoNet way (contour = the chords' first
  ends, then their second ends reversed, long axis dropped; pixel centres inside or on the polygon) into an
  ``(X, Y, T)`` label volume that is zero on untraced frames; only the traced frames (ED and ES) are labelled
  (``ClipRecord.labelled``). The volumes are a cache (:func:`label_cache_dir`: ``cache_dir`` argument, else
  ``$USSEG_CACHE_DIR``, else ``<temp>/usseg-cache``), keyed by the tracing content, written once, atomically.
  Videos without tracings, unreadable videos and tracings outside the clip are skipped with a log line.

Explicit pairing and manifests:

- :func:`pair_folders` pairs ``--images DIR`` with ``--masks DIR`` by file stem (any extension on either side,
  GIF masks included; ``<stem>_mask[_N]`` also matches, several masks of one image are merged), recursively with
  the same relative sub-path preferred; for clips, sub-folders of frames pair with sub-folders of masks, and cine
  files with label volumes. The pairs are written as a manifest (:func:`write_manifest`) and read back like any.
- A **CSV manifest** (:func:`read_manifest`): header ``image,mask[,subject][,split][,frames]``; paths absolute or
  relative to the CSV's folder. ``image`` is an image/cine file or a folder of frames; ``mask`` a mask/label file
  (several for one image separated by ``;``, merged) or, for a frame folder, a folder of masks paired by stem.
  ``frames`` (clips only) lists the labelled frames (0-based, separated by spaces or ``;``): a sparse-frame clip.

Sparse-frame clips (``ClipRecord.labelled`` not ``None``) train only on windows whose target frame is labelled;
frames without a mask are never read (see :class:`~usseg_models.data.datasets.ClipWindowDataset`).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from usseg_models.data.datasets import (
    IMAGE_EXTS,
    MASK_SUFFIX,
    SPLIT_NAME,
    VIDEO_EXTS,
    VOLUME_EXTS,
    ClipRecord,
    DataLayoutError,
    ImageRecord,
    _ext,
    _natural_key,
    _split_of,
    _stem,
    subject_of,
)

__all__ = [
    "layout_clips",
    "layout_images",
    "pair_frame_masks",
    "vivim_clips",
    "camus_clips",
    "camus_images",
    "echonet_clips",
    "rasterise_tracing",
    "label_cache_dir",
    "read_manifest",
    "write_manifest",
    "pair_folders",
    "MANIFEST_COLUMNS",
]

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("image", "mask", "subject", "split", "frames")
_SPLIT_WORDS = {"training": "train", "train": "train", "validation": "val", "val": "val", "valid": "val",
                "testing": "test", "test": "test"}
_CAMUS_PATIENT = re.compile(r"^patient\d+$", re.IGNORECASE)
_CAMUS_SEQUENCE = re.compile(r"^(patient\d+)_(2CH|4CH)_half_sequence$", re.IGNORECASE)
_CAMUS_INSTANT = re.compile(r"^(patient\d+)_(2CH|4CH)_(ED|ES)$", re.IGNORECASE)
_ECHONET_RULE = "echonet-chords-v1"  # part of the cache key: change it when the rasterisation changes


def _ident(stem: str, split: str | None) -> str:
    return stem if split is None else f"{split}/{stem}"


def _dirs(root: Path) -> list[Path]:
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


def _frame_clip(video: Path, mask_video: Path, split: str | None, subject_pattern: str | None) -> ClipRecord | None:
    paired = pair_frame_masks(video, mask_video)
    if paired is None:
        logger.info("%s: no mask in %s matches a frame; clip skipped", video, mask_video)
        return None
    frames, labels, labelled = paired
    if labelled is not None:
        logger.info("%s: %d of %d frames have masks (sparse-frame labels)", video, len(labelled), len(frames))
    return ClipRecord(_ident(video.name, split), frames, labels, subject_of(video.name, subject_pattern), split,
                      labelled)


# ------------------------------------------------------------------------------------------------------ Vivim
def _gt_sibling(folder: Path) -> Path | None:
    for suffix in ("_GT", "_gt", "_Gt", "-GT", "_GT_mask"):
        cand = folder.parent / f"{folder.name}{suffix}"
        if cand.is_dir():
            return cand
    return None


def vivim_clips(root: Path, subject_pattern: str | None = None) -> list[ClipRecord]:
    """VTUS / Vivim frame folders: ``<A>/<clip>/*.jpg`` with ``<A>_GT/<clip>/*.png`` (module docstring)."""
    clips = []
    for folder in _dirs(root):
        gt = _gt_sibling(folder)
        if gt is None:
            continue
        split = folder.name if SPLIT_NAME.match(folder.name) else (_split_of(folder / "x", root) if folder != root
                                                                   else None)
        for video in sorted(p for p in folder.iterdir() if p.is_dir()):
            mask_video = gt / video.name
            if mask_video.is_dir():
                rec = _frame_clip(video, mask_video, split, subject_pattern)
                if rec is not None:
                    clips.append(rec)
    return clips


# ------------------------------------------------------------------------------------------------------ CAMUS
def _camus_splits(root: Path) -> dict[str, str]:
    """Patient → ``train``/``val``/``test`` from CAMUS's ``database_split`` files near ``root``."""
    candidates = [root / "database_split", root.parent / "database_split", *root.glob("*/database_split"),
                  *root.glob("*/*/database_split")]
    for folder in candidates:
        if not folder.is_dir():
            continue
        out = {}
        for name, split in (("subgroup_training.txt", "train"), ("subgroup_validation.txt", "val"),
                            ("subgroup_testing.txt", "test")):
            f = folder / name
            if f.is_file():
                for patient in f.read_text(encoding="utf-8-sig").split():
                    out[patient.strip()] = split
        if out:
            return out
    return {}


def _camus_pairs(root: Path, pattern: re.Pattern) -> list[tuple[Path, Path, re.Match]]:
    pairs = []
    for patient in _dirs(root):
        if not _CAMUS_PATIENT.match(patient.name):
            continue
        for f in sorted(patient.iterdir()):
            if not f.is_file() or _ext(f) not in (".nii.gz", ".nii"):
                continue
            m = pattern.match(_stem(f))
            if not m:
                continue
            gt = next((f.parent / f"{_stem(f)}_gt{e}" for e in (".nii.gz", ".nii")
                       if (f.parent / f"{_stem(f)}_gt{e}").is_file()), None)
            if gt is not None:
                pairs.append((f, gt, m))
    return pairs


def camus_clips(root: Path, subject_pattern: str | None = None) -> list[ClipRecord]:
    """CAMUS half sequences with their per-frame labels (module docstring)."""
    splits = _camus_splits(root)
    out = []
    for image, gt, m in _camus_pairs(root, _CAMUS_SEQUENCE):
        patient = m.group(1)
        split = splits.get(patient)
        subject = subject_of(_stem(image), subject_pattern) if subject_pattern else patient
        out.append(ClipRecord(_ident(_stem(image), split), image, gt, subject, split))
    return out


def camus_images(root: Path, subject_pattern: str | None = None) -> list[ImageRecord]:
    """CAMUS ED/ES frames with their labels (module docstring)."""
    splits = _camus_splits(root)
    out = []
    for image, gt, m in _camus_pairs(root, _CAMUS_INSTANT):
        patient = m.group(1)
        split = splits.get(patient)
        subject = subject_of(_stem(image), subject_pattern) if subject_pattern else patient
        out.append(ImageRecord(_ident(_stem(image), split), image, (gt,), subject, split))
    return out


# ---------------------------------------------------------------------------------------------------- EchoNet
def label_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Folder for generated label volumes: ``cache_dir``, else ``$USSEG_CACHE_DIR``, else ``<temp>/usseg-cache``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("USSEG_CACHE_DIR", "").strip()
    return Path(env) if env else Path(tempfile.gettempdir()) / "usseg-cache"


def rasterise_tracing(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """Mask ``(X, Y)`` uint8 0/1 of one traced frame.

    Args:
        points: ``(n, 4)`` chords ``X1, Y1, X2, Y2`` (EchoNet-Dynamic: the first row is the long axis, the others
            the chords; contour = first ends, then second ends reversed) or ``(n, 2)`` contour points ``X, Y``.
        width, height: frame size (X = columns, Y = rows).

    Pixels whose centre lies inside the polygon or on its edge (vertices rounded to whole pixels), which is what
    EchoNet's loader gets from ``skimage.draw.polygon``, are foreground.
    """
    from matplotlib.path import Path as PolyPath

    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] not in (2, 4):
        raise ValueError(f"tracing must be (n, 4) chords or (n, 2) points, got {pts.shape}")
    if pts.shape[1] == 4:
        x = np.concatenate((pts[1:, 0], pts[1:, 2][::-1]))
        y = np.concatenate((pts[1:, 1], pts[1:, 3][::-1]))
    else:
        x, y = pts[:, 0], pts[:, 1]
    mask = np.zeros((width, height), np.uint8)
    if x.size < 3:
        return mask
    poly = PolyPath(np.stack([np.rint(x), np.rint(y)], axis=1))
    xs, ys = np.meshgrid(np.arange(width), np.arange(height), indexing="ij")
    centres = np.stack([xs.ravel(), ys.ravel()], axis=1)
    # boundary pixels count as inside (as skimage.draw.polygon, which EchoNet uses): the sign of matplotlib's
    # radius that grows the polygon depends on the vertex order, so take both
    inside = poly.contains_points(centres, radius=1e-6) | poly.contains_points(centres, radius=-1e-6)
    mask[inside.reshape(width, height)] = 1
    return mask


def _read_tracings(csv_path: Path) -> dict[str, dict[int, list[list[float]]]]:
    """``{video stem: {frame: [[x1, y1, x2, y2] | [x, y], ...]}}`` in file order."""
    out: dict[str, dict[int, list[list[float]]]] = {}
    skipped = 0
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        cols = [c.strip() for c in reader.fieldnames or []]
        chords = all(c in cols for c in ("X1", "Y1", "X2", "Y2"))
        if not chords and not all(c in cols for c in ("X", "Y")):
            raise DataLayoutError(f"{csv_path}: expected columns FileName,X1,Y1,X2,Y2,Frame (or FileName,X,Y,Frame)")
        keys = ("X1", "Y1", "X2", "Y2") if chords else ("X", "Y")
        for row in reader:
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            try:
                frame = int(float(row["Frame"]))
                values = [float(row[k]) for k in keys]
            except (KeyError, ValueError):
                skipped += 1
                continue
            name = row.get("FileName", "")
            stem = name[:-4] if name.lower().endswith(".avi") else name
            out.setdefault(stem, {}).setdefault(frame, []).append(values)
    if skipped:
        logger.info("%s: %d row(s) without a usable frame number or coordinates skipped", csv_path, skipped)
    return out


def _echonet_splits(folder: Path) -> dict[str, str]:
    f = folder / "FileList.csv"
    if not f.is_file():
        return {}
    out = {}
    with open(f, newline="", encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            name = (row.get("FileName") or "").strip()
            split = (row.get("Split") or "").strip().lower()
            if name:
                out[name[:-4] if name.lower().endswith(".avi") else name] = _SPLIT_WORDS.get(split, split or None)
    return out


def _write_volume_atomic(path: Path, volume: np.ndarray) -> None:
    from usseg_models.io.writers import write_nifti

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".nii.gz", dir=path.parent)
    os.close(fd)
    try:
        write_nifti(tmp, volume, np.eye(4))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def echonet_clips(
    root: Path, subject_pattern: str | None = None, cache_dir: str | os.PathLike | None = None
) -> list[ClipRecord]:
    """EchoNet-Dynamic videos with their traced frames as sparse-frame label volumes (module docstring)."""
    from usseg_models.errors import UltrasoundIOError
    from usseg_models.io.video import probe_video

    out = []
    for csv_path in sorted(root.rglob("VolumeTracings.csv")):
        folder = csv_path.parent
        videos = folder / "Videos"
        if not videos.is_dir():
            continue
        tracings = _read_tracings(csv_path)
        splits = _echonet_splits(folder)
        cache = label_cache_dir(cache_dir) / "echonet"
        untraced = written = 0
        for video in sorted(p for p in videos.iterdir() if p.is_file() and _ext(p) in VIDEO_EXTS):
            traces = tracings.get(_stem(video))
            if not traces:
                untraced += 1
                continue
            try:
                info = probe_video(video)
            except (UltrasoundIOError, OSError) as exc:
                logger.warning("EchoNet video skipped: %s", exc)
                continue
            frames = sorted(t for t in traces if 0 <= t < info.num_frames)
            dropped = sorted(set(traces) - set(frames))
            if dropped:
                logger.warning("%s: traced frame(s) %s outside its %d frames ignored", video.name, dropped,
                               info.num_frames)
            if not frames:
                continue
            key = hashlib.sha1(repr((_ECHONET_RULE, info.width, info.height, info.num_frames,
                                     [(t, traces[t]) for t in frames])).encode()).hexdigest()[:16]
            label = cache / f"{_stem(video)}-{key}.nii.gz"
            if not label.is_file():
                volume = np.zeros((info.width, info.height, info.num_frames), np.uint8)
                for t in frames:
                    volume[:, :, t] = rasterise_tracing(np.asarray(traces[t]), info.width, info.height)
                _write_volume_atomic(label, volume)
                written += 1
            split = splits.get(_stem(video))
            subject = subject_of(_stem(video), subject_pattern)
            out.append(ClipRecord(_ident(_stem(video), split), video, label, subject, split, tuple(frames)))
        if untraced:
            logger.info("%s: %d video(s) without tracings skipped", videos, untraced)
        if written:
            logger.info("rasterised the tracings of %d EchoNet video(s) into %s", written, cache)
    return out


# ------------------------------------------------------------------------------------------------ dispatchers
def layout_clips(
    root: Path, subject_pattern: str | None = None, cache_dir: str | os.PathLike | None = None
) -> list[ClipRecord]:
    """Clips of every shipped layout found under ``root`` (VTUS/Vivim, CAMUS, EchoNet-Dynamic)."""
    return [*vivim_clips(root, subject_pattern), *camus_clips(root, subject_pattern),
            *echonet_clips(root, subject_pattern, cache_dir)]


def layout_images(root: Path, subject_pattern: str | None = None) -> list[ImageRecord]:
    """Images of every shipped layout with its own splits found under ``root`` (CAMUS ED/ES).

    BUSI as distributed (``Dataset_BUSI_with_GT/<class>/<name>.png`` + ``<name>_mask[_N].png``) needs no special
    rule: the generic ``name.png`` + ``name_mask.png`` rule finds it, extra masks are merged, and the ``normal``
    class keeps its empty masks (images without a lesion are valid training data).
    """
    return camus_images(root, subject_pattern)


# -------------------------------------------------------------------------------------------------- manifests
def _resolve(base: Path, text: str) -> Path:
    p = Path(text.strip()).expanduser()
    return p if p.is_absolute() else base / p


def _parse_frames(text: str, where: str) -> tuple[int, ...] | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        values = sorted({int(v) for v in re.split(r"[\s;,|]+", text) if v})
    except ValueError as exc:
        raise DataLayoutError(f"{where}: frames must be whole numbers separated by spaces or ';', got {text!r}") \
            from exc
    if any(v < 0 for v in values):
        raise DataLayoutError(f"{where}: frame indices are 0-based and must be >= 0, got {text!r}")
    return tuple(values)


def _unique_ids(stems: list[str], paths: list[Path]) -> list[str]:
    seen: dict[str, int] = {}
    for s in stems:
        seen[s] = seen.get(s, 0) + 1
    return [s if seen[s] == 1 else f"{p.parent.name}/{s}" for s, p in zip(stems, paths)]


def read_manifest(
    path: str | os.PathLike, kind: str, subject_pattern: str | None = None
) -> list[ClipRecord] | list[ImageRecord]:
    """Records from a CSV manifest (format in the module docstring).

    Args:
        path: the CSV file.
        kind: ``"clips"`` (:class:`ClipRecord`) or ``"images"`` (:class:`ImageRecord`).
        subject_pattern: regex with one group for :func:`subject_of` when the ``subject`` column is empty.

    Raises:
        DataLayoutError: missing columns, missing files, or bad frame lists (message names the row).
    """
    path = Path(path)
    if kind not in ("clips", "images"):
        raise ValueError(f"kind must be 'clips' or 'images', got {kind!r}")
    if not path.is_file():
        raise DataLayoutError(f"manifest not found: {path}")
    base = path.parent
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        cols = [c.strip().lower() for c in reader.fieldnames or []]
        if "image" not in cols or "mask" not in cols:
            raise DataLayoutError(f"{path}: a manifest needs the columns image,mask[,subject][,split][,frames]; "
                                  f"found {cols}")
        rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in row.items()} for row in reader]
    images, entries = [], []
    for n, row in enumerate(rows, start=2):
        where = f"{path}, line {n}"
        if not row.get("image"):
            continue
        image = _resolve(base, row["image"])
        masks = [_resolve(base, m) for m in row.get("mask", "").split(";") if m.strip()]
        if not image.exists():
            raise DataLayoutError(f"{where}: image {image} not found")
        if not masks:
            raise DataLayoutError(f"{where}: no mask given for {image}")
        for m in masks:
            if not m.exists():
                raise DataLayoutError(f"{where}: mask {m} not found")
        images.append(image)
        entries.append((where, image, masks, row.get("subject") or None, row.get("split") or None,
                        _parse_frames(row.get("frames", ""), where)))
    if not entries:
        raise DataLayoutError(f"{path}: the manifest lists no image")
    ids = _unique_ids([image.name if image.is_dir() else _stem(image) for image in images], images)
    out = []
    for ident, (where, image, masks, subject, split, frames) in zip(ids, entries):
        subject = subject or subject_of(ident.split("/")[-1], subject_pattern)
        rid = _ident(ident, split)
        if kind == "images":
            if image.is_dir() or frames is not None:
                raise DataLayoutError(f"{where}: an image manifest row needs an image file (no frames column)")
            out.append(ImageRecord(rid, image, tuple(masks), subject, split))
            continue
        if image.is_dir():
            if len(masks) != 1 or not masks[0].is_dir():
                raise DataLayoutError(f"{where}: a folder of frames needs a folder of masks")
            paired = pair_frame_masks(image, masks[0])
            if paired is None:
                raise DataLayoutError(f"{where}: no mask in {masks[0]} matches a frame of {image}")
            frame_files, labels, labelled = paired
            if frames is not None:
                missing = [t for t in frames if t >= len(frame_files) or labels[t] is None]
                if missing:
                    raise DataLayoutError(f"{where}: frames {missing} have no mask file (or are out of range)")
                labels = tuple(m if i in set(frames) else None for i, m in enumerate(labels))
                labelled = frames
            out.append(ClipRecord(rid, frame_files, labels, subject, split, labelled))
        else:
            if len(masks) != 1 or masks[0].is_dir():
                raise DataLayoutError(f"{where}: a cine file needs one label volume file")
            out.append(ClipRecord(rid, image, masks[0], subject, split, frames))
    return out


def write_manifest(rows: Iterable[dict], path: str | os.PathLike) -> Path:
    """Write manifest rows (dicts with keys of :data:`MANIFEST_COLUMNS`; lists are joined) as CSV."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    cols = [c for c in MANIFEST_COLUMNS if c in ("image", "mask") or any(r.get(c) not in (None, "") for r in rows)]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols)
        writer.writeheader()
        for r in rows:
            out = {}
            for c in cols:
                v = r.get(c)
                if isinstance(v, (list, tuple)):
                    v = (";" if c == "mask" else " ").join(str(x) for x in v)
                out[c] = "" if v is None else str(v)
            writer.writerow(out)
    return path


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
        frame_dirs = [d for d in _dirs(images_dir)
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
