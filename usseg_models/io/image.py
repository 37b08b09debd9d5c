"""The one reader registry: every file format this project reads → its reader and its header-only prober.

:func:`load_image` identifies the format from the file's bytes, once (:func:`usseg_models.io.validate.sniff_format`),
and hands the file to the registered reader, which validates it in Python and returns ``(array, meta)`` in MONAI's
spatial-first layout (``docs/DESIGN.md``). :func:`probe_header` answers "is this a cine, how many frames, how big
once decoded" from the header alone (no pixel is decoded). The MONAI ``ImageReader``/``LoadUltrasound`` wrappers
(:mod:`usseg_models.io.loaders`), the CLI, the server and training all read through these two functions.

- ``dicom``: :func:`usseg_models.io.dicom_pixels.read_dicom` — ``(X, Y[, T][, 3])``, ultrasound calibration.
- ``png``/``jpeg``/``gif``/``bmp``/``tiff``: :func:`usseg_models.io.raster.read_raster` — ``(X, Y)`` or
  ``(X, Y, 3)``, identity affine.
- ``nifti``/``nrrd``: :func:`usseg_models.io.volume.read_nifti` / ``read_nrrd`` — ``(X, Y[, T])`` with a RAS
  affine; a one-slice ``(X, Y, 1)`` volume is squeezed and flagged ``one_slice``.
- ``video``: :func:`usseg_models.io.video.read_video` — ``(X, Y, T[, 3])``, ``frame_time_ms`` from the container.

Each has a prober in :mod:`usseg_models.io.header` (``probe_dicom``, ``probe_raster``, ...).
``grayscale=True`` turns any colour image grey by ITU-R BT.601 luma (rounded, dtype kept).

Examples::

    >>> from usseg_models.io.image import load_image, probe_header
    >>> array, meta = load_image("frame.png", grayscale=True)              # doctest: +SKIP
    >>> array.shape, meta["spacing"]                                        # doctest: +SKIP
    ((640, 480), array([1., 1.]))
    >>> probe_header("clip.mp4").frames                                     # doctest: +SKIP
    24
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from usseg_models.io import header as _header
from usseg_models.io.conventions import LPS_TO_RAS, bt601_luma
from usseg_models.io.header import ImageHeader
from usseg_models.io.validate import sniff_format

__all__ = ["load_image", "probe_header", "FormatEntry", "READERS", "SUFFIXES", "LPS_TO_RAS"]

Reader = Callable[[str, bool], tuple[np.ndarray, dict[str, Any]]]


@dataclass(frozen=True)
class FormatEntry:
    """One format: its reader ``read(path, grayscale)``, its header prober and the file name endings it uses."""

    read: Reader
    probe: Callable[[str], ImageHeader]
    suffixes: tuple[str, ...]


def _read_dicom(path: str, grayscale: bool) -> tuple[np.ndarray, dict[str, Any]]:
    from usseg_models.io.dicom_pixels import read_dicom

    arr, meta = read_dicom(path, grayscale=grayscale, sniffed=True)
    meta.update(format="dicom", one_slice=False)
    return arr, meta


def _read_video(path: str, grayscale: bool) -> tuple[np.ndarray, dict[str, Any]]:
    from usseg_models.io.video import read_video

    return read_video(path, grayscale=grayscale)


def _grey_after(read: Callable[[str], tuple[np.ndarray, dict[str, Any]]]) -> Reader:
    """A reader that applies BT.601 luma itself when asked (readers of formats without their own colour rule)."""

    def reader(path: str, grayscale: bool) -> tuple[np.ndarray, dict[str, Any]]:
        arr, meta = read(path)
        if grayscale and meta["original_channel_dim"] == -1:
            arr = bt601_luma(arr)
            meta["original_channel_dim"] = "no_channel"
            meta["photometric_interpretation"] = "MONOCHROME2"
        return arr, meta

    return reader


def _raster(path: str) -> tuple[np.ndarray, dict[str, Any]]:
    from usseg_models.io.raster import read_raster

    return read_raster(path)


def _nifti(path: str) -> tuple[np.ndarray, dict[str, Any]]:
    from usseg_models.io.volume import read_nifti

    return read_nifti(path)


def _nrrd(path: str) -> tuple[np.ndarray, dict[str, Any]]:
    from usseg_models.io.volume import read_nrrd

    return read_nrrd(path)


def _raster_entry(fmt: str, suffixes: tuple[str, ...]) -> FormatEntry:
    return FormatEntry(_grey_after(_raster), lambda p: _header.probe_raster(p, fmt), suffixes)


#: sniffed format (:func:`usseg_models.io.validate.sniff_format`) → reader, prober, file name endings.
READERS: dict[str, FormatEntry] = {
    "dicom": FormatEntry(_read_dicom, _header.probe_dicom, (".dcm", ".dicom", ".dic")),
    "png": _raster_entry("png", (".png",)),
    "jpeg": _raster_entry("jpeg", (".jpg", ".jpeg")),
    "gif": _raster_entry("gif", (".gif",)),
    "bmp": _raster_entry("bmp", (".bmp",)),
    "tiff": _raster_entry("tiff", (".tif", ".tiff")),
    "nifti": FormatEntry(_grey_after(_nifti), _header.probe_nifti, (".nii", ".nii.gz")),
    "nrrd": FormatEntry(_grey_after(_nrrd), _header.probe_nrrd, (".nrrd", ".seg.nrrd", ".nhdr")),
    "video": FormatEntry(_read_video, _header.probe_video_header, (".mp4", ".m4v", ".mov", ".qt", ".avi")),
}

#: every file name ending some reader uses (DICOM files may also have none).
SUFFIXES: tuple[str, ...] = tuple(s for entry in READERS.values() for s in entry.suffixes)


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
    return READERS[sniff_format(path)].read(os.fspath(path), grayscale)


def probe_header(path: str | os.PathLike) -> ImageHeader:
    """The decoded shape and size of an image/cine/label file from its header only (see :mod:`.header`).

    Raises:
        FileNotFoundError: no such file.
        HeaderTooLarge: the header parser itself refused the declared size.
        UltrasoundIOError: unsupported format or an unreadable header (the message names the file).
    """
    path = os.fspath(path)
    return READERS[sniff_format(path)].probe(path)
