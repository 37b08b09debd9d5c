"""Learning-free anchors (copy, Fill between slices, optical flow): exact corrections and who wins where."""

from __future__ import annotations

import numpy as np
import pytest

from usseg_models.metrics import dice
from usseg_models.propagation.anchors import copy_nearest, fill_between_slices, flow_anchor


def _disc(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    x, y = np.mgrid[0 : shape[0], 0 : shape[1]]
    return ((x - centre[0]) ** 2 + (y - centre[1]) ** 2 <= radius**2).astype(np.uint8)


def _uncorrected_dice(pred: np.ndarray, truth: np.ndarray, corrected) -> float:
    others = [t for t in range(truth.shape[2]) if t not in corrected]
    return dice(pred[..., others], truth[..., others], frame_axis=-1)


@pytest.fixture(scope="module")
def moving_cine():
    from usseg_models.data.synthetic import simulate_cine

    c = simulate_cine(12, 64, "linear", targets=("lesion",), seed=7)
    return c.image.astype(np.uint8), c.label.astype(np.uint8)


@pytest.mark.parametrize("name", ["copy", "fill", "flow"])
def test_each_anchor_returns_the_corrected_frames_unchanged(moving_cine, name):
    cine, truth = moving_cine
    n = truth.shape[2]
    corrected = {1: truth[..., 1], 6: truth[..., 6], 10: truth[..., 10]}
    run = {"copy": lambda: copy_nearest(corrected, n), "fill": lambda: fill_between_slices(corrected, n),
           "flow": lambda: flow_anchor(cine, corrected)}[name]
    out = run()
    assert out.shape == truth.shape and out.dtype == np.uint8 and set(np.unique(out)) <= {0, 1}
    for t, m in corrected.items():
        assert np.array_equal(out[..., t], m), f"{name} changed corrected frame {t}"
    assert _uncorrected_dice(out, truth, corrected) > 0.6  # a real moving lesion, three corrections


def test_copy_is_exact_on_a_static_clip_and_ties_go_to_the_earlier_frame():
    a, b = _disc((32, 32), (12, 12), 5), _disc((32, 32), (20, 20), 6)
    static = np.repeat(a[..., None], 9, axis=-1)
    assert np.array_equal(copy_nearest({4: a}, 9), static)
    assert np.array_equal(copy_nearest({2: a, 7: a}, 9), static)
    out = copy_nearest({2: a, 6: b}, 9)        # frame 4 is two frames from both: it takes frame 2's mask
    assert [np.array_equal(out[..., t], a) for t in range(9)] == [True] * 5 + [False] * 4


def test_fill_between_slices_follows_a_linearly_growing_disc_better_than_copy():
    n = 9
    truth = np.stack([_disc((64, 64), (32, 32), 6 + 2 * t) for t in range(n)], axis=-1)
    corrected = {0: truth[..., 0], n - 1: truth[..., n - 1]}
    filled, copied = fill_between_slices(corrected, n), copy_nearest(corrected, n)
    d_fill, d_copy = _uncorrected_dice(filled, truth, corrected), _uncorrected_dice(copied, truth, corrected)
    # repeated dilations with a cross make the median contours a little too large (measured 0.867 vs copy 0.624)
    assert d_fill > 0.83, d_fill
    assert d_fill > d_copy + 0.15, (d_fill, d_copy)
    areas = filled.reshape(-1, n).sum(axis=0)
    assert (np.diff(areas) > 0).all(), areas  # grows monotonically between the two corrections


def test_fill_between_slices_copies_the_end_masks_outwards_and_one_frame_is_a_copy():
    a, b = _disc((32, 32), (16, 16), 4), _disc((32, 32), (16, 16), 8)
    out = fill_between_slices({3: a, 6: b}, 10)
    assert all(np.array_equal(out[..., t], a) for t in range(4))
    assert all(np.array_equal(out[..., t], b) for t in range(6, 10))
    assert np.array_equal(fill_between_slices({5: a}, 10), copy_nearest({5: a}, 10))


def _translating_clip(n: int = 9, step: int = 2, size: int = 96):
    """Speckle-like texture shifted ``step`` px per frame along X, with a disc of tissue moving along with it."""
    import cv2

    rng = np.random.default_rng(3)
    texture = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), 1.5)
    texture = (255 * (texture - texture.min()) / np.ptp(texture)).astype(np.uint8)
    cine = np.stack([np.roll(texture, step * t, axis=0) for t in range(n)], axis=-1)
    truth = np.stack([_disc((size, size), (30 + step * t, 48), 10) for t in range(n)], axis=-1)
    return cine, truth


def test_flow_follows_a_translating_disc_better_than_copy():
    cine, truth = _translating_clip()
    n = truth.shape[2]
    corrected = {0: truth[..., 0], n - 1: truth[..., n - 1]}
    flowed, copied = flow_anchor(cine, corrected), copy_nearest(corrected, n)
    d_flow, d_copy = _uncorrected_dice(flowed, truth, corrected), _uncorrected_dice(copied, truth, corrected)
    assert d_flow > 0.9, d_flow
    assert d_flow > d_copy + 0.1, (d_flow, d_copy)


def test_flow_is_one_sided_outside_the_corrections_and_reuses_given_flows():
    from usseg_models.propagation.flow import ClipFlows

    cine, truth = _translating_clip()
    flows = ClipFlows.compute(cine, "medium")
    out = flow_anchor(cine, {2: truth[..., 2]}, flows=flows)   # one correction: carried both ways
    assert _uncorrected_dice(out, truth, [2]) > 0.85
    with pytest.raises(ValueError, match="flows cover"):
        flow_anchor(cine[..., :5], {2: truth[..., 2]}, flows=flows)


def test_anchors_refuse_corrections_outside_the_clip():
    with pytest.raises(ValueError, match="outside"):
        copy_nearest({12: np.zeros((8, 8), np.uint8)}, 10)
    with pytest.raises(ValueError, match="at least one"):
        fill_between_slices({}, 10)
