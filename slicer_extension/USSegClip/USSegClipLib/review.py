"""Which frames of a clip the user reviewed: edited frames (found by comparing masks) and frames marked reviewed.

A submitted clip label carries ``params={"reviewed_frames": [...]}``; the server trains only on those frames, so a
sonographer who checked 5 frames of 90 does not teach the model its own unchecked predictions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from .errors import ClipGeometryError

__all__ = ["changed_frames", "format_frames", "parse_frames", "review_summary"]


def changed_frames(current: Mapping[str, np.ndarray], baseline: Mapping[str, np.ndarray],
                   frame_axis: int = 2) -> list[int]:
    """Frames where any segment's mask differs between ``current`` and ``baseline``.

    Args:
        current: segment name → boolean mask (i, j, k) as the segmentation holds it now.
        baseline: segment name → mask as the module last wrote it (a model's output).
        frame_axis: the axis that counts frames.

    A segment present on one side only is compared with an empty mask.

    Raises:
        ClipGeometryError: masks of different shapes.

    Examples::

        changed_frames({"lesion": now}, {"lesion": before})  # [3, 7]
    """
    shapes = {np.shape(m) for m in list(current.values()) + list(baseline.values())}
    if not shapes:
        return []
    if len(shapes) != 1:
        raise ClipGeometryError(f"masks to compare differ in shape: {sorted(shapes)}")
    shape = shapes.pop()
    axes = tuple(a for a in range(len(shape)) if a != frame_axis)
    changed = np.zeros(shape[frame_axis], dtype=bool)
    empty = np.zeros(shape, dtype=bool)
    for name in set(current) | set(baseline):
        a = np.asarray(current.get(name, empty), dtype=bool)
        b = np.asarray(baseline.get(name, empty), dtype=bool)
        changed |= np.any(a != b, axis=axes)
    return [int(t) for t in np.flatnonzero(changed)]


def format_frames(frames: Iterable[int]) -> str:
    """Frame indices as text for a node attribute: ``"0 3 5"`` (sorted, unique)."""
    return " ".join(str(f) for f in sorted({int(f) for f in frames}))


def parse_frames(text: str | None) -> list[int]:
    """Inverse of :func:`format_frames` (``None`` or empty text → no frames).

    Raises:
        ClipGeometryError: text that is not whitespace-separated non-negative integers.
    """
    if not text or not text.strip():
        return []
    try:
        frames = sorted({int(v) for v in text.split()})
    except ValueError as e:
        raise ClipGeometryError(f"not a list of frame numbers: {text!r}") from e
    if frames[0] < 0:
        raise ClipGeometryError(f"frame numbers must be >= 0: {text!r}")
    return frames


def review_summary(reviewed: Iterable[int], num_frames: int) -> str:
    """``"k of N frames reviewed"`` for the panel."""
    k = len({int(f) for f in reviewed})
    return f"{k} of {num_frames} frame{'' if num_frames == 1 else 's'} reviewed"
