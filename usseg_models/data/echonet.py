"""The EchoNet-Dynamic data set as shipped: videos whose traced frames become sparse-frame label volumes.

**EchoNet-Dynamic**: ``Videos/<name>.avi`` + ``VolumeTracings.csv`` (``FileName,X1,Y1,X2,Y2,Frame``; the
EchoNet-Pediatric form ``FileName,X,Y,Frame`` too) [+ ``FileList.csv``, whose ``Split`` column gives
``train``/``val``/``test``]. The tracings of a frame are rasterised the EchoNet way (contour = the chords' first
ends, then their second ends reversed, long axis dropped; pixel centres inside or on the polygon) into an
``(X, Y, T)`` label volume that is zero on untraced frames; only the traced frames (ED and ES) are labelled
(``ClipRecord.labelled``). The volumes are a cache (:func:`label_cache_dir`: ``cache_dir`` argument, else
``$USSEG_CACHE_DIR``, else ``<temp>/usseg-cache``), keyed by the tracing content, written once, atomically.
Videos without tracings, unreadable videos and tracings outside the clip are skipped with a log line.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from usseg_models.data.pairing import _ident
from usseg_models.data.records import VIDEO_EXTS, ClipRecord, DataLayoutError, _ext, _stem, subject_of

__all__ = ["echonet_clips", "rasterise_tracing", "label_cache_dir"]

logger = logging.getLogger(__name__)

_SPLIT_WORDS = {"training": "train", "train": "train", "validation": "val", "val": "val", "valid": "val",
                "testing": "test", "test": "test"}
_ECHONET_RULE = "echonet-chords-v1"  # part of the cache key: change it when the rasterisation changes


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
    from usseg_models.io.video_probe import probe_video

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
