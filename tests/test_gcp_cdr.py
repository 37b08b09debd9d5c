"""GCP and CDR blocks of IntraSense-Net on constructed features (CPU, tiny tensors)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from usseg_models.networks.blocks.cdr import CDR, channel_decouple
from usseg_models.networks.blocks.gcp import (
    GCP,
    EntropyRegionWhitening,
    NonLocalAttention,
    SpatialAttention,
    normalized_channel_entropy,
)


def _mixed_entropy_features(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 8, 6, 6) features: left half one-hot-like (low entropy), right half nearly uniform (high entropy)."""
    rng = np.random.default_rng(seed)
    c, h, w = 8, 6, 6
    x = rng.uniform(0.0, 0.05, size=(1, c, h, w))
    low = np.zeros((h, w), dtype=bool)
    low[:, :3] = True
    for i, j in zip(*np.nonzero(low)):
        x[0, rng.integers(0, c), i, j] = rng.uniform(15.0, 40.0)  # one dominant channel -> entropy ~ 0
    return torch.tensor(x, dtype=torch.float32), torch.tensor(low)


def test_normalized_entropy_range():
    uniform = torch.zeros(1, 8, 2, 2)
    onehot = torch.zeros(1, 8, 2, 2)
    onehot[:, 3] = 50.0
    assert torch.allclose(normalized_channel_entropy(uniform), torch.ones(1, 1, 2, 2))
    assert normalized_channel_entropy(onehot).max() < 1e-3
    with pytest.raises(ValueError, match="C>=2"):
        normalized_channel_entropy(torch.zeros(1, 1, 2, 2))


def test_entropy_temperature_sharpens_the_mask():
    torch.manual_seed(0)
    x = torch.randn(2, 64, 4, 4)  # BatchNorm-like scale: literal softmax over 64 channels is near uniform
    assert not EntropyRegionWhitening(temperature=1.0).mask(x).any()
    assert EntropyRegionWhitening(temperature=0.05).mask(x).all()
    gcp = GCP(64, entropy_temperature=0.05)
    assert gcp.whitening.temperature == 0.05
    with pytest.raises(ValueError, match="temperature"):
        EntropyRegionWhitening(temperature=0.0)


@pytest.mark.parametrize("stats", ["region", "instance"])
def test_whitening_only_touches_low_entropy_positions(stats):
    x, low = _mixed_entropy_features()
    block = EntropyRegionWhitening(tau=0.5, stats=stats)
    assert torch.equal(block.mask(x)[0, 0], low)
    out = block(x)
    # High-entropy positions are returned exactly.
    assert torch.equal(out[0][:, ~low], x[0][:, ~low])
    # Low-entropy positions are standardised per channel with the chosen statistics (computed independently).
    xn = x[0].numpy().astype(np.float64)
    for ch in range(x.shape[1]):
        ref = xn[ch][low] if stats == "region" else xn[ch].ravel()
        expected = (xn[ch][low] - ref.mean()) / math.sqrt(ref.var() + block.eps)
        np.testing.assert_allclose(out[0, ch][low].numpy(), expected, rtol=1e-4, atol=1e-4)
    if stats == "region":
        region = out[0][:, low]
        varying = x[0][:, low].std(dim=1) > 1e-3
        assert torch.allclose(region.mean(dim=1), torch.zeros(8), atol=1e-4)
        assert torch.allclose(region[varying].var(dim=1, unbiased=False), torch.ones(int(varying.sum())), atol=1e-3)


def test_whitening_without_low_entropy_is_identity_and_constant_is_finite():
    block = EntropyRegionWhitening()
    x = torch.rand(2, 8, 4, 4) * 0.01  # near-uniform softmax everywhere
    assert torch.equal(block(x), x)
    # Constant one-hot-like features: masked everywhere, zero variance -> exactly 0, no NaN.
    const = torch.zeros(1, 8, 4, 4)
    const[:, 0] = 30.0
    out = block(const)
    assert torch.isfinite(out).all() and torch.count_nonzero(out) == 0


def test_whitening_validation():
    with pytest.raises(ValueError, match="tau"):
        EntropyRegionWhitening(tau=1.5)
    with pytest.raises(ValueError, match="stats"):
        EntropyRegionWhitening(stats="batch")


@pytest.mark.parametrize("entropy", [True, False])
def test_gcp_shapes_and_switch(entropy):
    torch.manual_seed(0)
    gcp = GCP(16, key_reduction=4, entropy_whitening=entropy)
    x = torch.randn(2, 16, 5, 7)
    out = gcp(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    expected = gcp.spatial_attention(gcp.nonlocal_attention(x))
    if entropy:
        assert isinstance(gcp.whitening, EntropyRegionWhitening)
        expected = EntropyRegionWhitening(tau=0.5)(expected)
    else:
        assert isinstance(gcp.whitening, torch.nn.Identity)
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.isfinite(gcp(torch.full((2, 16, 4, 4), 7.0))).all()
    with pytest.raises(ValueError, match="at least 2 channels"):
        GCP(1)


def test_nonlocal_attention_matches_explicit_softmax():
    torch.manual_seed(0)
    block = NonLocalAttention(6, 3)
    x = torch.randn(2, 6, 3, 4)
    q = block.query(x).flatten(2).transpose(1, 2)
    k = block.key(x).flatten(2).transpose(1, 2)
    v = block.value(x).flatten(2).transpose(1, 2)
    attn = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(3), dim=-1)
    expected = (attn @ v).transpose(1, 2).reshape(2, 6, 3, 4) + x
    assert torch.allclose(block(x), expected, atol=1e-5)


def test_spatial_attention_uses_channel_avg_and_max():
    block = SpatialAttention(3)
    with torch.no_grad():
        block.conv.weight.zero_()
        block.conv.bias.zero_()
        block.conv.weight[0, 1, 1, 1] = 1.0  # only the channel-max map, centre tap
    x = torch.randn(1, 4, 3, 3)
    assert torch.allclose(block.attention_map(x), torch.sigmoid(x.amax(dim=1, keepdim=True)))
    with pytest.raises(ValueError, match="odd"):
        SpatialAttention(4)


def _dominant_direction_features(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(2, 12, 1, generator=g)
    b = torch.randn(2, 1, 25, generator=g)
    return (5.0 * a @ b + 0.3 * torch.randn(2, 12, 25, generator=g)).reshape(2, 12, 5, 5)


@pytest.mark.parametrize("k", [1, 2])
def test_decoupling_removes_principal_directions(k):
    f = _dominant_direction_features()
    dec = channel_decouple(f, k=k)
    for b in range(2):
        mat = f[b].reshape(12, -1).double().numpy()
        u = np.linalg.svd(mat - mat.mean(axis=1, keepdims=True))[0][:, :k]  # independent reference basis
        proj_f = u.T @ mat
        proj_dec = u.T @ dec[b].reshape(12, -1).double().numpy()
        assert np.abs(proj_f).max() > 1.0
        assert np.abs(proj_dec).max() < 1e-4 * np.abs(proj_f).max()
        # Nothing outside span(U_k) changes.
        np.testing.assert_allclose(dec[b].reshape(12, -1).numpy(), mat - u @ proj_f, atol=1e-4)


def test_decoupling_constant_input_and_bf16_autocast():
    const = torch.full((1, 8, 4, 4), 2.5)
    assert torch.isfinite(channel_decouple(const)).all()
    f = _dominant_direction_features()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        dec = channel_decouple(f.bfloat16())
    assert dec.dtype == torch.bfloat16 and torch.isfinite(dec).all()
    with pytest.raises(ValueError, match="k must satisfy"):
        channel_decouple(f, k=12)


@pytest.mark.parametrize("detach_basis", [True, False])
def test_cdr_reweighting_and_features(detach_basis):
    torch.manual_seed(0)
    cdr = CDR(12, k=1, reduction=4, detach_basis=detach_basis)
    f = _dominant_direction_features().requires_grad_(True)
    out, (f_ret, dec) = cdr(f, return_features=True)
    assert f_ret is f and out.shape == f.shape
    w = torch.sigmoid(cdr.mlp(dec.mean(dim=(2, 3))))
    assert torch.allclose(out, dec * w[:, :, None, None])
    out.sum().backward()
    assert torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in cdr.parameters())
    with pytest.raises(ValueError, match="k must satisfy"):
        CDR(4, k=4)
