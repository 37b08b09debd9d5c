"""Metrics against hand-computed cases (numpy and torch inputs, empty-mask conventions, temporal stability)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from usseg_models import metrics


def _masks():
    # frame 0: P = 2 pixels, G = 1 pixel inside P  -> tp 1, fp 1, fn 0, tn 14
    # frame 1: P = 1 pixel, G = 2 pixels, overlap 1 -> tp 1, fp 0, fn 1, tn 14
    p = np.zeros((2, 4, 4), np.uint8)
    g = np.zeros((2, 4, 4), np.uint8)
    p[0, 0, 0:2] = 1
    g[0, 0, 0] = 1
    p[1, 3, 3] = 1
    g[1, 3, 2:4] = 1
    return p, g


def test_hand_computed_per_frame_then_averaged():
    p, g = _masks()
    m = metrics.segmentation_metrics(p, g)
    assert m["dice"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert m["iou"] == pytest.approx(0.5)
    assert m["jaccard"] == m["iou"]
    assert m["precision"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["recall"] == pytest.approx((1.0 + 0.5) / 2)
    assert m["accuracy"] == pytest.approx(15 / 16)
    assert m["mae"] == pytest.approx(1 / 16)


def test_per_frame_average_differs_from_pooled():
    # frame 0 tiny perfect, frame 1 large and half wrong: per-frame mean != pooled Dice
    p = np.zeros((2, 8, 8), bool)
    g = np.zeros((2, 8, 8), bool)
    p[0, 0, 0] = g[0, 0, 0] = True
    g[1, :4] = True
    p[1, :2] = True
    per_frame = metrics.dice(p, g)
    assert per_frame == pytest.approx((1.0 + 2 * 16 / (16 + 32)) / 2)
    pooled = 2 * (1 + 16) / (1 + 16 + 1 + 32)
    assert per_frame != pytest.approx(pooled)


def test_empty_conventions():
    z = np.zeros((1, 4, 4), bool)
    one = z.copy()
    one[0, 1, 1] = True
    both = metrics.segmentation_metrics(z, z)
    assert both["dice"] == both["iou"] == both["precision"] == both["recall"] == 1.0
    missed = metrics.segmentation_metrics(z, one)  # nothing predicted, truth not empty
    assert missed["dice"] == 0.0 and missed["precision"] == 0.0 and missed["recall"] == 0.0
    spurious = metrics.segmentation_metrics(one, z)  # predicted on empty truth
    assert spurious["dice"] == 0.0 and spurious["recall"] == 0.0 and spurious["precision"] == 0.0


def test_torch_equals_numpy_and_layouts():
    p, g = _masks()
    ref = metrics.segmentation_metrics(p, g)
    tor = metrics.segmentation_metrics(torch.from_numpy(p)[:, None].float(), torch.from_numpy(g)[:, None])
    assert tor == pytest.approx(ref)
    vol = metrics.segmentation_metrics(np.moveaxis(p, 0, -1), np.moveaxis(g, 0, -1), frame_axis=-1)
    assert vol == pytest.approx(ref)
    logits = torch.where(torch.from_numpy(p) > 0, 3.0, -3.0)
    assert metrics.dice(logits, g, threshold=0.0) == pytest.approx(ref["dice"])


def test_soft_mae():
    g = np.zeros((1, 2, 2))
    g[0, 0, 0] = 1
    prob = np.array([[[0.75, 0.25], [0.0, 0.5]]])
    assert metrics.mae(prob, g) == pytest.approx((0.25 + 0.25 + 0 + 0.5) / 4)
    assert metrics.segmentation_metrics(prob > 0.5, g, prob=prob)["mae"] == pytest.approx(0.25)


def test_temporal_stability():
    g = np.zeros((3, 4, 4), bool)
    g[:, :2] = True  # static truth: consecutive Dice 1
    p = g.copy()
    p[1] = False
    p[1, :1] = True  # frame 1 shrinks to 4 px: Dice(P0,P1) = Dice(P1,P2) = 2*4/(8+4)
    ts = metrics.temporal_stability(p, g)
    assert ts["true_consecutive_dice"] == 1.0
    assert ts["pred_consecutive_dice"] == pytest.approx(2 / 3)
    assert ts["difference"] == pytest.approx(-1 / 3)
    assert ts["mean_abs_difference"] == pytest.approx(1 / 3)


def test_bad_input():
    with pytest.raises(ValueError, match="same"):
        metrics.dice(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match="at least 2 frames"):
        metrics.temporal_stability(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)))
    with pytest.raises(ValueError):
        metrics.dice(np.zeros((2, 2, 2, 2, 2)), np.zeros((2, 2, 2, 2, 2)))
