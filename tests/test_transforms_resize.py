"""Resize to the network size and back: exact original shape, binary masks, recorded sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from usseg_models.transforms.resize import ResizeToNetwork, ResizeToNetworkd, resize_xy, restore_size


def _ellipse(x=150, y=97, cx=70, cy=40, rx=45, ry=25):
    xx, yy = np.mgrid[:x, :y]
    return (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1).astype(np.uint8)


@pytest.mark.parametrize("size", [64, 128, 37])
def test_round_trip_restores_shape_and_area(size):
    mask = _ellipse()
    small = ResizeToNetwork(size, mode="nearest")(mask)
    assert small.shape == (size, size) and small.dtype == np.uint8
    back = restore_size(small, mask.shape)
    assert back.shape == mask.shape and back.dtype == np.uint8
    assert set(np.unique(back)) <= {0, 1}
    area, area_back = mask.sum(), back.sum()
    assert abs(int(area_back) - int(area)) / area < 0.05
    inter = np.logical_and(mask, back).sum()
    assert inter / np.logical_or(mask, back).sum() > 0.9


def test_round_trip_of_leading_axes_and_probabilities():
    masks = torch.from_numpy(np.stack([_ellipse(), _ellipse(cx=100)]))[:, None]  # (T, 1, X, Y)
    small = resize_xy(masks.float(), 64, "bilinear")  # probabilities in [0, 1]
    assert small.shape == (2, 1, 64, 64) and small.dtype == torch.float32
    back = restore_size(small, (150, 97))
    assert back.shape == (2, 1, 150, 97) and back.dtype == torch.uint8
    assert (back[0] != back[1]).any()


def test_metatensor_and_dict_record_original_size():
    img = MetaTensor(torch.rand(3, 1, 120, 90), meta={"filename_or_obj": "x"})
    out = ResizeToNetwork(64)(img)
    assert isinstance(out, MetaTensor) and out.shape == (3, 1, 64, 64)
    assert out.meta["original_xy"] == (120, 90) and out.meta["filename_or_obj"] == "x"
    d = ResizeToNetworkd(["image", "label"], 32, mode=("bilinear", "nearest"))(
        {"image": torch.rand(1, 50, 40), "label": torch.ones(1, 50, 40, dtype=torch.uint8)}
    )
    assert d["image"].shape == (1, 32, 32) and d["label"].dtype == torch.uint8
    assert d["image_original_xy"] == (50, 40) and d["label_original_xy"] == (50, 40)
    assert restore_size(d["label"], d["label_original_xy"]).shape == (1, 50, 40)


def test_bilinear_preserves_constant_and_rejects_bad_input():
    out = resize_xy(np.full((30, 20), 0.3, np.float32), (64, 48))
    assert out.shape == (64, 48)
    np.testing.assert_allclose(out, 0.3, rtol=1e-5)
    with pytest.raises(ValueError, match="mode"):
        ResizeToNetwork(64, mode="bicubic")
    with pytest.raises(ValueError, match="spatial"):
        resize_xy(np.zeros(5), 8)
    with pytest.raises(ValueError, match="original"):
        restore_size(np.zeros((8, 8)), (10, 10, 3))
