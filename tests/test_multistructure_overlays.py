"""Overlays of several structures: each structure outlined in its own colour (evaluation panels, predict frames);
one-structure masks keep green truth / red prediction."""

from __future__ import annotations

import numpy as np

from usseg_models.evaluation.overlays import GREEN, RED, overlay_panel
from usseg_models.inference.files import overlay_frames
from usseg_models.palette import fallback_color


def _label() -> np.ndarray:
    lab = np.zeros((40, 30), np.uint8)
    lab[5:15, 5:15] = 1
    lab[20:30, 5:25] = 2
    lab[30:38, 10:20] = 3
    return lab


def _colours(rgb: np.ndarray) -> set[tuple[int, int, int]]:
    return {tuple(int(c) for c in px) for px in rgb.reshape(-1, 3)}


def test_evaluation_panel_draws_each_structure_in_its_own_colour():
    grey = np.full((40, 30), 100, np.uint8)
    panel = overlay_panel(grey, _label(), _label())
    truth, pred = panel[:, 40:80], panel[:, 80:120]                 # panels are X = 40 columns wide
    for i in range(3):
        edge = tuple(int(c) for c in (np.array(fallback_color(i), np.float32) * 255).astype(np.uint8))
        assert edge in _colours(truth) and edge in _colours(pred), (i, edge)
    assert tuple(int(c) for c in GREEN) not in _colours(truth)


def test_one_structure_panel_keeps_green_truth_and_red_prediction():
    grey = np.full((40, 30), 100, np.uint8)
    panel = overlay_panel(grey, _label() > 0, _label() > 0)
    assert tuple(int(c) for c in GREEN) in _colours(panel[:, 40:80])
    assert tuple(int(c) for c in RED) in _colours(panel[:, 80:120])


def test_predict_overlay_outlines_each_structure():
    frames = overlay_frames(np.full((40, 30, 2), 100, np.uint8), np.stack([_label()] * 2, -1), {})
    seen = _colours(frames[0])
    for i in range(3):
        assert tuple(int(c) for c in (np.array(fallback_color(i)) * 255).astype(np.uint8)) in seen
