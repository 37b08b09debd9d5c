"""Intensity transforms: [0, 1] scaling rules, BT.601 grey, channel replication, per-channel normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from usseg_models.transforms import intensity


def test_scale_by_dtype_range():
    u8 = np.array([0, 51, 255], dtype=np.uint8)
    np.testing.assert_allclose(intensity.scale_to_unit(u8), [0, 0.2, 1], atol=1e-7)
    u16 = torch.tensor([0, 13107, 65535], dtype=torch.uint16)
    out = intensity.scale_to_unit(u16)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), [0, 0.2, 1], atol=1e-6)
    assert intensity.scale_to_unit(np.array([True, False])).tolist() == [1.0, 0.0]


def test_scale_rules_for_float_and_signed():
    unit = np.array([0.0, 0.5, 1.0], np.float32)
    np.testing.assert_array_equal(intensity.scale_to_unit(unit), unit)
    byte_range = np.array([0, 127.5, 255], np.float64)
    np.testing.assert_allclose(intensity.scale_to_unit(byte_range), [0, 0.5, 1])
    wide = np.array([-100, 0, 300], np.int16)
    np.testing.assert_allclose(intensity.scale_to_unit(wide), [0, 0.25, 1])


def test_scale_minmax_and_errors():
    x = np.array([10, 20, 30], np.uint8)
    np.testing.assert_allclose(intensity.ScaleToUnit("minmax")(x), [0, 0.5, 1])
    np.testing.assert_array_equal(intensity.scale_to_unit(np.full(4, 7, np.uint16), "minmax"), np.zeros(4))
    with pytest.raises(ValueError, match="mode"):
        intensity.ScaleToUnit("percentile")
    with pytest.raises(ValueError, match="empty"):
        intensity.scale_to_unit(np.zeros((0, 3), np.uint8))
    d = intensity.ScaleToUnitd("image")({"image": np.array([0, 255], np.uint8), "other": 1})
    np.testing.assert_allclose(d["image"], [0, 1])


def test_bt601_grey():
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = [255, 0, 0]
    rgb[0, 1] = [0, 255, 0]
    rgb[1, 0] = [0, 0, 255]
    rgb[1, 1] = [100, 100, 100]
    grey = intensity.rgb_to_grey(rgb)
    np.testing.assert_allclose(grey, [[0.299 * 255, 0.587 * 255], [0.114 * 255, 100]], rtol=1e-5)
    rgba = np.concatenate([rgb, np.full((2, 2, 1), 9, np.uint8)], axis=-1)
    np.testing.assert_allclose(intensity.rgb_to_grey(rgba), grey)
    cf = torch.from_numpy(np.moveaxis(rgb, -1, 0).copy())  # (3, X, Y)
    out = intensity.RGBToGrey()(cf)
    assert out.shape == (1, 2, 2)
    np.testing.assert_allclose(out[0].numpy(), grey, rtol=1e-5)
    assert intensity.RGBToGreyd("image")({"image": cf})["image"].shape == (1, 2, 2)
    with pytest.raises(ValueError, match="colour channels"):
        intensity.rgb_to_grey(np.zeros((4, 4, 2)))


def test_repeat_channels():
    x = torch.rand(4, 1, 5, 5)  # (T, 1, X, Y)
    out = intensity.RepeatChannels(3, channel_dim=1)(x)
    assert out.shape == (4, 3, 5, 5) and all(torch.equal(out[:, c], x[:, 0]) for c in range(3))
    assert intensity.RepeatChannelsd("image")({"image": np.zeros((1, 2, 2))})["image"].shape == (3, 2, 2)
    with pytest.raises(ValueError, match="1 channel"):
        intensity.RepeatChannels(3)(torch.zeros(2, 4, 4))


def test_channel_normalize():
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    x = torch.ones(2, 3, 4, 4)
    out = intensity.ChannelNormalize(mean, std, channel_dim=1)(x)
    for c in range(3):
        assert torch.allclose(out[:, c], torch.full((2, 4, 4), (1 - mean[c]) / std[c]))
    out_np = intensity.ChannelNormalized("image", mean, std)({"image": np.ones((3, 2, 2), np.uint8)})["image"]
    np.testing.assert_allclose(out_np[:, 0, 0], [(1 - m) / s for m, s in zip(mean, std)], rtol=1e-6)
    with pytest.raises(ValueError, match="channels"):
        intensity.ChannelNormalize(mean, std)(torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="std"):
        intensity.ChannelNormalize(mean, (1, 0, 1))
