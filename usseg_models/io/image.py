"""Load any ultrasound input this project accepts: DICOM, PNG/JPEG, NIfTI, NRRD and video, dispatched by content.

:func:`load_image` identifies the format from the file's bytes (:func:`usseg_models.io.validate.sniff_format`),
validates it in Python and returns ``(array, meta)`` in MONAI's spatial-first layout (``docs/DESIGN.md``):

- **DICOM**: :func:`usseg_models.io.dicom.read_dicom` — ``(X, Y[, T][, 3])``, ultrasound calibration in ``affine``.
- **PNG / JPEG** (Pillow; also GIF, BMP and TIFF, e.g. masks shipped as GIF): ``(X, Y)`` grey or ``(X, Y, 3)``
  colour. Palette images become RGB, alpha channels are dropped, 1-bit images become ``uint8`` 0/255, 16-bit grey
  stays ``uint16``; an animated GIF or multi-page TIFF gives its first frame. Spacing 1, identity affine
  (physical size in PNG ``pHYs`` is ignored).
- **Video** (MP4/MOV/AVI; :func:`usseg_models.io.video.read_video`, PyAV): ``(X, Y, T)`` grey or ``(X, Y, T, 3)``
  colour, ``frame_time_ms`` from the container, spacing 1 with a warning, a frame limit, the container validated in
  Python before decoding.
- **NIfTI** (``.nii``/``.nii.gz``, nibabel): the stored array (scaled by ``scl_slope`` when set) with the file's
  RAS affine; ``RGB24`` voxels become a last axis of 3.
- **NRRD** (``.nrrd``/``.seg.nrrd``, pynrrd): the stored array with the affine from ``space directions`` /
  ``space origin`` converted to RAS (the NIfTI/MONAI convention); a non-spatial axis of 3 (``RGB-color``,
  ``vector``) becomes the last axis. Multi-layer segmentations are refused.

For NIfTI and NRRD a third spatial axis longer than one is reported as frames (``num_frames``): the project's cine
labels are ``(X, Y, T)`` volumes. A third axis of exactly one — the one-slice ``(X, Y, 1)`` volume 3D Slicer sends
for a 2D image — is squeezed to ``(X, Y)`` and flagged ``meta["one_slice"] = True``; ``affine`` keeps the file's
full 4x4 matrix so :func:`usseg_models.io.writers.write_label` can restore ``(X, Y, 1)`` with the same geometry.
``grayscale=True`` turns any colour image grey by ITU-R BT.601 luma (rounded, dtype kept).

Examples::

    >>> from usseg_models.io.image import LoadUltrasoundd, load_image   # LoadUltrasound* from io.transforms
    >>> array, meta = load_image("frame.png", grayscale=True)              # doctest: +SKIP
    >>> array.shape, meta["spacing"]                                        # doctest: +SKIP
    ((640, 480), array([1., 1.]))
    >>> LoadUltrasoundd("image")({"image": "slice.nii.gz"})["image"].meta["one_slice"]   # doctest: +SKIP
    True
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import nrrd
import numpy as np
from PIL import Image

from usseg_models.errors import UltrasoundIOError
from usseg_models.io.conventions import LPS_TO_RAS, bt601_luma
from usseg_models.io.dicom_pixels import read_dicom
from usseg_models.io.validate import sniff_format

__all__ = ["load_image", "LPS_TO_RAS"]

# MONAI-based wrappers live in usseg_models.io.transforms (importing MONAI takes seconds; plain loading does not
# need it) and are served from here on first access.
_LAZY = ("UltrasoundImageReader", "LoadUltrasound", "LoadUltrasoundd", "LoadUltrasoundD", "LoadUltrasoundDict")


def __getattr__(name: str):
    if name in _LAZY:
        from usseg_models.io import transforms

        return getattr(transforms, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

logger = logging.getLogger(__name__)

#: Flip of the first two world axes, converting an LPS affine to RAS and back.
_LPS_SPACES = ("left-posterior-superior", "lps", "scanner-xyz")
_RAS_SPACES = ("right-anterior-superior", "ras")
_CHANNEL_KINDS = ("rgb-color", "vector", "3-vector", "covariant-vector", "normal", "3-color", "list")


def _fail(path, problem: str) -> UltrasoundIOError:
    return UltrasoundIOError(f"{os.fspath(path)}: {problem}")


def _base_meta(path, arr: np.ndarray, affine: np.ndarray, colour: bool, fmt: str) -> dict[str, Any]:
    """Metadata with the DICOM reader's keys; DICOM-only fields are None."""
    n_spatial = arr.ndim - int(colour)
    spatial = arr.shape[:n_spatial]
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))[:n_spatial]
    return {
        "filename_or_obj": os.fspath(path),
        "format": fmt,
        "spatial_shape": np.array(spatial),
        "original_channel_dim": -1 if colour else "no_channel",
        "affine": affine,
        "original_affine": affine.copy(),
        "spacing": spacing.astype(np.float64),
        "num_frames": int(spatial[2]) if n_spatial == 3 else None,
        "frame_time_ms": None,
        "photometric_interpretation": "RGB" if colour else "MONOCHROME2",
        "transfer_syntax_uid": None,
        "modality": None,
        "study_instance_uid": None,
        "series_instance_uid": None,
        "sop_instance_uid": None,
        "sop_class_uid": None,
        "rows": int(spatial[1]) if n_spatial >= 2 else None,
        "columns": int(spatial[0]),
        "bits_allocated": int(arr.dtype.itemsize * 8),
        "one_slice": False,
    }


def _read_pil(path) -> tuple[np.ndarray, dict[str, Any]]:
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif mode in ("1", "LA", "La"):
                im = im.convert("L")
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBa", "RGBX"):
                im = im.convert("RGB")
            arr = np.asarray(im)
            fmt = (im.format or Path(path).suffix.lstrip(".")).lower()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise _fail(path, f"corrupt or truncated image file ({type(exc).__name__}: {exc})") from exc
    if arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]  # alpha dropped
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] != 3):
        raise _fail(path, f"unsupported image layout {arr.shape} (mode {mode})")
    colour = arr.ndim == 3
    arr = np.ascontiguousarray(arr.transpose((1, 0, 2) if colour else (1, 0)))  # (Y, X) -> (X, Y)
    return arr, _base_meta(path, arr, np.eye(4), colour, "jpeg" if fmt in ("jpeg", "jpg", "mpo") else fmt)


def _read_nifti(path) -> tuple[np.ndarray, dict[str, Any]]:
    try:
        img = nib.load(os.fspath(path))
        header = img.header
        if not str(path).endswith(".gz"):
            needed = int(header.get_data_offset()) + int(np.prod(img.shape)) * header.get_data_dtype().itemsize
            if os.path.getsize(path) < needed:
                raise _fail(path, f"NIfTI file has {os.path.getsize(path)} bytes, header needs {needed} (truncated)")
        arr = np.asanyarray(img.dataobj)
        affine = np.asarray(img.affine, dtype=np.float64)
    except UltrasoundIOError:
        raise
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types on corrupt files
        raise _fail(path, f"corrupt or truncated NIfTI file ({type(exc).__name__}: {exc})") from exc
    if arr.dtype.names and set("RGB").issubset(arr.dtype.names):
        arr = np.stack([arr["R"], arr["G"], arr["B"]], axis=-1)
        colour = True
    else:
        colour = arr.ndim == 5 and arr.shape[3] == 1 and arr.shape[4] == 3  # (X, Y, Z, 1, 3) vector image
        if colour:
            arr = arr[:, :, :, 0, :]
    return _finish_volume(path, arr, affine, colour, "nifti")


def _nrrd_affine(path, header: Mapping[str, Any], spatial_axes: list[int]) -> np.ndarray:
    affine = np.eye(4)
    directions = header.get("space directions")
    if directions is not None:
        rows = [np.asarray(directions[i], dtype=np.float64) for i in spatial_axes]
        for j, vec in enumerate(rows[:3]):
            affine[: min(3, vec.size), j] = vec[:3]
    elif "spacings" in header:
        spacings = np.asarray(header["spacings"], dtype=np.float64)
        for j, axis in enumerate(spatial_axes[:3]):
            affine[j, j] = spacings[axis] if np.isfinite(spacings[axis]) else 1.0
    origin = header.get("space origin")
    if origin is not None:
        origin = np.asarray(origin, dtype=np.float64)
        affine[: min(3, origin.size), 3] = origin[:3]
    space = str(header.get("space", "left-posterior-superior")).lower()
    if space in _LPS_SPACES:
        affine = LPS_TO_RAS @ affine
    elif space not in _RAS_SPACES:
        logger.warning("%s: NRRD space %r kept as is (treated as RAS)", path, space)
    return affine


def _read_nrrd(path) -> tuple[np.ndarray, dict[str, Any]]:
    try:
        arr, header = nrrd.read(os.fspath(path))  # index order 'F': axis 0 = fastest = X
    except Exception as exc:  # noqa: BLE001 - pynrrd raises NRRDError, ValueError, OSError, zlib.error, ...
        raise _fail(path, f"corrupt or truncated NRRD file ({type(exc).__name__}: {exc})") from exc
    kinds = [str(k).lower() for k in header.get("kinds", ["domain"] * arr.ndim)]
    directions = header.get("space directions")
    spatial_axes = []
    for i in range(arr.ndim):
        no_direction = directions is not None and not np.all(np.isfinite(np.asarray(directions[i], dtype=float)))
        if kinds[i] in _CHANNEL_KINDS or no_direction:
            continue
        spatial_axes.append(i)
    channel_axes = [i for i in range(arr.ndim) if i not in spatial_axes]
    colour = False
    if channel_axes:
        if len(channel_axes) == 1 and arr.shape[channel_axes[0]] == 3 and kinds[channel_axes[0]] != "list":
            arr = np.moveaxis(arr, channel_axes[0], -1)
            colour = True
        elif len(channel_axes) == 1 and arr.shape[channel_axes[0]] == 1:
            arr = np.take(arr, 0, axis=channel_axes[0])
        else:
            raise _fail(path, f"NRRD with non-spatial axes {channel_axes} of shape {arr.shape} (multi-layer "
                              "segmentations are not supported)")
    affine = _nrrd_affine(path, header, spatial_axes)
    arr, meta = _finish_volume(path, arr, affine, colour, "nrrd")
    segments = {k: v for k, v in header.items() if str(k).startswith("Segment")}
    if segments:
        meta["segment_fields"] = {k: str(v) for k, v in segments.items()}
    return arr, meta


def _finish_volume(path, arr: np.ndarray, affine: np.ndarray, colour: bool, fmt: str):
    n_spatial = arr.ndim - int(colour)
    if n_spatial not in (2, 3):
        raise _fail(path, f"{fmt} image has {n_spatial} spatial dimensions (shape {arr.shape}); expected 2 or 3")
    one_slice = n_spatial == 3 and arr.shape[2] == 1
    if one_slice:
        arr = arr[:, :, 0]
    if arr.size == 0:
        raise _fail(path, f"{fmt} image is empty (shape {arr.shape})")
    meta = _base_meta(path, arr, affine, colour, fmt)
    meta["one_slice"] = one_slice
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return np.ascontiguousarray(arr), meta


def load_image(path: str | os.PathLike, grayscale: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Validate and read an image or cine file of any supported format (see the module docstring).

    Args:
        path: DICOM, PNG, JPEG (GIF, BMP, TIFF), NIfTI (``.nii``/``.nii.gz``), NRRD (``.nrrd``/``.seg.nrrd``) or
            video (MP4/MOV/AVI) file.
        grayscale: convert colour to grey by ITU-R BT.601 luma.

    Returns:
        ``(array, meta)``: ``array`` is ``(X, Y[, T][, 3])``; ``meta`` has the keys of ``docs/DESIGN.md`` plus
        ``format`` and ``one_slice``.

    Raises:
        FileNotFoundError: no such file.
        UltrasoundIOError: unsupported format, or a corrupt/inconsistent file (message names the problem).
        MissingDecoderError: a DICOM transfer syntax whose decoder package is not installed.
    """
    fmt = sniff_format(path)
    if fmt == "dicom":
        arr, meta = read_dicom(path, grayscale=grayscale)
        meta.update(format="dicom", one_slice=False)
        return arr, meta
    if fmt == "video":
        from usseg_models.io.video import read_video

        return read_video(path, grayscale=grayscale)
    reader = {"nifti": _read_nifti, "nrrd": _read_nrrd}.get(fmt, _read_pil)
    arr, meta = reader(path)
    if grayscale and meta["original_channel_dim"] == -1:
        arr = bt601_luma(arr)
        meta["original_channel_dim"] = "no_channel"
        meta["photometric_interpretation"] = "MONOCHROME2"
    return arr, meta
