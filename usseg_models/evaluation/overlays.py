"""PNG overlays: the frame, the ground truth (green) and the prediction (red) side by side.

Label maps of several structures (values above 1) are drawn with one colour per structure in both panels (the
palette's fallback colours in label-value order, :func:`usseg_models.palette.fallback_color`).

Arrays are in the reader's ``(X, Y)`` layout (``docs/DESIGN.md``); they are transposed to rows × columns for
display, so the picture looks like the original image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["overlay_panel", "save_overlay"]

GREEN = np.array([0, 220, 0], np.float32)
RED = np.array([230, 30, 30], np.float32)


def _grey_u8(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image, np.float32)
    if a.ndim == 3:
        a = a[..., :3].mean(axis=-1)
    lo, hi = float(a.min()), float(a.max())
    return np.zeros_like(a, np.uint8) if hi <= lo else ((a - lo) / (hi - lo) * 255).round().astype(np.uint8)


def _edge(mask: np.ndarray) -> np.ndarray:
    m = mask.astype(bool)
    pad = np.pad(m, 1, mode="edge")
    inner = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
    return m & ~inner


def _tint(grey: np.ndarray, mask: np.ndarray, colour: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    rgb = np.repeat(grey[..., None].astype(np.float32), 3, axis=-1)
    m = mask.astype(bool)
    rgb[m] = (1 - alpha) * rgb[m] + alpha * colour
    rgb[_edge(m)] = colour
    return rgb.clip(0, 255).astype(np.uint8)


def _tint_structures(grey: np.ndarray, label: np.ndarray, values: list[int]) -> np.ndarray:
    from usseg_models.palette import fallback_color

    rgb = np.repeat(grey[..., None], 3, axis=-1)
    for i, v in enumerate(values):
        colour = np.array(fallback_color(i), np.float32) * 255
        m = np.asarray(label) == v
        blended = rgb.astype(np.float32)
        blended[m] = 0.6 * blended[m] + 0.4 * colour
        blended[_edge(m)] = colour
        rgb = blended.clip(0, 255).astype(np.uint8)
    return rgb


def overlay_panel(image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """RGB uint8 panel ``(rows=Y, 3·X, 3)``: image | image + truth (green) | image + prediction (red); with several
    structures, each structure in its own colour in both panels.

    Args:
        image: ``(X, Y)`` or ``(X, Y, 3)`` frame, any dtype (min/max scaled for display).
        truth: ``(X, Y)`` mask.
        pred: ``(X, Y)`` mask.

    Raises:
        ValueError: when the three spatial shapes differ.
    """
    grey = _grey_u8(image)
    if grey.shape != np.shape(truth) or grey.shape != np.shape(pred):
        raise ValueError(f"image {grey.shape}, truth {np.shape(truth)} and prediction {np.shape(pred)} differ")
    values = sorted((set(np.unique(truth).tolist()) | set(np.unique(pred).tolist())) - {0})
    if values and max(values) > 1:
        panels = [np.repeat(grey[..., None], 3, axis=-1), _tint_structures(grey, truth, values),
                  _tint_structures(grey, pred, values)]
    else:
        panels = [np.repeat(grey[..., None], 3, axis=-1), _tint(grey, truth, GREEN), _tint(grey, pred, RED)]
    return np.concatenate([p.transpose(1, 0, 2) for p in panels], axis=1)


MIN_DISPLAY_ROWS = 256


def save_overlay(path: str | Path, image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> Path:
    """Write :func:`overlay_panel` as a PNG and return its path.

    Panels smaller than ``MIN_DISPLAY_ROWS`` rows are enlarged by a whole factor (nearest neighbour, so every
    original pixel stays a visible block) to be readable; larger ones are written at their own size.
    """
    panel = overlay_panel(image, truth, pred)
    factor = max(1, -(-MIN_DISPLAY_ROWS // panel.shape[0]))
    if factor > 1:
        panel = panel.repeat(factor, axis=0).repeat(factor, axis=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(panel)).save(path)
    return path
