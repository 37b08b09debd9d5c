"""Label sets: which structures a model segments, their label values, names and colours.

One structure (the papers' task) is the default and keeps every path binary: one logit channel, sigmoid,
foreground = logit > 0. Several structures (e.g. CAMUS: 1 LV cavity, 2 myocardium, 3 left atrium) are mutually
exclusive classes: ``1 + n`` logit channels (background first), softmax, class = argmax. A network's
``out_channels`` is :attr:`LabelSet.out_channels`; targets handed to the losses are **class indices**
(0 = background, ``i`` = the ``i``-th structure in label-value order), label maps written for users hold the
**label values** (:meth:`LabelSet.to_values` / :meth:`LabelSet.to_indices` convert).

The command line and the app take a label set as ``"1:LV,2:MYO,3:LA"`` (:func:`parse_labels`); checkpoints store
:meth:`LabelSet.to_json` in ``extra["labels"]`` so a predictor rebuilds the same mapping.

Examples::

    >>> ls = parse_labels("1:LV,2:MYO,3:LA")
    >>> ls.values, ls.names, ls.out_channels
    ((1, 2, 3), ('LV', 'MYO', 'LA'), 4)
    >>> LabelSet.binary().out_channels
    1
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["LabelSet", "LabelSetError", "parse_labels", "labels_from_checkpoint"]

RGB = tuple[float, float, float]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}$")


class LabelSetError(ValueError):
    """A label set description that cannot be used (bad value, duplicate, empty, unknown value in a mask)."""


@dataclass(frozen=True)
class LabelSet:
    """Structures in label-value order: ``values[i]`` is class ``i + 1``, named ``names[i]``, coloured
    ``colors[i]`` (RGB in 0..1; ``None`` = the palette's fallback colour of its position).

    Args:
        values: label values 1..255, strictly increasing.
        names: one name per value (letters, digits, space, ``_.-``; unique).
        colors: optional colours, one per value.
    """

    values: tuple[int, ...]
    names: tuple[str, ...]
    colors: tuple[RGB | None, ...] = field(default=())

    def __post_init__(self) -> None:
        values = tuple(int(v) for v in self.values)
        names = tuple(str(n) for n in self.names)
        if not values:
            raise LabelSetError("a label set needs at least one structure")
        if len(names) != len(values):
            raise LabelSetError(f"{len(values)} label values but {len(names)} names")
        if any(not 1 <= v <= 255 for v in values):
            raise LabelSetError(f"label values must be in 1..255 (0 is background), got {list(values)}")
        if len(set(values)) != len(values):
            raise LabelSetError(f"label values must be distinct, got {list(values)}")
        if len(set(names)) != len(names):
            raise LabelSetError(f"structure names must be distinct, got {list(names)}")
        for n in names:
            if not _NAME.match(n):
                raise LabelSetError(f"structure name {n!r}: use letters, digits, space, '_', '.', '-' (≤ 64)")
        order = sorted(range(len(values)), key=lambda i: values[i])
        colors = tuple(self.colors) or (None,) * len(values)
        if len(colors) != len(values):
            raise LabelSetError(f"{len(values)} label values but {len(colors)} colours")
        colors = tuple(None if c is None else tuple(float(x) for x in c) for c in colors)
        object.__setattr__(self, "values", tuple(values[i] for i in order))
        object.__setattr__(self, "names", tuple(names[i] for i in order))
        object.__setattr__(self, "colors", tuple(colors[i] for i in order))

    # ----------------------------------------------------------------- constructors
    @classmethod
    def binary(cls, name: str = "foreground", value: int = 1, color: RGB | None = None) -> LabelSet:
        """The one-structure set (the papers' task)."""
        return cls((value,), (name,), (color,))

    @classmethod
    def from_names(cls, names: Mapping[str, int], colors: Mapping[str, Sequence[float]] | None = None) -> LabelSet:
        """From MONAI Label's ``{name: value}`` (and ``{name: rgb}``)."""
        colors = colors or {}
        items = list(names.items())
        return cls(tuple(v for _, v in items), tuple(n for n, _ in items),
                   tuple(tuple(colors[n]) if n in colors else None for n, _ in items))

    @classmethod
    def from_values(cls, values: Iterable[int]) -> LabelSet:
        """Default names ``label_<v>`` for the non-zero values found in masks."""
        vals = sorted({int(v) for v in values} - {0})
        return cls(tuple(vals), tuple(f"label_{v}" for v in vals))

    @classmethod
    def from_json(cls, data: Any) -> LabelSet:
        """Inverse of :meth:`to_json` (raises :class:`LabelSetError` on a malformed description)."""
        try:
            return cls(tuple(int(d["value"]) for d in data), tuple(str(d["name"]) for d in data),
                       tuple(None if d.get("color") is None else tuple(d["color"]) for d in data))
        except (TypeError, KeyError, AttributeError) as exc:
            raise LabelSetError(f"malformed label set description: {data!r}") from exc

    # ----------------------------------------------------------------- properties
    @property
    def num_structures(self) -> int:
        return len(self.values)

    @property
    def is_binary(self) -> bool:
        return len(self.values) == 1

    @property
    def out_channels(self) -> int:
        """Logit channels of a network for this set: 1 (sigmoid) for one structure, else ``1 + n`` (softmax)."""
        return 1 if self.is_binary else 1 + len(self.values)

    @property
    def allowed_values(self) -> frozenset[int]:
        """Values a label map may hold (background 0 included)."""
        return frozenset((0, *self.values))

    def label_names(self) -> dict[str, int]:
        """MONAI Label's ``{name: value}``."""
        return dict(zip(self.names, self.values))

    def label_colors(self) -> dict[str, RGB]:
        """``{name: rgb}`` with the palette's fallback colour where none was given."""
        from usseg_models.palette import fallback_color

        return {n: (c if c is not None else fallback_color(i)) for i, (n, c) in enumerate(zip(self.names, self.colors))}

    def to_json(self) -> list[dict[str, Any]]:
        return [{"value": v, "name": n, "color": None if c is None else list(c)}
                for v, n, c in zip(self.values, self.names, self.colors)]

    def describe(self) -> str:
        """``"1:LV,2:MYO,3:LA"`` (what :func:`parse_labels` reads)."""
        return ",".join(f"{v}:{n}" for v, n in zip(self.values, self.names))

    # ----------------------------------------------------------------- conversions
    def _lut(self, unknown: int | None) -> np.ndarray:
        lut = np.full(256, -1 if unknown is None else unknown, dtype=np.int16)
        lut[0] = 0
        for i, v in enumerate(self.values, start=1):
            lut[v] = i
        return lut

    def to_indices(self, label_map: Any, unknown: str = "error") -> np.ndarray:
        """Label values → class indices (uint8, 0 = background).

        Args:
            label_map: integer array of label values (0..255).
            unknown: ``"error"`` raises :class:`LabelSetError` naming values outside the set; ``"background"``
                maps them to 0 (a structure this model does not segment).
        """
        arr = np.asarray(label_map)
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                raise LabelSetError("a label map must hold whole label values")
        arr = arr.astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise LabelSetError(f"label values must be in 0..255, found {int(arr.min())}..{int(arr.max())}")
        if unknown not in ("error", "background"):
            raise ValueError(f"unknown must be 'error' or 'background', got {unknown!r}")
        out = self._lut(None if unknown == "error" else 0)[arr]
        if unknown == "error" and out.size and out.min() < 0:
            bad = sorted(int(v) for v in np.unique(arr[out < 0]))
            raise LabelSetError(f"label values {bad} are not in the label set {self.describe()}")
        return out.astype(np.uint8)

    def to_values(self, indices: Any) -> np.ndarray:
        """Class indices (0..n) → label values (uint8)."""
        idx = np.asarray(indices).astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() > self.num_structures):
            raise LabelSetError(f"class indices must be in 0..{self.num_structures}, found {int(idx.max())}")
        lut = np.array((0, *self.values), dtype=np.uint8)
        return lut[idx]


def parse_labels(text: str) -> LabelSet:
    """``"1:LV,2:MYO,3:LA"`` → :class:`LabelSet` (raises :class:`LabelSetError` with the problem named)."""
    if not isinstance(text, str) or not text.strip():
        raise LabelSetError("--labels needs 'value:name' pairs, e.g. '1:LV,2:MYO,3:LA'")
    values, names = [], []
    for part in text.split(","):
        value, sep, name = part.strip().partition(":")
        if not sep or not value.strip().isdigit() or not name.strip():
            raise LabelSetError(f"labels entry {part.strip()!r}: expected 'value:name', e.g. '1:LV'")
        values.append(int(value))
        names.append(name.strip())
    return LabelSet(tuple(values), tuple(names))


def labels_from_checkpoint(payload: Mapping[str, Any], default: LabelSet | None = None) -> LabelSet | None:
    """The label set a checkpoint stores in ``extra["labels"]`` (``default`` for checkpoints from before label
    sets, which are one-structure models)."""
    data = (payload.get("extra") or {}).get("labels")
    return default if data is None else LabelSet.from_json(data)
