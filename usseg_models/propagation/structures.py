"""Corrections of several structures, and propagating them structure by structure along one clip's flows.

A user may correct any subset of a label set's structures on a frame (e.g. only the LV cavity); the frame then says
nothing about the others. :class:`StructureCorrections` keeps each corrected frame's drawn label map (label values)
and the structures it covers; :meth:`StructureCorrections.masks_of` gives one structure's ``{frame: 0/1 mask}``
over the frames that cover it — the input of the one-structure propagation
(:func:`usseg_models.propagation.propagate.propagate_masks`).

Propagation per structure (:func:`propagate_structures`): every structure is carried by the **same** flows (computed
once per clip) from its own corrected frames, as a soft map. The soft maps become one label map with
:func:`combine`:

- one structure: foreground where ``p ≥ 0.5`` (the one-structure rule, unchanged);
- several: **argmax with a background probability** ``p_bg = max(0, 1 − Σ_s p_s)``; a structure wins ties against
  background, and between structures the lower label value wins ties. With corrections of every structure on the
  same frames the warped maps (and the warped background) still sum to one, so this is the argmax of a partition;
  where structures come from different frames, overlaps go to the more probable one. Thresholding each structure at
  0.5 instead would leave holes where two adjacent structures meet (0.45 LV / 0.45 MYO / 0.1 background).

:func:`pin_drawn` makes every corrected structure come back exactly as drawn on its frames: its soft map there is the
drawn mask, and the other structures' maps are cleared where a corrected structure was drawn (a structure not
corrected on a frame keeps its propagated map there outside the drawn ones: it is not background).

Examples::

    >>> from usseg_models.labels import parse_labels
    >>> drawn = np.zeros((4, 4), np.uint8); drawn[:2] = 1; drawn[2:, :2] = 2
    >>> c = StructureCorrections.build(parse_labels("1:LV,2:MYO"), {0: drawn}, {0: [1]})
    >>> sorted(c.masks_of(1)), sorted(c.masks_of(2)), c.full_frames()
    ([0], [], [])
    >>> combine([np.array([0.45, 0.2]), np.array([0.45, 0.3])], (1, 2)).tolist()
    [1, 0]
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from usseg_models.labels import LabelSet
from usseg_models.propagation.flow import ClipFlows
from usseg_models.propagation.propagate import PropagationResult, dice_at_half, leave_one_out, propagate_masks

__all__ = ["StructureCorrections", "propagate_structures", "combine", "pin_drawn", "choose_flows_structures"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StructureCorrections:
    """Corrected frames of a clip with the structures each covers.

    Attributes:
        labels: the label set.
        drawn: ``{frame: uint8 (X, Y) label map}`` (label values of ``labels``), sorted by frame.
        covered: ``{frame: label values the correction covers}`` (every corrected frame, sorted values).
    """

    labels: LabelSet
    drawn: dict[int, np.ndarray]
    covered: dict[int, tuple[int, ...]]

    @classmethod
    def build(cls, labels: LabelSet, drawn: Mapping[int, np.ndarray],
              structures: Mapping[int, Iterable[int]] | None = None) -> StructureCorrections:
        """From checked label maps; ``structures[t]`` (default: every structure of ``labels``) per frame."""
        structures = structures or {}
        drawn = {int(t): np.asarray(m, np.uint8) for t, m in sorted(drawn.items())}
        covered = {t: tuple(sorted({int(v) for v in structures.get(t, labels.values)})) for t in drawn}
        return cls(labels, drawn, covered)

    @property
    def frames(self) -> list[int]:
        return list(self.drawn)

    def masks_of(self, value: int) -> dict[int, np.ndarray]:
        """``{frame: uint8 0/1 mask}`` of structure ``value`` over the frames whose correction covers it."""
        return {t: (m == value).astype(np.uint8) for t, m in self.drawn.items() if value in self.covered[t]}

    def full_frames(self) -> list[int]:
        """Frames whose correction covers every structure (every pixel of them is known)."""
        return [t for t in self.drawn if len(self.covered[t]) == self.labels.num_structures]

    def describe(self) -> dict[str, list[int]]:
        """``{structure name: frames that correct it}``."""
        return {n: sorted(self.masks_of(v)) for n, v in zip(self.labels.names, self.labels.values)}


def propagate_structures(flows: ClipFlows, corrections: StructureCorrections, xy: tuple[int, int]
                         ) -> dict[int, PropagationResult | None]:
    """Each structure's soft map carried along ``flows`` from the frames that correct it (``None``: corrected
    nowhere)."""
    out: dict[int, PropagationResult | None] = {}
    for value in corrections.labels.values:
        masks = corrections.masks_of(value)
        out[value] = propagate_masks(flows, masks, xy) if masks else None
    return out


def combine(probabilities: Sequence[np.ndarray], values: Sequence[int]) -> np.ndarray:
    """One uint8 label map (label values) from each structure's probability map (same shapes; module docstring)."""
    if len(probabilities) != len(values) or not len(values):
        raise ValueError(f"{len(probabilities)} probability maps for {len(values)} structures")
    if len(values) == 1:
        return ((np.asarray(probabilities[0]) >= 0.5) * np.uint8(values[0])).astype(np.uint8)
    stack = np.stack([np.asarray(p, np.float32) for p in probabilities])
    background = np.maximum(0.0, 1.0 - stack.sum(axis=0))
    best = stack.argmax(axis=0)                                   # first (lowest value) wins ties
    lut = np.asarray(values, np.uint8)
    return np.where(np.take_along_axis(stack, best[None], 0)[0] >= background, lut[best], 0).astype(np.uint8)


def pin_drawn(probabilities: Mapping[int, np.ndarray], corrections: StructureCorrections) -> None:
    """In place: on every corrected frame, each covered structure's map becomes its drawn 0/1 mask and the other
    structures' maps are cleared where a covered structure was drawn (``probabilities[value]``: ``(X, Y, T)``)."""
    for t, drawn in corrections.drawn.items():
        covered = corrections.covered[t]
        taken = np.isin(drawn, covered)
        for value, p in probabilities.items():
            if value in covered:
                p[..., t] = drawn == value
            elif taken.any():
                p[..., t] = np.where(taken, 0.0, p[..., t])


def choose_flows_structures(candidates: Mapping[str, ClipFlows], per_structure: Sequence[Mapping[int, np.ndarray]],
                            xy: tuple[int, int]) -> tuple[str, dict[str, float]]:
    """:func:`usseg_models.propagation.propagate.choose_flows` over several structures: each variant's score is the
    mean over structures (those corrected on two frames or more) of their mean leave-one-out Dice.

    With one structure this is ``choose_flows`` exactly; with no structure corrected twice, the first candidate.
    """
    names = list(candidates)
    scored = [c for c in per_structure if len(c) >= 2]
    if not scored or len(names) == 1:
        return names[0], {}
    scores = {name: float(np.mean([np.mean([dice_at_half(p, fixes[c]) for c, p, _ in leave_one_out(f, fixes, xy)])
                                   for fixes in scored]))
              for name, f in candidates.items()}
    best = max(names, key=lambda n: (scores[n], -names.index(n)))
    return best, scores
