"""Multiplicative Gamma speckle: statistics, independence per frame, shared channels, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from usseg_models.transforms.speckle import RandSpeckleNoise, RandSpeckleNoised


@pytest.mark.parametrize("L", [20.0, 25.0, 4.0])
def test_speckle_mean_and_variance_on_constant_image(L):
    level = 0.25  # low enough that clipping at 1 is negligible (needs n > 4)
    img = torch.full((1, 200, 200), level)
    noise = RandSpeckleNoise(L=L, prob=1.0)
    noise.set_random_state(123)
    n = (noise(img) / level).double().flatten()
    count = n.numel()
    # Gamma(L, rate L): mean 1, variance 1/L, fourth central moment (3 + 6/L)/L^2
    var = 1.0 / L
    se_mean = math.sqrt(var / count)
    se_var = math.sqrt((3 + 6 / L) * var**2 / count - var**2 / count)
    assert abs(float(n.mean()) - 1.0) < 5 * se_mean
    assert abs(float(n.var()) - var) < 5 * se_var
    assert float(n.min()) > 0


def test_speckle_clips_to_unit_range_and_keeps_type():
    img = np.full((1, 64, 64), 0.9, dtype=np.float32)
    out = RandSpeckleNoise(L=2.0, prob=1.0)(img)
    assert isinstance(out, np.ndarray) and out.shape == img.shape and out.dtype == np.float32
    assert out.max() <= 1.0 and out.min() >= 0.0
    assert (out == 1.0).any()  # L = 2 has a heavy tail: some pixels must have been clipped


def test_speckle_independent_per_frame_and_shared_over_channels():
    clip = torch.full((3, 3, 48, 48), 0.5)  # (T, C, X, Y): share over C, independent over T
    noise = RandSpeckleNoise(L=25, prob=1.0, channel_dim=1)
    noise.set_random_state(0)
    out = noise(clip)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2])
    f0, f1 = out[0, 0].flatten(), out[1, 0].flatten()
    corr = torch.corrcoef(torch.stack([f0, f1]))[0, 1]
    assert abs(float(corr)) < 0.05  # 2304 samples: |r| < 0.05 is > 2 standard errors
    assert not torch.equal(f0, f1)


def test_speckle_determinism_and_prob():
    img = torch.rand(1, 32, 32)
    outs = []
    for seed in (5, 5, 6):
        t = RandSpeckleNoise(L=25, prob=1.0)
        t.set_random_state(seed)
        outs.append(t(img))
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])
    assert torch.equal(RandSpeckleNoise(L=25, prob=0.0)(img), img)


def test_speckle_dict_variant_and_validation():
    d = {"image": torch.full((2, 1, 16, 16), 0.5), "label": torch.ones(2, 1, 16, 16)}
    t = RandSpeckleNoised("image", L=20, prob=1.0, channel_dim=1)
    t.set_random_state(1)
    out = t(d)
    assert not torch.equal(out["image"], d["image"]) and torch.equal(out["label"], d["label"])
    t2 = RandSpeckleNoised("image", L=20, prob=1.0, channel_dim=1)
    t2.set_random_state(1)
    assert torch.equal(t2(d)["image"], out["image"])
    assert torch.equal(RandSpeckleNoised("image", L=20, prob=0.0)(d)["image"], d["image"])
    with pytest.raises(ValueError, match="looks"):
        RandSpeckleNoise(L=0)


def test_speckle_refuses_unscaled_integer_input():
    from usseg_models.errors import UssegError

    with pytest.raises(UssegError, match="float intensities"):
        RandSpeckleNoise(L=25)(np.full((1, 4, 4), 200, np.uint8))
