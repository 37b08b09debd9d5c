"""The one label palette: segment names, label values and colours (RGB in 0..1) of each model's output.

The MONAI Label app's task configs take ``LABELS``/``LABEL_COLORS`` from here and the server hands them to
clients as ``label_names``/``label_colors`` (``GET /info/`` and every infer answer), which is where the Slicer
module reads them; the label writers (``.seg.nrrd``) and ``usseg predict`` use the same entries.
:data:`FALLBACK_COLORS` colours label values no palette names (the torch-free Slicer Lib keeps an equal copy,
checked by a test).

Examples::

    >>> from usseg_models import palette
    >>> palette.label_names("dsanet"), palette.label_colors("dsanet")
    ({'lesion': 1}, {'lesion': (1.0, 0.2, 0.2)})
    >>> palette.segments("intrasense")
    [{'label_value': 1, 'name': 'tumor', 'color': (0.2, 0.8, 0.2)}]

Several structures: :func:`label_set` is a model's default :class:`~usseg_models.labels.LabelSet` (its palette
entries), :func:`colored` gives any label set its colours — a colour the set carries, else the colour of a
structure the palette knows by name (:data:`STRUCTURE_COLORS`: the models' own classes and the echocardiography
structures LV, MYO, LA), else :func:`fallback_color` of its position::

    >>> from usseg_models.labels import parse_labels
    >>> palette.colored(parse_labels("1:LV,2:MYO,3:LA,4:other")).label_colors()["MYO"]
    (0.3, 0.55, 1.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from usseg_models.labels import LabelSet

__all__ = ["PALETTES", "FALLBACK_COLORS", "STRUCTURE_COLORS", "label_names", "label_colors", "segments",
           "segments_from", "fallback_color", "label_set", "colored"]

RGB = tuple[float, float, float]

# model -> segment name -> (label value, colour). ``unet`` (the image baseline) shares IntraSense-Net's task.
PALETTES: dict[str, dict[str, tuple[int, RGB]]] = {
    "dsanet": {"lesion": (1, (1.0, 0.2, 0.2))},
    "intrasense": {"tumor": (1, (0.2, 0.8, 0.2))},
}
PALETTES["unet"] = PALETTES["intrasense"]

# Colours of structures known by name (case-insensitive), whatever their label value: the models' own classes
# and the echocardiography structures of CAMUS (LV cavity, myocardium, left atrium) under their usual short names.
STRUCTURE_COLORS: dict[str, RGB] = {
    **{name.lower(): color for entries in PALETTES.values() for name, (_, color) in entries.items()},
    "lv": (0.9, 0.25, 0.25),
    "myo": (0.3, 0.55, 1.0),
    "la": (0.25, 0.8, 0.35),
}

# Distinct colours for label values no palette names, in label-value order.
FALLBACK_COLORS: tuple[RGB, ...] = (
    (0.95, 0.35, 0.2),
    (0.2, 0.75, 0.3),
    (0.25, 0.5, 0.95),
    (0.95, 0.85, 0.2),
    (0.75, 0.3, 0.85),
    (0.2, 0.85, 0.85),
)


def _palette(model: str) -> dict[str, tuple[int, RGB]]:
    if model not in PALETTES:
        raise ValueError(f"no label palette for model {model!r}; known: {sorted(PALETTES)}")
    return PALETTES[model]


def label_names(model: str) -> dict[str, int]:
    """``{segment name: label value}`` of ``model`` (MONAI Label's ``labels``, the answers' ``label_names``)."""
    return {name: value for name, (value, _) in _palette(model).items()}


def label_colors(model: str) -> dict[str, RGB]:
    """``{segment name: (r, g, b)}`` in 0..1 of ``model`` (the answers' ``label_colors``)."""
    return {name: color for name, (_, color) in _palette(model).items()}


def fallback_color(index: int) -> RGB:
    """The ``index``-th colour of :data:`FALLBACK_COLORS` (cycling)."""
    return FALLBACK_COLORS[index % len(FALLBACK_COLORS)]


def segments_from(
    names: Mapping[str, int], colors: Mapping[str, Sequence[float]] | None = None
) -> list[dict[str, Any]]:
    """Segment descriptions ``{"label_value", "name", "color"}`` for the label writers, in label-value order.

    A name without a colour gets :func:`fallback_color` of its position.
    """
    colors = colors or {}
    ordered = sorted(names.items(), key=lambda kv: kv[1])
    return [
        {"label_value": int(value), "name": name, "color": tuple(float(c) for c in colors.get(name, fallback_color(i)))}
        for i, (name, value) in enumerate(ordered)
    ]


def segments(model: str) -> list[dict[str, Any]]:
    """Segment descriptions of ``model``'s palette for the label writers."""
    return segments_from(label_names(model), label_colors(model))


def label_set(model: str) -> LabelSet:
    """``model``'s default label set: its palette entries, with their colours (one structure for every model)."""
    from usseg_models.labels import LabelSet

    return LabelSet.from_names(label_names(model), label_colors(model))


def colored(labels: LabelSet) -> LabelSet:
    """``labels`` with a colour for every structure: its own, else :data:`STRUCTURE_COLORS` by name
    (case-insensitive), else :func:`fallback_color` of its position in label-value order."""
    from usseg_models.labels import LabelSet

    colors = tuple(
        color if color is not None else STRUCTURE_COLORS.get(name.lower(), fallback_color(i))
        for i, (name, color) in enumerate(zip(labels.names, labels.colors))
    )
    return LabelSet(labels.values, labels.names, colors)
