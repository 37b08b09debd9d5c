"""The two numeric conventions every reader and writer shares (``docs/DESIGN.md``).

- :data:`LPS_TO_RAS`: DICOM/NRRD/ITK store LPS coordinates, NIfTI/MONAI/Slicer use RAS; the flip of the first two
  axes (its own inverse) converts either way.
- ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` (:data:`BT601_WEIGHTS`, :func:`bt601_luma`): grey from colour
  in the readers and in the network transforms.

The torch-free Slicer Lib keeps its own copies (``USSegClipLib.volumeio.LPS_TO_RAS``, ``geometry.to_grey``);
``tests/test_slicer_conventions.py`` checks they agree with these.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LPS_TO_RAS", "BT601_WEIGHTS", "bt601_luma"]

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

BT601_WEIGHTS = (0.299, 0.587, 0.114)


def bt601_luma(rgb: np.ndarray) -> np.ndarray:
    """Grey value of RGB pixels by ITU-R BT.601 luma, ``0.299 R + 0.587 G + 0.114 B``.

    Args:
        rgb: array with a last axis of 3 (any leading shape), integer or float.

    Returns:
        array of the leading shape, rounded to the nearest integer and cast to ``rgb.dtype`` for integer input.
    """
    if rgb.shape[-1] != 3:
        raise ValueError(f"bt601_luma expects a last axis of 3 channels, got shape {rgb.shape}.")
    r, g, b = BT601_WEIGHTS
    luma = rgb[..., 0] * r + rgb[..., 1] * g + rgb[..., 2] * b
    if np.issubdtype(rgb.dtype, np.integer):
        info = np.iinfo(rgb.dtype)
        return np.clip(np.rint(luma), info.min, info.max).astype(rgb.dtype)
    return luma.astype(rgb.dtype)
