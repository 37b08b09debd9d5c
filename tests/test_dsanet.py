"""DSANet network: shapes for ablation rows and options, gradients, input validation, paper size, checkpoints."""

from __future__ import annotations

import pytest
import torch

from usseg_models.losses import DSANetLoss
from usseg_models.networks import DSANet, build_network, get_config
from usseg_models.networks.checkpoint import load_checkpoint, save_checkpoint

ABLATIONS = [  # paper's four rows: baseline, +AFSA, +LGSA, full
    dict(use_afsa=False, use_lgsa=False),
    dict(use_afsa=True, use_lgsa=False),
    dict(use_afsa=False, use_lgsa=True),
    dict(use_afsa=True, use_lgsa=True),
]
OPTIONS = [
    dict(similarity="spatial_cosine"),
    dict(sigmoid_gate=False),
    dict(channel_attention="avg"),
    dict(pairing="like"),
    dict(attn_residual=True),
    dict(attn_norm=True),
    dict(reproduce_release_bug=True),
    dict(out_channels=2),
]


def small(**overrides) -> DSANet:
    return build_network("dsanet", "small", **overrides)


def _ids(kwargs):
    return ",".join(f"{a}={b}" for a, b in kwargs.items())


@pytest.mark.parametrize("kwargs", ABLATIONS + OPTIONS, ids=_ids)
def test_shapes_eval(kwargs):
    torch.manual_seed(0)
    net = small(**kwargs).eval()
    oc = kwargs.get("out_channels", 1)
    x = torch.rand(2, 3, 3, 64, 32)
    with torch.no_grad():
        y = net(x)
        aux = net(x, return_aux=True)
    assert isinstance(y, torch.Tensor) and y.shape == (2, oc, 64, 32)
    assert len(aux) == 3 and all(o.shape == (2, oc, 64, 32) for o in aux)
    torch.testing.assert_close(aux[0], y)


@pytest.mark.parametrize("kwargs", ABLATIONS, ids=lambda k: f"afsa={k['use_afsa']},lgsa={k['use_lgsa']}")
def test_gradients_reach_every_parameter(kwargs):
    torch.manual_seed(0)
    net = small(**kwargs).train()
    x = torch.rand(2, 3, 3, 64, 64)
    masks = (torch.rand(2, 3, 1, 64, 64) > 0.5).float()
    out = net(x)  # training mode: (target, p(t-1), p(t-2))
    assert isinstance(out, tuple) and len(out) == 3 and all(o.shape == (2, 1, 64, 64) for o in out)
    DSANetLoss()(out, masks).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        if name.endswith("key.bias"):
            continue  # softmax is invariant to a key bias (q·b_k is constant over keys): its gradient is exactly 0
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


def test_modules_built_per_ablation():
    names = {n.split(".")[0] for n, _ in small(use_afsa=False, use_lgsa=False).named_parameters()}
    assert "afsa_memory" not in names and "lgsa" not in names and "fused_decoders" not in names
    names = {n.split(".")[0] for n, _ in small().named_parameters()}
    assert {"backbone", "frame_decoders", "afsa_memory", "afsa_target", "lgsa", "fused_decoders"} <= names
    assert len(small().frame_decoders) == 3


def test_frame_order_matters():
    torch.manual_seed(0)
    net = small().train()  # batch statistics: at initialisation eval-mode activations are tiny
    x = torch.rand(1, 3, 3, 64, 64)
    with torch.no_grad():
        y = net(x, return_aux=False)
        y_swapped = net(x[:, [0, 2, 1]], return_aux=False)
        y_baseline = small(use_afsa=False, use_lgsa=False).train()
        b1, b2 = y_baseline(x, return_aux=False), y_baseline(x[:, [0, 2, 1]], return_aux=False)
    assert (y - y_swapped).abs().max() > 1e-4  # separate decoder weights per position, AFSA order
    torch.testing.assert_close(b1, b2)  # baseline: past frames do not reach the target output


def test_decode_from_features_matches_forward():
    torch.manual_seed(0)
    net = small().eval()
    x = torch.rand(2, 3, 3, 64, 64)
    with torch.no_grad():
        feats = [net.encode_frame(x[:, i]) for i in range(3)]
        y = net.decode_from_features(feats[0], feats[1], feats[2], (64, 64))
        torch.testing.assert_close(y, net(x))


@pytest.mark.parametrize(
    "shape,match",
    [
        ((1, 2, 3, 64, 64), "3 frames"),
        ((1, 3, 1, 64, 64), "channels"),
        ((1, 3, 3, 64, 48), "multiples of 32"),
        ((3, 3, 64, 64), "5-D|\\(B, 3, C, H, W\\)"),
    ],
)
def test_bad_input_shapes(shape, match):
    net = small().eval()
    with pytest.raises(ValueError, match=match):
        net(torch.rand(*shape))


def test_nan_input_and_bad_arguments():
    net = small().eval()
    x = torch.rand(1, 3, 3, 64, 64)
    x[0, 1, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        net(x)
    with pytest.raises(ValueError, match="spatial_dims"):
        small(spatial_dims=3)
    with pytest.raises(ValueError, match="pairing"):
        small(pairing="diagonal")
    with pytest.raises(ValueError, match="similarity"):
        small(similarity="pixel")


def test_paper_configuration_size():
    cfg = get_config("dsanet", "paper")
    assert cfg["spatial_size"] == 352 and cfg["num_attention_layers"] == 12
    with torch.device("meta"):
        net = build_network("dsanet", "paper")

    def count(module):
        return sum(p.numel() for p in module.parameters())

    # docs/paper-readings.md "DSANet: size and cost": 305.9 M (backbone 23.7 M, five decoders ~48 M, LGSA 38 M)
    assert count(net) == pytest.approx(305.9e6, rel=1e-3)
    assert count(net.backbone) == pytest.approx(23.7e6, rel=2e-3)
    assert count(net.frame_decoders[0]) == pytest.approx(48.2e6, rel=1e-2)
    assert len(net.lgsa.attention) == 12


def test_backbone_pretrained_path(tmp_path):
    src = small()
    path = tmp_path / "r2n.pth"
    torch.save(src.backbone.state_dict(), path)
    net = small(pretrained_path=str(path))
    for k, v in src.backbone.state_dict().items():
        assert torch.equal(net.backbone.state_dict()[k], v)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    net = small(use_afsa=False, pairing="like").eval()
    path = save_checkpoint(
        tmp_path / "dsanet.pt", net, "dsanet", "small", overrides=dict(use_afsa=False, pairing="like")
    )
    loaded, payload = load_checkpoint(path)
    loaded.eval()
    assert payload["spatial_size"] == 64 and not loaded.use_afsa and loaded.lgsa.pairing == "like"
    x = torch.rand(1, 3, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))
