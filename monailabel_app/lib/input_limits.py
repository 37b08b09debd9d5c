"""Limits every uploaded file passes before the server decodes it, and the checks right after decoding.

* **Decoded size**: a file may decode to at most :func:`max_decoded_voxels` values — pixels x frames x
  channels, the size of the array :func:`usseg_models.io.load_image` would return — by default
  :data:`DEFAULT_MAX_DECODED_VOXELS` (2**28 = 268,435,456, e.g. a 1024x1024 grey cine of 256 frames or a
  800x600 RGB cine of 186 frames); the environment variable ``USSEG_MAX_DECODED_VOXELS`` of the server process
  changes it. The size is read from the header (:func:`usseg_models.io.formats.probe_header`) before any pixel is
  decoded or decompressed, so a few megabytes on the wire that claim gigabytes are answered **413** at once.
  It applies to images uploaded to the datastore, labels, files sent with an infer request and every study
  the server reads for inference or scoring.
* **Finite values**: an image whose decoded values hold NaN or Inf is refused with **422**.
* **Result files**: a NIfTI-1 result holds at most 32767 per axis; larger inputs must ask for another
  ``result_extension`` (422 otherwise, before any inference runs).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
from fastapi import HTTPException

from monailabel_app.lib.http import http_error_for, unprocessable
from usseg_models.errors import UssegError
from usseg_models.io import load_image
from usseg_models.io.formats import probe_header
from usseg_models.io.header import HeaderTooLarge, ImageHeader

__all__ = [
    "DEFAULT_MAX_DECODED_VOXELS",
    "LIMIT_ENV",
    "NIFTI1_MAX_DIM",
    "max_decoded_voxels",
    "check_decoded_size",
    "check_finite",
    "read_checked",
    "check_result_fits",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_DECODED_VOXELS = 2**28
LIMIT_ENV = "USSEG_MAX_DECODED_VOXELS"
NIFTI1_MAX_DIM = 32767  # NIfTI-1 stores dimensions as int16


def max_decoded_voxels() -> int:
    """The decoded-size limit in values: ``$USSEG_MAX_DECODED_VOXELS`` when a positive integer, else the default."""
    raw = os.environ.get(LIMIT_ENV, "").strip()
    if raw:
        try:
            value = int(raw)
            if value > 0:
                return value
        except ValueError:
            pass
        logger.warning("%s=%r is not a positive integer; using %d", LIMIT_ENV, raw, DEFAULT_MAX_DECODED_VOXELS)
    return DEFAULT_MAX_DECODED_VOXELS


def _too_large(message: str) -> HTTPException:
    return HTTPException(status_code=413, detail=message)


def check_decoded_size(path: str | os.PathLike, what: str = "file") -> ImageHeader:
    """Probe ``path``'s header and refuse it (HTTP 413) when it would decode to more than the limit.

    Returns:
        the header, for callers that also need the shape.

    Raises:
        HTTPException: 413 over the limit, 422 (415 for a missing decoder) for an unreadable header.
    """
    try:
        header = probe_header(path)
    except HeaderTooLarge as exc:
        raise _too_large(f"{what} is too large to decode: {exc}") from exc
    except FileNotFoundError as exc:
        raise unprocessable(f"{what} not found") from exc
    except UssegError as exc:
        raise http_error_for(exc) from exc
    limit = max_decoded_voxels()
    if header.elements > limit:
        raise _too_large(
            f"{what} would decode to {header.elements:,} values ({header.describe()}), more than the server's limit"
            f" of {limit:,} (pixels x frames x channels; {LIMIT_ENV})"
        )
    return header


def check_finite(array: np.ndarray, what: str = "image") -> None:
    """Refuse (HTTP 422) an array holding NaN or Inf; integer arrays pass without a scan."""
    if np.issubdtype(array.dtype, np.inexact):
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if bad:
            raise unprocessable(f"{what} contains {bad:,} NaN or infinite value(s) of {array.size:,}; refused")


def read_checked(path: str | os.PathLike, what: str = "image") -> tuple[np.ndarray, dict[str, Any], ImageHeader]:
    """:func:`check_decoded_size`, then :func:`usseg_models.io.load_image`, then :func:`check_finite`.

    Returns:
        ``(array, meta, header)``.

    Raises:
        HTTPException: 413 over the size limit; 415/422 for unreadable files; 422 for NaN/Inf values.
    """
    header = check_decoded_size(path, what)
    try:
        array, meta = load_image(path)
    except UssegError as exc:
        raise http_error_for(exc) from exc
    check_finite(array, what)
    return array, meta, header


def check_result_fits(ext: str, shape: tuple[int, ...]) -> None:
    """Refuse (HTTP 422) a NIfTI result whose axes do not fit NIfTI-1's int16 dimensions."""
    if ext in (".nii", ".nii.gz") and any(int(s) > NIFTI1_MAX_DIM for s in shape):
        raise unprocessable(
            f"a NIfTI result cannot hold shape {tuple(int(s) for s in shape)} (at most {NIFTI1_MAX_DIM} per axis);"
            " ask for result_extension '.nrrd', '.seg.nrrd' or, for a 2D image, '.png'"
        )
