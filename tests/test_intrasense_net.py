"""IntraSenseNet: shapes for every switch, bad input, gradients, checkpoints and pretrained loading (small config)."""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch

from usseg_models.errors import CheckpointError
from usseg_models.losses import IntraSenseLoss
from usseg_models.networks import IntraSenseNet, build_network, get_config
from usseg_models.networks.checkpoint import load_checkpoint, save_checkpoint
from usseg_models.networks.factory import network_kwargs

SMALL = network_kwargs("intrasense", "small")
SWITCHES = list(itertools.product([False, True], repeat=3))  # (use_gcp, gcp_entropy, use_cdr)


def small_net(**overrides) -> IntraSenseNet:
    torch.manual_seed(0)
    return IntraSenseNet(**{**SMALL, **overrides})


@pytest.mark.parametrize("use_gcp,gcp_entropy,use_cdr", SWITCHES)
def test_shapes_for_every_switch(use_gcp, gcp_entropy, use_cdr):
    net = small_net(use_gcp=use_gcp, gcp_entropy=gcp_entropy, use_cdr=use_cdr).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits, feats = net(x, return_features=True)
        plain = net(x)
    assert logits.shape == (2, 1, 64, 64) and torch.allclose(logits, plain)
    assert len(net.gcp) == int(use_gcp) and len(net.cdr) == int(use_cdr)
    assert len(feats["cdr"]) == int(use_cdr)
    for f, f_dec in feats["cdr"]:
        assert f.shape == f_dec.shape == (2, net.encoder_channels[4], 2, 2)
    has_whitening = use_gcp and gcp_entropy
    assert any(m.__class__.__name__ == "EntropyRegionWhitening" for m in net.modules()) == has_whitening


@pytest.mark.parametrize("gcp_stages,cdr_stages", [((3,), (3,)), ((2, 4), (4,)), ((4,), (1, 4))])
def test_stage_placement(gcp_stages, cdr_stages):
    net = small_net(gcp_stages=gcp_stages, cdr_stages=cdr_stages).eval()
    with torch.no_grad():
        logits, feats = net(torch.randn(1, 3, 64, 64), return_features=True)
    assert logits.shape == (1, 1, 64, 64)
    assert sorted(int(k) for k in net.gcp) == sorted(gcp_stages)
    assert [f.shape[1] for f, _ in feats["cdr"]] == [net.encoder_channels[s] for s in sorted(cdr_stages)]


def test_non_divisible_sizes_are_padded_and_cropped():
    net = small_net().eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 45, 70)).shape == (1, 1, 45, 70)
        assert net(torch.randn(2, 3, 32, 33)).shape == (2, 1, 32, 33)


@pytest.mark.parametrize(
    "shape,match",
    [((2, 1, 64, 64), "3 input channels"), ((2, 4, 64, 64), "3 input channels"), ((2, 3, 16, 64), ">= 32"),
     ((3, 64, 64), r"\(B, C, H, W\)")],
)
def test_bad_input_raises(shape, match):
    with pytest.raises(ValueError, match=match):
        small_net()(torch.randn(*shape))


@pytest.mark.parametrize(
    "kwargs,match",
    [({"spatial_dims": 3}, "2D"), ({"encoder_layers": (1, 1, 1)}, "encoder_layers"),
     ({"gcp_stages": (5,)}, "gcp_stages"), ({"cdr_k": 0}, "k must satisfy"), ({"encoder_block": "x"}, "encoder_block"),
     ({"decoder_channels": (8, 8)}, "decoder_channels"), ({"gcp_whitening_stats": "batch"}, "stats")],
)
def test_constructor_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_net(**kwargs)


@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize("value", [0.0, 2.0])
def test_constant_input_is_finite(value, autocast):
    net = small_net()
    loss_fn = IntraSenseLoss(rank_surrogate="nuclear")
    x = torch.full((2, 3, 64, 64), value)
    target = torch.zeros(2, 1, 64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits, feats = net(x, return_features=True)
        parts = loss_fn.components(logits, target, feats)
    assert torch.isfinite(logits.float()).all()
    assert all(torch.isfinite(v) for v in parts.values())
    parts["total"].backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
    net.eval()
    with torch.no_grad():
        assert torch.isfinite(net(x)).all()


@pytest.mark.parametrize("temperature", [1.0, 0.05])  # 0.05: the whitening path is active (mask set)
def test_gradients_reach_every_parameter_including_through_iw(temperature):
    net = small_net(gcp_temperature=temperature)
    x = torch.randn(2, 3, 64, 64)
    if temperature < 1:
        captured = []
        net.gcp["4"].whitening.register_forward_hook(lambda m, i, o: captured.append(m.mask(i[0]).float().mean()))
    target = (torch.rand(2, 1, 64, 64) > 0.5).float()
    logits, feats = net(x, return_features=True)
    IntraSenseLoss()(logits, target, feats).backward()
    if temperature < 1:
        assert captured[0] > 0.5
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name

    # L_IW alone: its gradient must reach the encoder and the GCP block that produce F.
    net.zero_grad(set_to_none=True)
    logits, feats = net(x, return_features=True)
    iw = IntraSenseLoss().components(logits, target, feats)["iw"]
    assert iw.requires_grad
    iw.backward()
    for prefix in ("encoder.conv1", "encoder.layer4", "gcp.4.nonlocal_attention", "gcp.4.spatial_attention"):
        grads = [p.grad for n, p in net.named_parameters() if n.startswith(prefix)]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads), prefix
    assert all(p.grad is None for n, p in net.named_parameters() if n.startswith("decoder"))


def test_factory_and_checkpoint_round_trip(tmp_path):
    assert get_config("intrasense", "small")["spatial_size"] == 64
    assert get_config("intrasense", "paper")["spatial_size"] == 256
    overrides = {"use_cdr": False, "gcp_whitening_stats": "instance"}
    net = build_network("intrasense", "small", **overrides)
    assert isinstance(net, IntraSenseNet) and len(net.cdr) == 0
    net.train()
    net(torch.randn(2, 3, 64, 64))  # update BatchNorm running statistics so they differ from the defaults
    net.eval()
    path = save_checkpoint(tmp_path / "intrasense.pt", net, "intrasense", "small", overrides, extra={"epoch": 1})
    loaded, payload = load_checkpoint(path)
    loaded.eval()
    assert payload["extra"] == {"epoch": 1} and payload["spatial_size"] == 64
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(net(x), loaded(x))
    # A checkpoint of a different switch combination must not load silently.
    other = save_checkpoint(tmp_path / "other.pt", build_network("intrasense", "small"), "intrasense", "small",
                            overrides)
    with pytest.raises(CheckpointError, match="missing|unexpected"):
        load_checkpoint(other)


def _torchvision_style_state(net: IntraSenseNet) -> dict[str, torch.Tensor]:
    state = {k: torch.randn_like(v.float()).to(v.dtype) if v.is_floating_point() else v.clone()
             for k, v in net.encoder.state_dict().items() if not k.endswith("num_batches_tracked")}
    width = net.encoder_channels[4]
    state["fc.weight"], state["fc.bias"] = torch.randn(10, width), torch.randn(10)  # ImageNet head: ignored
    return state


def test_pretrained_encoder_loads_strictly(tmp_path):
    state = _torchvision_style_state(small_net())
    path = tmp_path / "resnet_small.pth"
    torch.save(state, path)
    net = small_net(pretrained_path=str(path))
    for key, value in net.encoder.state_dict().items():
        if key in state:
            assert torch.equal(value, state[key]), key


def test_pretrained_encoder_mismatch_lists_keys(tmp_path):
    state = _torchvision_style_state(small_net())
    del state["layer1.0.conv1.weight"]
    state["layer9.weight"] = torch.zeros(1)
    state["conv1.weight"] = torch.zeros(3, 3, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        small_net(pretrained_path=path)
    message = str(err.value)
    assert "layer1.0.conv1.weight" in message and "layer9.weight" in message and "conv1.weight: file" in message
    with pytest.raises(CheckpointError, match="not found"):
        small_net(pretrained_path=tmp_path / "absent.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="cannot read"):
        small_net(pretrained_path=tmp_path / "junk.pth")


def test_paper_encoder_matches_torchvision_resnet50_names():
    """The paper encoder has exactly torchvision's ResNet-50 parameter names and shapes (without fc)."""
    net = IntraSenseNet(**network_kwargs("intrasense", "paper"))
    state = net.encoder.state_dict()
    params = sum(v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k)
    assert params == 23_508_032  # torchvision resnet50: 25,557,032 minus fc (2048*1000 + 1000)
    assert state["conv1.weight"].shape == (64, 3, 7, 7)
    assert state["layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)
    assert state["layer2.0.downsample.0.weight"].shape == (512, 256, 1, 1)
    assert "layer2.0.downsample.0.bias" not in state


def test_torchscript_trace_round_trip(tmp_path):
    """Tracing at a multiple of 32 gives the same logits after save/load (padding amounts are traced as constants,
    so trace at the deployment size)."""
    net = small_net().eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(net, x)
    traced.save(str(tmp_path / "intrasense.ts"))
    loaded = torch.jit.load(str(tmp_path / "intrasense.ts"))
    with torch.no_grad():
        assert torch.allclose(loaded(x), net(x), atol=1e-5)
