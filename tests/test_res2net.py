"""Res2Net-50 v1b backbone: structure, parameter names of the distributed checkpoint, strict local loading."""

from __future__ import annotations

import pytest
import torch

from usseg_models.errors import CheckpointError
from usseg_models.networks.blocks.res2net import Res2NetV1b, load_res2net_weights

SMALL = dict(layers=(1, 1, 1, 1), planes=(8, 16, 32, 64), stem_width=8)


def test_paper_backbone_names_and_size():
    with torch.device("meta"):
        net = Res2NetV1b()
    names = set(net.state_dict())
    # names of res2net50_v1b_26w_4s-3cf99910.pth (deep stem, Res2Net groups, avg-pool shortcut)
    for key in (
        "conv1.0.weight",
        "conv1.1.running_var",
        "conv1.3.weight",
        "conv1.4.weight",
        "conv1.6.weight",
        "bn1.weight",
        "layer1.0.conv1.weight",
        "layer1.0.convs.0.weight",
        "layer1.0.convs.2.weight",
        "layer1.0.bns.2.running_mean",
        "layer1.0.conv3.weight",
        "layer1.0.bn3.bias",
        "layer1.0.downsample.1.weight",
        "layer1.0.downsample.2.weight",
        "layer4.2.convs.2.weight",
        "layer3.5.bn3.weight",
    ):
        assert key in names, key
    assert "layer1.0.convs.3.weight" not in names  # scale 4 -> 3 convolved groups
    assert not any(k.startswith("fc.") for k in names)
    assert tuple(net.layer1[0].convs[0].weight.shape) == (26, 26, 3, 3)  # 26w
    assert tuple(net.layer4[0].conv1.weight.shape) == (208 * 4, 1024, 1, 1)
    # Res2Net-50 v1b 26w4s has 25.7 M parameters with its 2.05 M ImageNet classifier, 23.67 M without
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(23.67e6, rel=2e-3)


def test_stage_shapes_and_width_config():
    net = Res2NetV1b(**SMALL).eval()
    feats = net(torch.rand(1, 3, 64, 96))
    assert [tuple(f.shape) for f in feats] == [(1, 32, 16, 24), (1, 64, 8, 12), (1, 128, 4, 6), (1, 256, 2, 3)]
    assert net.out_channels == (32, 64, 128, 256)


def test_bad_arguments():
    with pytest.raises(ValueError, match="4 entries"):
        Res2NetV1b(layers=(1, 1, 1))
    with pytest.raises(ValueError, match="group width"):
        Res2NetV1b(planes=(1, 1, 1, 1), stem_width=2)


def test_load_own_state_dict_with_fc_and_prefix(tmp_path):
    src = Res2NetV1b(**SMALL)
    for p in src.parameters():
        torch.nn.init.normal_(p)
    state = {f"module.{k}": v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["fc.weight"] = torch.zeros(10, 256)  # classifier entries of the ImageNet file are ignored
    state["fc.bias"] = torch.zeros(10)
    path = tmp_path / "r2n.pth"
    torch.save(state, path)
    dst = Res2NetV1b(**SMALL, pretrained_path=path)
    for k, v in src.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(dst.state_dict()[k], v), k
    x = torch.rand(1, 3, 64, 64)
    src.eval(), dst.eval()
    assert torch.equal(src(x)[3], dst(x)[3])


def test_load_mismatch_lists_keys(tmp_path):
    state = Res2NetV1b(**SMALL).state_dict()
    state.pop("layer2.0.convs.1.weight")
    state["layer9.0.conv1.weight"] = torch.zeros(1)
    state["layer1.0.conv3.weight"] = torch.zeros(3, 3, 1, 1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_res2net_weights(Res2NetV1b(**SMALL), path)
    msg = str(info.value)
    assert "layer2.0.convs.1.weight" in msg and "layer9.0.conv1.weight" in msg and "layer1.0.conv3.weight" in msg


def test_load_missing_or_corrupt_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_res2net_weights(Res2NetV1b(**SMALL), tmp_path / "absent.pth")
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_res2net_weights(Res2NetV1b(**SMALL), bad)
