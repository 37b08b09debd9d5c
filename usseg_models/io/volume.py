"""NIfTI (nibabel) and NRRD (pynrrd) volumes as ``(X, Y[, T])`` arrays with a RAS affine.

- **NIfTI** (``.nii``/``.nii.gz``): the stored array (scaled by ``scl_slope`` when set) with the file's RAS affine;
  ``RGB24`` voxels become a last axis of 3.
- **NRRD** (``.nrrd``/``.seg.nrrd``): the stored array with the affine from ``space directions`` /
  ``space origin`` converted to RAS (the NIfTI/MONAI convention); a non-spatial axis of 3 (``RGB-color``,
  ``vector``) becomes the last axis. Multi-layer segmentations are refused.

A third spatial axis longer than one is reported as frames (``num_frames``): the project's cine labels are
``(X, Y, T)`` volumes. A third axis of exactly one — the one-slice ``(X, Y, 1)`` volume 3D Slicer sends for a 2D
image — is squeezed to ``(X, Y)`` and flagged ``meta["one_slice"] = True``; ``affine`` keeps the file's full 4x4
matrix so :func:`usseg_models.io.writers.write_label` can restore ``(X, Y, 1)`` with the same geometry.
The registry entries are :data:`NIFTI` and :data:`NRRD`.
"""

from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Mapping
from typing import Any

import nibabel as nib
import nrrd
import numpy as np

from usseg_models.errors import UltrasoundIOError
from usseg_models.io.conventions import LPS_TO_RAS
from usseg_models.io.format import Format, file_error, grey_on_request
from usseg_models.io.header import probe_nifti, probe_nrrd
from usseg_models.io.layout import base_meta

__all__ = ["read_nifti", "read_nrrd", "NIFTI", "NRRD"]

logger = logging.getLogger(__name__)

_LPS_SPACES = ("left-posterior-superior", "lps", "scanner-xyz")
_RAS_SPACES = ("right-anterior-superior", "ras")
_CHANNEL_KINDS = ("rgb-color", "vector", "3-vector", "covariant-vector", "normal", "3-color", "list")




def read_nifti(path) -> tuple[np.ndarray, dict[str, Any]]:
    try:
        img = nib.load(os.fspath(path))
        header = img.header
        if not str(path).endswith(".gz"):
            needed = int(header.get_data_offset()) + int(np.prod(img.shape)) * header.get_data_dtype().itemsize
            if os.path.getsize(path) < needed:
                raise file_error(
                    path, f"NIfTI file has {os.path.getsize(path)} bytes, header needs {needed} (truncated)")
        arr = np.asanyarray(img.dataobj)
        affine = np.asarray(img.affine, dtype=np.float64)
    except UltrasoundIOError:
        raise
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types on corrupt files
        raise file_error(path, f"corrupt or truncated NIfTI file ({type(exc).__name__}: {exc})") from exc
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


def read_nrrd(path) -> tuple[np.ndarray, dict[str, Any]]:
    try:
        arr, header = nrrd.read(os.fspath(path))  # index order 'F': axis 0 = fastest = X
    except Exception as exc:  # noqa: BLE001 - pynrrd raises NRRDError, ValueError, OSError, zlib.error, ...
        raise file_error(path, f"corrupt or truncated NRRD file ({type(exc).__name__}: {exc})") from exc
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
            raise file_error(path, f"NRRD with non-spatial axes {channel_axes} of shape {arr.shape} (multi-layer "
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
        raise file_error(path, f"{fmt} image has {n_spatial} spatial dimensions (shape {arr.shape}); expected 2 or 3")
    one_slice = n_spatial == 3 and arr.shape[2] == 1
    if one_slice:
        arr = arr[:, :, 0]
    if arr.size == 0:
        raise file_error(path, f"{fmt} image is empty (shape {arr.shape})")
    meta = base_meta(path, arr, affine, colour, fmt)
    meta["one_slice"] = one_slice
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return np.ascontiguousarray(arr), meta


def _nifti_signature(head: bytes) -> bool:
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return int.from_bytes(head[:4], "little") == 348 or int.from_bytes(head[:4], "big") == 348
    if len(head) >= 540 and head[4:8] in (b"n+2\x00", b"ni2\x00"):
        return int.from_bytes(head[:4], "little") == 540 or int.from_bytes(head[:4], "big") == 540
    return False


def _sniff_nifti(head: bytes, path: str) -> bool:
    """NIfTI-1/2 header signature, in the file or at the start of its gzip stream (``.nii.gz``)."""
    if head.startswith(b"\x1f\x8b"):
        try:
            with gzip.open(path, "rb") as gz:
                head = gz.read(544)
        except (OSError, EOFError) as exc:
            raise file_error(path, f"corrupt gzip stream ({exc})") from exc
    return _nifti_signature(head)


#: registry entries (:mod:`usseg_models.io.formats`)
NIFTI = Format("nifti", (".nii", ".nii.gz"), _sniff_nifti, grey_on_request(read_nifti), probe_nifti, label="NIfTI")
NRRD = Format("nrrd", (".nrrd", ".seg.nrrd", ".nhdr"), lambda head, path: head.startswith(b"NRRD000"),
              grey_on_request(read_nrrd), probe_nrrd, label="NRRD")
