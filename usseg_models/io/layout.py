"""Helpers for the reader layout (``docs/DESIGN.md``): ``(X, Y[, T])`` spatial axes, then an optional colour axis."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["spatial_ndim", "describe_array", "base_meta"]


def spatial_ndim(array: Any, meta: dict[str, Any]) -> int:
    """Number of spatial ``(X, Y[, T])`` axes of a reader array, not counting a channel-last colour axis."""
    return array.ndim - (1 if meta.get("original_channel_dim") == -1 else 0)


def describe_array(array: Any, meta: dict[str, Any]) -> str:
    """A reader array in a user's words, for error messages: ``"one image of 800 x 600 px, 3 colour channels"``,
    ``"a cine of 2 frame(s) of 800 x 600 px"``; frames and colour channels are never both called axes of a shape."""
    ndim = spatial_ndim(array, meta)
    shape = tuple(int(n) for n in array.shape)
    colour = f", {shape[-1]} colour channels" if ndim < len(shape) else ""
    if ndim == 2:
        return f"one image of {shape[0]} x {shape[1]} px{colour}"
    if ndim == 3:
        return f"a cine of {shape[2]} frame(s) of {shape[0]} x {shape[1]} px{colour}"
    return f"an array shaped {shape} ({ndim} spatial axes{colour})"


def base_meta(path, arr: np.ndarray, affine: np.ndarray, colour: bool, fmt: str) -> dict[str, Any]:
    """Reader metadata (``docs/DESIGN.md`` keys) of a non-DICOM file; DICOM-only fields are None."""
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
