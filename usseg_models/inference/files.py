"""Segment files and folders with a trained checkpoint (what ``usseg predict`` runs), without a server.

Inputs (:func:`collect_inputs`): one file, or every file under a folder whose name ends in a readable suffix -
DICOM (``.dcm``/``.dicom``, or no suffix with the ``DICM`` prefix), NIfTI, NRRD, PNG/JPEG/BMP/TIFF/GIF and video
(``.mp4``/``.m4v``/``.mov``/``.avi``); other files (``.txt``, ``.csv``, ...) are ignored. For DSANet the 2D image
files of one folder are **one clip** (frames in natural order, as a VTUS/ASTR frame folder); for IntraSense-Net each
file is one item, and a cine is segmented frame by frame.

Each item is read by :func:`usseg_models.io.load_image` (validated first), segmented by
:class:`~usseg_models.inference.video.DSANetPredictor` or :class:`~usseg_models.inference.image.ImagePredictor`, and
written with :mod:`usseg_models.io.writers` in the input's geometry (affine of the DICOM calibration or NIfTI/NRRD
header; identity for PNG/JPEG/video) under the output folder, keeping the input's sub-folders:

- ``nii.gz`` (default): ``<name>.nii.gz``, ``uint8`` label values (0/1 for one structure), ``(X, Y[, T])`` (a
  one-slice input keeps ``(X, Y, 1)``);
- ``seg.nrrd``: ``<name>.seg.nrrd``, a 3D Slicer segmentation with one segment per structure: the model palette's
  segment for a one-structure checkpoint, else the names and colours of the checkpoint's label set
  (:attr:`predictor.labels <usseg_models.inference.video.DSANetPredictor.labels>`);
- ``png``: ``<name>.png`` for an image, ``<name>/<frame>.png`` for a cine (the frame file names of a frame folder,
  else ``frame_0000.png``...); one structure: foreground 255, background 0; several: the label values.

``overlay="mp4"`` (or ``"gif"``) also writes ``<name>_overlay.mp4``: every frame in grey with the mask outline in red,
at the clip's frame rate (25 frames/s when unknown), enlarged by a whole factor to at least 256 rows; an image gets
``<name>_overlay.png``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from usseg_models.errors import UssegError
from usseg_models.io.conventions import BT601_WEIGHTS
from usseg_models.io.formats import SUFFIXES, has_readable_name, suffixes_of
from usseg_models.io.layout import spatial_ndim
from usseg_models.io.validate import file_is_dicom
from usseg_models.palette import fallback_color

__all__ = ["PredictItem", "collect_inputs", "predict_item", "overlay_frames", "OUTPUT_FORMATS", "predict_files",
           "output_segments"]

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = ("nii.gz", "seg.nrrd", "png")
_FRAME_EXTS = suffixes_of("image")  # the formats that are always one image: a folder of them is a clip for DSANet
_LONGEST_FIRST = sorted(SUFFIXES, key=len, reverse=True)
_OUTLINE = np.array([255, 40, 40], np.uint8)
_MIN_ROWS = 256


@dataclass(frozen=True)
class PredictItem:
    """One thing to segment: a file, or the frame files of one folder (a DSANet clip)."""

    name: str  # output name relative to the output folder, without suffix
    paths: tuple[Path, ...]

    def describe(self) -> str:
        return str(self.paths[0]) if len(self.paths) == 1 else f"{self.paths[0].parent} ({len(self.paths)} frames)"


def _ext(path: Path) -> str:
    name = path.name.lower()
    return next((s for s in _LONGEST_FIRST if name.endswith(s)), path.suffix.lower())


def _without_ext(rel: Path) -> str:
    ext = _ext(rel)
    text = rel.as_posix()
    return text[: -len(ext)] if ext else text


def _is_dicom_without_suffix(path: Path) -> bool:
    return not path.suffix and file_is_dicom(path)


def _natural_key(path: Path) -> list:
    import re

    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def collect_inputs(
    source: str | os.PathLike, model: str, exclude: str | os.PathLike | None = None
) -> list[PredictItem]:
    """Items to segment under ``source`` (a file or a folder; rules in the module docstring).

    Args:
        source: input file or folder.
        model: ``"dsanet"`` (frame files of a folder grouped into one clip) or ``"intrasense"``.
        exclude: a folder to skip (the output folder when it lies inside the input).

    Raises:
        FileNotFoundError: ``source`` does not exist.
        UssegError: a folder without any readable file.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(2, "No such file or folder", os.fspath(source))
    if source.is_file():
        return [PredictItem(_without_ext(Path(source.name)), (source,))]
    skip = Path(exclude).resolve() if exclude is not None else None
    files, ignored = [], 0
    for p in sorted(source.rglob("*")):
        rel = p.relative_to(source)
        if not p.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if skip is not None and (p.resolve() == skip or skip in p.resolve().parents):
            continue
        if has_readable_name(p) or _is_dicom_without_suffix(p):
            files.append(p)
        else:
            ignored += 1
    if ignored:
        logger.info("%d file(s) under %s with other suffixes ignored", ignored, source)
    items = []
    if model == "dsanet":
        groups: dict[Path, list[Path]] = {}
        for p in files:
            if _ext(p) in _FRAME_EXTS:
                groups.setdefault(p.parent, []).append(p)
        for folder, frames in sorted(groups.items()):
            rel = folder.relative_to(source)
            name = rel.as_posix() if rel.parts else source.name
            items.append(PredictItem(name, tuple(sorted(frames, key=_natural_key))))
        files = [p for p in files if _ext(p) not in _FRAME_EXTS]
    items += [PredictItem(_without_ext(p.relative_to(source)), (p,)) for p in files]
    if not items:
        raise UssegError(f"no readable image, cine or video file under {source}")
    return sorted(items, key=lambda it: it.name)


def _read(item: PredictItem) -> tuple[np.ndarray, dict[str, Any]]:
    """Reader array and metadata of an item; a frame folder is stacked into ``(X, Y, T[, 3])``."""
    from usseg_models.io import load_image

    if len(item.paths) == 1:  # a file (a lone frame in a folder stays a 2D image)
        return load_image(item.paths[0])
    from usseg_models.data.datasets import _load_frames

    cine = _load_frames(list(item.paths))
    _, meta = load_image(item.paths[0])
    colour = cine.ndim == 4
    meta = dict(meta, num_frames=int(cine.shape[2]), spatial_shape=np.array(cine.shape[:3]),
                original_channel_dim=-1 if colour else "no_channel", spacing=np.ones(3), frame_time_ms=None,
                filename_or_obj=str(item.paths[0].parent))
    return cine, meta


def predict_item(predictor: Any, model: str, item: PredictItem) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read and segment one item. Returns ``(label uint8 (X, Y[, T]), reader array, meta)``.

    Raises:
        UssegError: unreadable file, or a 2D image given to DSANet.
    """
    array, meta = _read(item)
    ndim = spatial_ndim(array, meta)
    if model == "dsanet":
        if ndim != 3:
            raise UssegError(f"{item.describe()}: dsanet segments cines (X, Y, T); this is a single image of shape "
                             f"{tuple(array.shape)} - use 'usseg predict intrasense' for images")
        return predictor.predict_clip(array), array, meta
    if ndim == 3:  # a cine through the image model: frame by frame
        frames = [array[:, :, t] for t in range(array.shape[2])]
        masks = [m for m, _ in predictor.predict_many(frames)]
        return np.stack(masks, axis=-1).astype(np.uint8), array, meta
    return predictor.predict(array), array, meta


def _display_grey(frame: np.ndarray) -> np.ndarray:
    a = np.asarray(frame)
    if a.ndim == 3:
        a = a[..., :3].astype(np.float32) @ np.array(BT601_WEIGHTS, np.float32)
    if a.dtype == np.uint8:
        return a
    a = a.astype(np.float32)
    lo, hi = float(a.min()), float(a.max())
    return np.zeros(a.shape, np.uint8) if hi <= lo else ((a - lo) / (hi - lo) * 255).round().astype(np.uint8)


def _outline(mask: np.ndarray) -> np.ndarray:
    m = mask.astype(bool)
    pad = np.pad(m, 1, mode="constant")
    inner = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
    return m & ~inner


def overlay_frames(array: np.ndarray, label: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """Display frames ``(T, rows, cols, 3)`` uint8: grey frames with the mask outline in red (several structures:
    one outline per structure, in the palette's fallback colours by label value).

    Args:
        array: reader array ``(X, Y[, T][, 3])``.
        label: mask ``(X, Y[, T])``.
        meta: reader metadata (``original_channel_dim`` tells colour from a 3-frame cine).

    Frames are enlarged by a whole factor (nearest neighbour) to at least 256 rows before the outline is drawn, so
    the outline stays one display pixel wide.
    """
    colour = meta.get("original_channel_dim") == -1
    cine = array if array.ndim - int(colour) == 3 else array[:, :, None, ...]
    masks = label if label.ndim == 3 else label[:, :, None]
    rows = cine.shape[1]
    k = max(1, -(-_MIN_ROWS // rows))
    values = sorted(set(np.unique(masks).tolist()) - {0})
    several = bool(values) and max(values) > 1  # several structures: one outline colour per label value
    out = []
    for t in range(cine.shape[2]):
        grey = _display_grey(cine[:, :, t]).T  # (X, Y) -> (rows, cols)
        mask = masks[:, :, t].T
        if k > 1:
            grey = grey.repeat(k, 0).repeat(k, 1)
            mask = mask.repeat(k, 0).repeat(k, 1)
        rgb = np.repeat(grey[..., None], 3, axis=-1)
        if several:
            for i, v in enumerate(values):
                rgb[_outline(mask == v)] = np.array(fallback_color(i)) * 255
        else:
            rgb[_outline(mask)] = _OUTLINE
        out.append(rgb)
    return np.stack(out)


def output_segments(model: str, labels: Any = None) -> list[dict[str, Any]]:
    """Segments (``label_value``, ``name``, ``color``) of a prediction's label file: the model palette's for the
    default one-structure label set (as before label sets), else those of ``labels`` (names and colours)."""
    from usseg_models import palette
    from usseg_models.labels import LabelSet

    if labels is None or labels == LabelSet.binary():
        return palette.segments(model)
    return palette.segments_from(labels.label_names(), labels.label_colors())


def _write_outputs(out_dir: Path, item: PredictItem, label: np.ndarray, array: np.ndarray, meta: dict[str, Any],
                   fmt: str, overlay: str | None, model: str = "dsanet", labels: Any = None) -> list[Path]:
    from usseg_models.io import writers
    from usseg_models.io.video import write_video

    base = out_dir / item.name
    written = []
    png_mode = "binary" if labels is None or labels.is_binary else "labels"
    if fmt == "png":
        if label.ndim == 2:
            written.append(writers.write_png(base.with_name(base.name + ".png"), label, mode=png_mode))
        else:
            names = ([p.stem for p in item.paths] if len(item.paths) == label.shape[2]
                     else [f"frame_{t:04d}" for t in range(label.shape[2])])
            for t, stem in enumerate(names):
                written.append(writers.write_png(base / f"{stem}.png", label[:, :, t], mode=png_mode))
    elif fmt == "seg.nrrd":
        written.append(writers.write_label(base.with_name(base.name + ".seg.nrrd"), label, meta,
                                           segments=output_segments(model, labels)))
    else:
        written.append(writers.write_label(base.with_name(base.name + ".nii.gz"), label, meta))
    if overlay:
        frames = overlay_frames(array, label, meta)
        if label.ndim == 2:
            from PIL import Image

            path = base.with_name(base.name + "_overlay.png")
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(frames[0]).save(path)
        else:
            ms = meta.get("frame_time_ms")
            fps = 1000.0 / float(ms) if ms else 25.0
            path = write_video(base.with_name(f"{base.name}_overlay.{overlay}"), frames, fps=fps)
        written.append(path)
    return written


def predict_files(
    predictor: Any,
    model: str,
    items: list[PredictItem],
    out_dir: str | os.PathLike,
    fmt: str = "nii.gz",
    overlay: str | None = None,
    progress: Callable[[list[PredictItem]], Iterator[PredictItem]] | None = None,
    on_error: Callable[[PredictItem, Exception], None] | None = None,
) -> list[dict[str, Any]]:
    """Segment ``items`` and write the outputs; a failing item is reported through ``on_error`` and skipped.

    Args:
        predictor: a :class:`DSANetPredictor` (``model="dsanet"``) or :class:`ImagePredictor`.
        model: ``"dsanet"`` or ``"intrasense"``.
        items: from :func:`collect_inputs`.
        out_dir: output folder.
        fmt: one of :data:`OUTPUT_FORMATS`.
        overlay: ``None``, ``"mp4"`` or ``"gif"``.
        progress: wraps the item list (e.g. ``tqdm``).
        on_error: called with the item and the exception of every failure.

    Returns:
        one row per item: ``input``, ``outputs``, ``shape``, ``foreground_fraction`` (any structure), ``status``,
        ``error``.
    """
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"output format must be one of {OUTPUT_FORMATS}, got {fmt!r}")
    if overlay not in (None, "mp4", "gif"):
        raise ValueError(f"overlay must be mp4 or gif, got {overlay!r}")
    out_dir = Path(out_dir)
    rows = []
    for item in (progress(items) if progress else items):
        try:
            label, array, meta = predict_item(predictor, model, item)
            outputs = _write_outputs(out_dir, item, label, array, meta, fmt, overlay, model,
                                     getattr(predictor, "labels", None))
        except Exception as exc:  # noqa: BLE001 - one bad input must not stop the others; reported to the caller
            if on_error:
                on_error(item, exc)
            rows.append({"input": item.describe(), "outputs": "", "shape": "", "foreground_fraction": "",
                         "status": "failed", "error": f"{type(exc).__name__}: {exc}"})
            continue
        rows.append({"input": item.describe(), "outputs": ";".join(str(p) for p in outputs),
                     "shape": "x".join(map(str, label.shape)),
                     "foreground_fraction": f"{float((label > 0).mean()):.4f}",
                     "status": "ok", "error": ""})
    return rows
