"""Checks a submitted label must pass against its image before the datastore stores it.

A label is accepted only when

1. **dimensionality**: it has one channel (no colour/RGB labels) and the layout the model expects — ``(X, Y)``
   for a 2D image (a one-slice ``(X, Y, 1)`` volume counts as 2D) and ``(X, Y, T)`` for a cine;
2. **size**: its ``(X, Y)`` equals the image's, and for a cine its frame count ``T`` equals the cine's;
3. **finite**: no NaN or Inf values;
4. **values**: every value is an integer of the model's label set: background 0 and the configured structures'
   values (``{0, 1}`` for the default one structure; ``{0, 1, 2, 3}`` for ``--conf labels "1:LV,2:MYO,3:LA"``). A
   value outside it is refused, naming the values and the structures. For one structure of value 1 a PNG label
   whose values are exactly within ``{0, 255}`` is accepted too: 255 means label 1 (the trainer reads 0/255 masks
   as 0/1, see ``usseg_models.data.records.binarize_label``), and the file is stored as sent.

:func:`check_label` raises :class:`LabelMismatch` naming what was expected and what was found; the datastore
turns it into HTTP 422 and stores nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from usseg_models.io.header import ImageHeader

__all__ = ["LabelMismatch", "BINARY_LABELS", "PNG_FOREGROUND", "check_label", "check_reviewed_frames"]

BINARY_LABELS = frozenset({0, 1})
PNG_FOREGROUND = 255  # 0/255 PNG masks: 255 is label 1


class LabelMismatch(ValueError):
    """The label does not fit its image or the model (message: expected vs got)."""


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


def _label_layout(label: np.ndarray, meta: dict[str, Any]) -> tuple[int, ...]:
    """Spatial shape of a reader array; refuses colour labels."""
    if meta.get("original_channel_dim") == -1:
        raise LabelMismatch(
            f"label must have one channel (integer label values), got a colour image shaped {_shape_text(label.shape)}"
        )
    return tuple(int(s) for s in label.shape)


def _check_layout(shape: tuple[int, ...], image: ImageHeader) -> None:
    x, y = image.xy
    if image.is_cine:
        expected = (x, y, image.frames)
        if len(shape) != 3:
            raise LabelMismatch(
                f"label shaped {_shape_text(shape)} for a cine of {image.frames} frames: expected a volume "
                f"(X, Y, T) = {_shape_text(expected)}"
            )
        if shape[:2] != (x, y):
            raise LabelMismatch(f"label (X, Y) is {_shape_text(shape[:2])}, the cine's is {_shape_text((x, y))}")
        if shape[2] != image.frames:
            raise LabelMismatch(
                f"label has {shape[2]} frames, the cine has {image.frames}: expected {_shape_text(expected)}"
            )
        return
    if len(shape) != 2:
        raise LabelMismatch(
            f"label shaped {_shape_text(shape)} for a 2D image: expected (X, Y) = {_shape_text((x, y))} "
            "or a one-slice (X, Y, 1)"
        )
    if shape != (x, y):
        raise LabelMismatch(f"label (X, Y) is {_shape_text(shape)}, the image's is {_shape_text((x, y))}")


def _check_values(label: np.ndarray, allowed: frozenset[int], fmt: str | None, structures: str | None = None
                  ) -> list[int]:
    if np.issubdtype(label.dtype, np.inexact):
        finite = np.isfinite(label)
        if not finite.all():
            raise LabelMismatch(f"label contains {int(label.size - finite.sum()):,} NaN or infinite value(s)")
        if not np.array_equal(label, np.round(label)):
            raise LabelMismatch(
                f"label values must be integers {sorted(allowed)}, got non-integer values such as "
                f"{float(label[label != np.round(label)].flat[0])!r}"
            )
    elif not (np.issubdtype(label.dtype, np.integer) or label.dtype == np.bool_):
        raise LabelMismatch(f"label values must be integers, got dtype {label.dtype}")
    values = [int(v) for v in np.unique(label)]
    if set(values) <= allowed:
        return values
    if fmt == "png" and set(values) <= {0, PNG_FOREGROUND} and max(allowed) == 1:
        return values  # 0/255 PNG mask, 255 = label 1
    unexpected = [v for v in values if v not in allowed]
    shown = ", ".join(map(str, unexpected[:8])) + (", ..." if len(unexpected) > 8 else "")
    extra = " (or 0/255 for a PNG mask)" if max(allowed) == 1 else ""
    named = f" (0 background, {structures})" if structures else ""
    raise LabelMismatch(f"label values must be in {sorted(allowed)}{named}{extra}, got unexpected value(s) {shown}")


def check_label(
    label: np.ndarray, meta: dict[str, Any], image: ImageHeader, allowed: Iterable[int] = BINARY_LABELS,
    structures: str | None = None,
) -> dict[str, Any]:
    """Check a decoded label (:func:`usseg_models.io.load_image` output) against its image's header.

    Args:
        label: the label array as read (a one-slice ``(X, Y, 1)`` volume arrives squeezed to ``(X, Y)``).
        meta: the reader's metadata of the label (``format``, ``original_channel_dim``).
        image: header of the image the label belongs to (:func:`usseg_models.io.formats.probe_header`).
        allowed: the model's label values, background 0 included.
        structures: the model's structures as ``"1 LV, 2 MYO, 3 LA"``, named in the refusal (optional).

    Returns:
        ``{"shape": [...], "values": [...]}`` of the accepted label.

    Raises:
        LabelMismatch: the first rule of the module docstring the label breaks (expected vs got).
    """
    allowed = frozenset(int(v) for v in allowed) | {0}
    shape = _label_layout(np.asarray(label), meta)
    _check_layout(shape, image)
    values = _check_values(np.asarray(label), allowed, meta.get("format"), structures)
    return {"shape": list(shape), "values": values}


def check_reviewed_frames(label_info: dict[str, Any] | None, image: ImageHeader) -> None:
    """Refuse a ``reviewed_frames`` entry of a label's info that training could not use as sent.

    Absent means every frame was reviewed. Present, it must be a non-empty list of integer frame indices of the
    cine (0-based, ``0 <= t < T``); an image has no frames to review.

    Raises:
        LabelMismatch: naming what is wrong (type, range, or a 2D image).
    """
    value = (label_info or {}).get("reviewed_frames")
    if value is None:
        return
    if not image.is_cine:
        raise LabelMismatch(f"reviewed_frames applies to cines; {image.describe()} has no frames")
    if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
        raise LabelMismatch(f"reviewed_frames must be a list of frame indices (integers), got {value!r}")
    if not value:
        raise LabelMismatch("reviewed_frames is empty: a label with no reviewed frame teaches the model nothing")
    bad = sorted({v for v in value if not 0 <= v < image.frames})[:10]
    if bad:
        raise LabelMismatch(f"reviewed_frames {bad} outside the cine's frames 0..{image.frames - 1}")
