"""AFSA and LGSA blocks: similarity modes, gates, attention against a naive softmax, reshape, pairing."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from usseg_models.networks.blocks.afsa import AFSA, ChannelAttention
from usseg_models.networks.blocks.lgsa import LGSA, SelfAttentionLayer, reassemble_channels

WIDTHS = (16, 32, 64, 128)


@pytest.mark.parametrize("similarity", ["channel_cosine", "spatial_cosine"])
@pytest.mark.parametrize("sigmoid_gate", [True, False])
@pytest.mark.parametrize("variant", ["cbam", "avg"])
def test_afsa_shapes(similarity, sigmoid_gate, variant):
    afsa = AFSA(32, similarity=similarity, sigmoid_gate=sigmoid_gate, channel_attention=variant)
    a, b = torch.rand(2, 32, 8, 8), torch.rand(2, 32, 8, 8)
    assert afsa(a, b).shape == (2, 32, 8, 8)
    expected = (2, 1, 8, 8) if similarity == "channel_cosine" else (2, 32, 1, 1)
    assert afsa.similarity_map(a, b).shape == expected


def test_afsa_matches_hand_computation():
    torch.manual_seed(0)
    afsa = AFSA(32)
    a, b = torch.rand(1, 32, 4, 4), torch.rand(1, 32, 4, 4)
    cos = (a * b).sum(1, keepdim=True) / (a.norm(dim=1, keepdim=True) * b.norm(dim=1, keepdim=True))
    gate = torch.sigmoid(cos)

    def ca(module, x):
        mlp = module.mlp
        return torch.sigmoid(mlp(x.mean((2, 3), keepdim=True)) + mlp(x.amax((2, 3), keepdim=True)))

    out = (a * gate) * ca(afsa.ca1, b * gate)
    out = out * ca(afsa.ca2, out)
    torch.testing.assert_close(afsa(a, b), out)


def test_afsa_gate_and_similarity_options_change_output():
    torch.manual_seed(0)
    a, b = torch.rand(1, 16, 6, 6), torch.rand(1, 16, 6, 6)
    ref = AFSA(16)
    for kwargs in (dict(sigmoid_gate=False), dict(similarity="spatial_cosine"), dict(channel_attention="avg")):
        other = AFSA(16, **kwargs)
        other.load_state_dict(ref.state_dict())
        assert not torch.allclose(ref(a, b), other(a, b)), kwargs
    # per-pixel similarity really is per pixel: identical vectors at one pixel give cos = 1 there
    b2 = b.clone()
    b2[:, :, 2, 3] = 3 * a[:, :, 2, 3]
    assert ref.similarity_map(a, b2)[0, 0, 2, 3].item() == pytest.approx(1.0, abs=1e-6)


def test_afsa_bad_arguments():
    with pytest.raises(ValueError, match="similarity"):
        AFSA(8, similarity="elementwise")
    with pytest.raises(ValueError, match="variant"):
        ChannelAttention(8, variant="max")
    with pytest.raises(ValueError, match="same shape"):
        AFSA(8)(torch.rand(1, 8, 4, 4), torch.rand(1, 8, 4, 5))


@pytest.mark.parametrize("residual,norm", [(False, False), (True, False), (False, True), (True, True)])
def test_attention_equals_naive_softmax(residual, norm):
    torch.manual_seed(0)
    layer = SelfAttentionLayer(8, residual=residual, norm=norm)
    x = torch.randn(2, 10, 8)
    z = F.layer_norm(x, (8,), layer.norm.weight, layer.norm.bias) if norm else x
    q, k, v = layer.query(z), layer.key(z), layer.value(z)
    attn = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(8), dim=-1)
    expected = attn @ v + (x if residual else 0)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-6)


def test_attend_puts_tokens_back_correctly_and_bug_flag_scrambles():
    torch.manual_seed(0)
    f = torch.randn(1, 16, 4, 6)
    # no attention layers: the correct path is the identity, the release's reshape is not
    assert torch.equal(LGSA(WIDTHS, num_layers=0).attend(f), f)
    scrambled = LGSA(WIDTHS, num_layers=0, reproduce_release_bug=True).attend(f)
    assert not torch.equal(scrambled, f)
    assert torch.equal(scrambled.flatten(), f.flatten(2).transpose(1, 2).flatten())
    # with layers: output at pixel (i, j) is the attention output of token i*w + j
    lgsa = LGSA(WIDTHS, num_layers=2)
    tokens = f.flatten(2).transpose(1, 2)
    for layer in lgsa.attention:
        tokens = layer(tokens)
    out = lgsa.attend(f)
    torch.testing.assert_close(out[0, :, 2, 5], tokens[0, 2 * 6 + 5])
    buggy = LGSA(WIDTHS, num_layers=2, reproduce_release_bug=True)
    buggy.load_state_dict(lgsa.state_dict())
    assert not torch.allclose(buggy.attend(f), out)


def test_reassembly_pairings():
    local = torch.arange(4.0).view(1, 4, 1, 1)
    glob = torch.arange(10.0, 14.0).view(1, 4, 1, 1)
    a, b = reassemble_channels(local, glob, "crossed")
    assert a.flatten().tolist() == [0, 1, 12, 13] and b.flatten().tolist() == [2, 3, 10, 11]
    a, b = reassemble_channels(local, glob, "like")
    assert a.flatten().tolist() == [0, 1, 10, 11] and b.flatten().tolist() == [2, 3, 12, 13]
    with pytest.raises(ValueError, match="pairing"):
        reassemble_channels(local, glob, "random")


def test_lgsa_pyramid_shapes_and_pairing_difference():
    torch.manual_seed(0)
    f = torch.rand(2, 16, 16, 16)
    local = [torch.rand(2, c, 16 >> i, 16 >> i) for i, c in enumerate(WIDTHS)]
    crossed = LGSA(WIDTHS, num_layers=1).eval()
    like = LGSA(WIDTHS, num_layers=1, pairing="like").eval()
    like.load_state_dict(crossed.state_dict())
    pa, pb = crossed(f, local)
    qa, qb = like(f, local)
    assert [tuple(t.shape) for t in pa] == [(2, 16, 16, 16), (2, 32, 8, 8), (2, 64, 4, 4), (2, 128, 2, 2)]
    assert [t.shape for t in pb] == [t.shape for t in pa]
    assert all(torch.equal(x[:, : x.shape[1] // 2], y[:, : y.shape[1] // 2]) for x, y in zip(pa, qa))  # local half
    assert not any(torch.equal(x, y) for x, y in zip(pa, qa))
    assert not any(torch.equal(x, y) for x, y in zip(pb, qb))


def test_lgsa_conv_stage_widths_follow_paper_count():
    with torch.device("meta"):
        lgsa = LGSA()
    stages = sum(p.numel() for p in lgsa.stages.parameters())
    attn = sum(p.numel() for p in lgsa.attention.parameters())
    assert stages == pytest.approx(38.35e6, rel=1e-3)  # paper-readings.md "DSANet: size and cost": LGSA 38 M
    assert attn == 12 * 3 * (256 * 256 + 256)


def test_lgsa_bad_arguments():
    with pytest.raises(ValueError, match="even"):
        LGSA((15, 32, 64, 128))
    with pytest.raises(ValueError, match="pairing"):
        LGSA(WIDTHS, pairing="x")
    with pytest.raises(ValueError, match="expects"):
        LGSA(WIDTHS)(torch.rand(1, 8, 4, 4), [])


def test_attention_uses_sdpa_with_a_head_axis(monkeypatch):
    """3-D input sends CPU SDPA to its quadratic-memory math path; the layer must pass (B, 1, N, C)."""
    import usseg_models.networks.blocks.lgsa as lgsa_module

    shapes = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, *args, **kwargs):
        shapes.append(tuple(q.shape))
        return real(q, k, v, *args, **kwargs)

    monkeypatch.setattr(lgsa_module.F, "scaled_dot_product_attention", spy)
    out = SelfAttentionLayer(8)(torch.randn(2, 10, 8))
    assert shapes == [(2, 1, 10, 8)] and out.shape == (2, 10, 8)
