"""Label values and names: the server's label table and palette, labelmaps ↔ per-structure segments, and fitting a
returned label onto the clip it belongs to.

A clip may hold several structures (e.g. CAMUS: ``{"LV": 1, "MYO": 2, "LA": 3}``): one segment per structure, named
and coloured as the server says (``label_names`` / ``label_colors``); a label value without a server name or colour
gets :data:`FALLBACK_COLORS` of its position in label-value order, as ``usseg_models.palette`` does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ClipGeometryError, LabelFileError
from .geometry import Clip

__all__ = ["FALLBACK_COLORS", "SegmentStyle", "compose_labelmap", "fallback_color", "fit_label_to_clip",
           "label_palette", "label_segments", "labels_summary", "model_labels", "models_of_dimension",
           "palette_for_label", "rename_labels", "split_labelmap"]

logger = logging.getLogger(__name__)

RGB = tuple[float, float, float]

# Colours (RGB 0..1) for label values without a server colour, by position in label-value order: an equal copy of
# ``usseg_models.palette.FALLBACK_COLORS`` (this package runs without usseg_models; a test holds the two equal).
FALLBACK_COLORS: tuple[RGB, ...] = (
    (0.95, 0.35, 0.2),
    (0.2, 0.75, 0.3),
    (0.25, 0.5, 0.95),
    (0.95, 0.85, 0.2),
    (0.75, 0.3, 0.85),
    (0.2, 0.85, 0.85),
)


def fallback_color(index: int) -> RGB:
    """The ``index``-th colour of :data:`FALLBACK_COLORS` (cycling), as ``usseg_models.palette.fallback_color``."""
    return FALLBACK_COLORS[index % len(FALLBACK_COLORS)]


def model_labels(info: Mapping[str, Any], model: str | None = None) -> dict[str, int]:
    """Label name → value from a ``GET /info/`` answer, background (0) excluded.

    Args:
        info: the server's ``/info/`` JSON.
        model: take the labels of this model (``info["models"][model]["labels"]``); None: the app-level labels.

    MONAI Label gives labels as a dict ``{name: value}`` or as a list of names (values 1, 2, ... in order).

    Raises:
        LabelFileError: the model is unknown, or the server lists no labels.
    """
    if model is not None:
        models = info.get("models", {})
        if model not in models:
            raise LabelFileError(f"the server has no model {model!r}; it has: {', '.join(models) or 'none'}")
        labels = models[model].get("labels")
    else:
        labels = info.get("labels")
    if not labels:
        raise LabelFileError(f"the server lists no labels for {model or 'the app'}")
    if isinstance(labels, Mapping):
        table = {str(k): int(v) for k, v in labels.items()}
    else:
        table = {str(name): i + 1 for i, name in enumerate(labels)}
    return {k: v for k, v in table.items() if v != 0 and k.lower() != "background"}


def labels_summary(info: Mapping[str, Any] | None, model: str | None) -> str:
    """A model's labels on one line for the GUI, ``"lesion (1)"``: ``"-"`` without server info or model, the
    reason when the server lists none."""
    if not info or not model:
        return "-"
    try:
        return ", ".join(f"{name} ({value})" for name, value in model_labels(info, model).items())
    except LabelFileError as e:
        return str(e)


@dataclass(frozen=True)
class SegmentStyle:
    """How one server label appears as a Slicer segment.

    Attributes:
        name: the server's label name (the segment's name and id).
        value: the label value in the server's label files.
        color: RGB in 0..1 from the server, or None when the server gave none (Slicer then picks one).
    """

    name: str
    value: int
    color: tuple[float, float, float] | None = None


def palette_for_label(palette: list[SegmentStyle], labelmap: np.ndarray | None = None) -> list[SegmentStyle]:
    """Every structure a label shows, each with a colour, in label-value order.

    The server's styles come first in value order; a value of ``labelmap`` that no style names becomes a segment
    ``"Segment_<value>"`` (the name ``usseg_models.io.writers`` gives it); every style without a colour gets
    :func:`fallback_color` of its position among all values, so no segment is left for Slicer to colour at random.

    Args:
        palette: the server's segment styles (:func:`label_palette`).
        labelmap: label values (any shape), or None to complete only the colours.

    Raises:
        LabelFileError: two styles share a value or a name.

    Examples::

        palette_for_label([SegmentStyle("LV", 1), SegmentStyle("MYO", 2, (0, 1, 0))], labelmap_with_values_1_2_5)
        # [LV (1, FALLBACK_COLORS[0]), MYO (2, (0, 1, 0)), Segment_5 (5, FALLBACK_COLORS[2])]
    """
    values = [s.value for s in palette]
    names = [s.name for s in palette]
    if len(set(values)) != len(values) or len(set(names)) != len(names):
        raise LabelFileError(f"label names and values must be distinct: {[(s.name, s.value) for s in palette]}")
    styles = list(palette)
    if labelmap is not None:
        found = (int(v) for v in np.unique(np.asarray(labelmap)) if int(v) != 0)
        extra = [v for v in found if v not in set(values)]
        if extra:
            logger.warning("label values %s have no server name; shown as Segment_<value>", extra)
        styles += [SegmentStyle(f"Segment_{v}", v) for v in extra]
    styles.sort(key=lambda s: s.value)
    return [s if s.color is not None else SegmentStyle(s.name, s.value, fallback_color(i))
            for i, s in enumerate(styles)]


def label_segments(labelmap: np.ndarray, palette: list[SegmentStyle]) -> list[tuple[SegmentStyle, np.ndarray]]:
    """A label map as one named, coloured segment per structure: ``(style, boolean mask)`` in label-value order.

    Every structure of ``palette`` is a segment (an empty mask when the label does not hold it), plus one per
    unnamed value (see :func:`palette_for_label`).

    Examples::

        label_segments(labelmap, label_palette({"label_names": {"LV": 1, "MYO": 2, "LA": 3},
                                                "label_colors": {"LV": [1, 0, 0], ...}}))
        # [(SegmentStyle("LV", 1, (1.0, 0.0, 0.0)), labelmap == 1), (SegmentStyle("MYO", 2, ...), ...), ...]
    """
    arr = np.asarray(labelmap)
    return [(style, arr == style.value) for style in palette_for_label(palette, arr)]


def _color(value: Any) -> tuple[float, float, float] | None:
    try:
        rgb = [float(c) for c in value][:3]
    except (TypeError, ValueError):
        return None
    if len(rgb) != 3 or any(c < 0 for c in rgb):
        return None
    if max(rgb) > 1.0:  # 0..255 colours
        rgb = [c / 255.0 for c in rgb]
    return (rgb[0], rgb[1], rgb[2])


def label_palette(answer: Mapping[str, Any] | None = None, info: Mapping[str, Any] | None = None,
                  model: str | None = None) -> list[SegmentStyle]:
    """Segment names, values and colours as the server gives them, in label-value order.

    The server is the one source of the palette: an inference answer's ``label_names`` and ``label_colors``
    (0..1 floats) when there is one, else the model's ``labels`` in ``GET /info/`` (and its ``label_colors`` when
    the info lists them; otherwise no colours).

    Args:
        answer: result parameters of ``POST /infer/{model}`` (may be None or lack the keys).
        info: the server's ``/info/`` JSON.
        model: the model whose labels to use from ``info``.

    Raises:
        LabelFileError: neither source names any label.

    Examples::

        label_palette({"label_names": {"lesion": 1}, "label_colors": {"lesion": [1, 0.2, 0.2]}})
        # [SegmentStyle(name="lesion", value=1, color=(1.0, 0.2, 0.2))]
    """
    names: dict[str, int] | None = None
    colors: Mapping[str, Any] = {}
    if answer and answer.get("label_names"):
        names = model_labels({"labels": answer["label_names"]})
        colors = answer.get("label_colors") or {}
    if names is None and info is not None:
        names = model_labels(info, model)
        entry = info.get("models", {}).get(model, {}) if model else info
        colors = entry.get("label_colors") or {}
    if not names:
        raise LabelFileError("the server named no labels for this model")
    return [SegmentStyle(name, value, _color(colors.get(name)) if name in colors else None)
            for name, value in sorted(names.items(), key=lambda kv: kv[1])]


def models_of_dimension(info: Mapping[str, Any], dimension: int, preferred: str | None = None) -> list[str]:
    """Names of the server's models that take ``dimension``-D input (3: cines, 2: images), ``preferred`` first.

    Examples::

        models_of_dimension(info, 3, "dsanet")  # ["dsanet"]
    """
    names = sorted(n for n, m in info.get("models", {}).items() if int(m.get("dimension", 3)) == dimension)
    return sorted(names, key=lambda n: n != preferred)


def rename_labels(labelmap: np.ndarray, source: Mapping[str, int], target: Mapping[str, int]) -> np.ndarray:
    """Re-express a labelmap written with ``source`` labels in ``target`` labels.

    Names found in both keep their meaning (value changed if needed); when the two tables share no name but have
    one label each (e.g. an image model's ``tumor`` and a clip model's ``lesion``), that label maps to the other.

    Raises:
        LabelFileError: labels that cannot be matched.
    """
    arr = np.asarray(labelmap)
    if len(source) == 1 and len(target) == 1 and not set(source) & set(target):
        mapping = {next(iter(source.values())): next(iter(target.values()))}
    else:
        missing = [n for n in source if n not in target]
        if missing:
            raise LabelFileError(f"labels {missing} of the image model have no counterpart in {sorted(target)}")
        mapping = {source[n]: target[n] for n in source}
    out = np.zeros_like(arr)
    for old, new in mapping.items():
        out[arr == old] = new
    return out


def compose_labelmap(masks: Mapping[str, np.ndarray], label_values: Mapping[str, int],
                     dtype=np.uint8) -> np.ndarray:
    """One labelmap from per-segment binary masks, each painted with the server's value for its name.

    Args:
        masks: segment name → boolean mask (all the same shape), e.g. from Slicer's segments.
        label_values: name → value (from :func:`model_labels`).
        dtype: output type.

    Every structure's segment is painted with its own value, so a label of several structures keeps all of them.
    An empty segment whose name the server does not know (e.g. an unnamed value's ``Segment_<value>`` the user
    erased) is left out.

    Raises:
        LabelFileError: a non-empty segment whose name the server does not know, masks of different shapes,
            overlapping segments, or no masks.
    """
    if not masks:
        raise LabelFileError("no segments to submit")
    masks = {n: m for n, m in masks.items() if n in label_values or np.any(m)}
    unknown = [n for n in masks if n not in label_values]
    if unknown:
        raise LabelFileError(f"segment name(s) {unknown} are not server labels {sorted(label_values)}; "
                             "rename the segments to the server's label names")
    shapes = {np.shape(m) for m in masks.values()}
    if len(shapes) != 1:
        raise LabelFileError(f"segment masks differ in shape: {sorted(shapes)}")
    out = np.zeros(shapes.pop(), dtype=dtype)
    taken = np.zeros(out.shape, dtype=bool)
    for name, mask in masks.items():
        m = np.asarray(mask).astype(bool)
        both = taken & m
        overlap = int(np.count_nonzero(both))
        if overlap:
            where = ""
            if both.ndim == 3:  # a clip (i, j, t): say which frames, so the user can find them
                where = f" on frame(s) {[int(t) for t in np.flatnonzero(both.any(axis=(0, 1)))]}"
            raise LabelFileError(f"segment {name!r} overlaps another segment in {overlap} voxels{where}; "
                                 "a voxel belongs to one structure: erase it from one of them")
        out[m] = label_values[name]
        taken |= m
    return out


def split_labelmap(labelmap: np.ndarray, label_values: Mapping[str, int]) -> dict[str, np.ndarray]:
    """Inverse of :func:`compose_labelmap`: name → boolean mask for every server label.

    Raises:
        LabelFileError: the labelmap holds values that are no server label.
    """
    arr = np.asarray(labelmap)
    known = set(label_values.values()) | {0}
    extra = sorted(int(v) for v in np.unique(arr) if int(v) not in known)
    if extra:
        raise LabelFileError(f"label values {extra} are not among the server labels {dict(label_values)}")
    return {name: arr == value for name, value in label_values.items()}


def fit_label_to_clip(label: Clip, clip: Clip, atol: float = 1e-3) -> Clip:
    """Put a label returned by the server onto the voxel grid of ``clip``.

    The server returns the label on the grid of the image it was given, so the voxel arrays must match one to one
    (after moving a one-frame label's axis). The label's own matrix is compared with the clip's; a difference is
    logged (e.g. a DICOM read by the server with ultrasound-region calibration while Slicer used another spacing)
    and the clip's matrix is kept, because voxel correspondence is what the server guarantees.

    Args:
        label: the label volume read from the server's file.
        clip: the clip shown in Slicer.
        atol: tolerance (mm) for calling the two matrices equal.

    Returns:
        A :class:`Clip` with the label's voxels, the clip's matrix and the clip's frame axis.

    Raises:
        ClipGeometryError: the voxel shapes cannot be matched.
    """
    voxels = np.asarray(label.voxels)
    if voxels.shape != clip.voxels.shape:
        squeezed = np.squeeze(voxels)
        target = np.squeeze(clip.voxels)
        if squeezed.shape == target.shape:
            voxels = squeezed.reshape(clip.voxels.shape)
        else:
            raise ClipGeometryError(f"label shape {label.voxels.shape} does not match the clip {clip.voxels.shape}")
    elif not np.allclose(label.ijk_to_ras, clip.ijk_to_ras, atol=atol):
        logger.warning("label geometry differs from the clip's; keeping the clip's.\nlabel:\n%s\nclip:\n%s",
                       np.array2string(label.ijk_to_ras, precision=4), np.array2string(clip.ijk_to_ras, precision=4))
    return Clip(voxels, clip.ijk_to_ras.copy(), clip.frame_axis)
