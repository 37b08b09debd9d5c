"""Clip windowing: window_indices rules (start, middle, end, short clips) and the array/dict transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from usseg_models.transforms.clip import ClipWindow, ClipWindowd, RandClipTargetd, window_indices


@pytest.mark.parametrize(
    "n, t, window, expected",
    [
        (10, 5, 3, [5, 4, 3]),  # middle: t, t-1, t-2
        (10, 9, 3, [9, 8, 7]),  # end of the cine
        (10, 2, 3, [2, 1, 0]),  # first index with a full past
        (10, 0, 3, [0, 1, 2]),  # start: following frames replace missing past ones
        (10, 1, 3, [1, 0, 3]),  # position 2 missing -> t + 2 (the ASTR/DSANet loader's rule)
        (10, 0, 1, [0]),
        (10, 4, 5, [4, 3, 2, 1, 0]),
        (10, 1, 5, [1, 0, 3, 4, 5]),
        (1, 0, 3, [0, 0, 0]),  # short clip: repeat the last available frame
        (2, 0, 3, [0, 1, 1]),
        (2, 1, 3, [1, 0, 1]),
    ],
)
def test_window_indices(n, t, window, expected):
    assert window_indices(n, t, window) == expected


def test_window_indices_properties():
    for n in range(1, 8):
        for t in range(n):
            idx = window_indices(n, t, 3)
            assert idx[0] == t and len(idx) == 3
            assert all(0 <= i < n for i in idx)
            if t >= 2:
                assert idx == [t, t - 1, t - 2]


@pytest.mark.parametrize("args", [(0, 0, 3), (5, 5, 3), (5, -1, 3), (5, 0, 0)])
def test_window_indices_rejects_bad_arguments(args):
    with pytest.raises(ValueError):
        window_indices(*args)


def _cine(n_frames=6, c=1, x=5, y=4):
    """(C, X, Y, T) whose frame k holds the value k everywhere."""
    return torch.arange(n_frames, dtype=torch.float32).reshape(1, 1, 1, n_frames).expand(c, x, y, n_frames).clone()


def test_clip_window_channel_first_and_frame_first():
    cine = _cine(c=3)
    out = ClipWindow()(cine, t=1)
    assert out.shape == (3, 3, 5, 4)
    assert [float(out[i].mean()) for i in range(3)] == [1.0, 0.0, 3.0]
    frame_first = torch.movedim(cine, -1, 0)  # (T, C, X, Y)
    out2 = ClipWindow(window=2, time_dim=0)(frame_first, t=4)
    assert out2.shape == (2, 3, 5, 4)
    assert [float(out2[i].mean()) for i in range(2)] == [4.0, 3.0]


def test_clip_window_numpy():
    cine = _cine().numpy()
    out = ClipWindow()(cine, t=5)
    assert isinstance(out, np.ndarray) and out.shape == (3, 1, 5, 4)
    assert [float(out[i].mean()) for i in range(3)] == [5.0, 4.0, 3.0]


def test_clip_window_dict_same_window_for_all_keys():
    d = {"image": _cine(c=3), "label": _cine(), "frame_index": 0}
    out = ClipWindowd(["image", "label"])(d)
    assert out["image"].shape == (3, 3, 5, 4) and out["label"].shape == (3, 1, 5, 4)
    for k in ("image", "label"):
        assert [float(out[k][i].mean()) for i in range(3)] == [0.0, 1.0, 2.0]
    with pytest.raises(KeyError, match="frame_index"):
        ClipWindowd(["image"])({"image": _cine()})
    passthrough = ClipWindowd(["image"], require_index=False)({"image": _cine()})
    assert passthrough["image"].shape == (1, 5, 4, 6)


def test_rand_clip_target_deterministic_and_in_range():
    picks = []
    for _ in range(2):
        r = RandClipTargetd("image")
        r.set_random_state(7)
        picks.append([r({"image": _cine(n_frames=9)})["frame_index"] for _ in range(20)])
    assert picks[0] == picks[1]
    assert all(0 <= t < 9 for t in picks[0]) and len(set(picks[0])) > 1
