"""A real MONAI Label server with three structures (``--conf labels "1:LV,2:MYO,3:LA"``), one start for the module.

The sample studies are one-structure (labels 0/1), so the three-structure server does not train on them by itself
(bootstrap waits for labels showing every structure) and its ``dsanet`` starts untrained. Its ``intrasense`` gets a
three-structure checkpoint under this label set's file name before the start: a small IntraSense-Net fitted in a
second to four bands of one sample image, so its answer really holds background and all three structures.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests
import torch
from app_server_fixtures import MONAILabelClient, load
from PIL import Image
from server_utils import MonaiLabelServer, copy_app, copy_studies

from usseg_models import palette
from usseg_models.inference.image import ImagePredictor
from usseg_models.labels import parse_labels
from usseg_models.networks.checkpoint import save_checkpoint
from usseg_models.networks.factory import build_network, network_spatial_size

THREE = "1:LV,2:MYO,3:LA"
NAMES = {"LV": 1, "MYO": 2, "LA": 3}
CONF = {"models": "dsanet,intrasense", "config": "small", "labels": THREE, "auto_retrain_after": "0",
        "bootstrap_min_labels": "3"}  # bootstrap on (the test default turns it off) to show it does not start


def _banded_checkpoint(path, image_file):
    """A three-structure IntraSense-Net (small) fitted to four vertical bands of ``image_file`` (background, LV, MYO,
    LA), saved with its label set."""
    torch.manual_seed(0)
    labels = palette.colored(parse_labels(THREE))
    net = build_network("intrasense", "small", out_channels=labels.out_channels)
    size = network_spatial_size("intrasense", "small")
    x = ImagePredictor(net, size).preprocess(load(image_file)[0])[None]
    bands = torch.zeros(1, size, size, dtype=torch.long)
    for k in range(1, 4):
        bands[:, :, k * size // 4:] = k
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    net.train()
    for _ in range(40):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), bands).backward()
        opt.step()
    save_checkpoint(path, net.eval(), "intrasense", "small", overrides={"out_channels": labels.out_channels},
                    extra={"labels": labels.to_json()})


@pytest.fixture(scope="module")
def structures_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("structures_server")
    app = copy_app(tmp / "app")
    studies = copy_studies(tmp / "studies")
    _banded_checkpoint(app / "model" / "intrasense_1-LV_2-MYO_3-LA.pt", sorted(studies.glob("image_*.png"))[0])
    srv = MonaiLabelServer(app, studies, conf=CONF)
    srv.start()
    srv.studies_dir, srv.tmp = studies, tmp
    yield srv
    srv.stop()


def _label_png(path, image_file, values):
    """A label PNG of ``image_file``'s size holding ``values`` in horizontal stripes."""
    width, height = Image.open(image_file).size
    rows = np.array_split(np.arange(height), len(values))
    arr = np.zeros((height, width), np.uint8)
    for value, r in zip(values, rows):
        arr[r] = value
    Image.fromarray(arr).save(path)
    return path


def test_info_lists_three_structures_with_palette_colours(structures_server):
    info = requests.get(f"{structures_server.url}/info/", timeout=30).json()
    colors = {name: list(rgb) for name, rgb in palette.colored(parse_labels(THREE)).label_colors().items()}
    for model in ("dsanet", "intrasense"):
        assert info["models"][model]["labels"] == NAMES
        assert info["models"][model]["label_names"] == NAMES
        assert info["models"][model]["label_colors"] == colors
        assert info["models"][model]["network"]["out_channels"] == 4
        assert info["usseg"][model]["labels"] == THREE
        assert info["usseg"][model]["model_file"] == f"{model}_1-LV_2-MYO_3-LA.pt"
    assert info["usseg"]["intrasense"]["trained"] is True
    # the one-structure sample labels do not bootstrap a three-structure dsanet
    assert info["usseg"]["dsanet"]["trained"] is False
    assert "no labelled cine shows MYO, LA of 1:LV,2:MYO,3:LA" in structures_server.log_text()
    assert "first training on" not in structures_server.log_text()


def test_labels_with_the_configured_values_are_accepted_others_refused(structures_server, tmp_path):
    image = sorted(structures_server.studies_dir.glob("image_*.png"))[-1]
    image_id = image.name[: -len(".png")]
    client = MONAILabelClient(structures_server.url, tmpdir=str(tmp_path / "client"))
    good = _label_png(tmp_path / f"{image_id}.png", image, [0, 1, 2, 3])
    client.save_label(image_id, str(good), tag="final")
    saved = structures_server.studies_dir / "labels" / "final" / f"{image_id}.png"
    assert set(np.unique(np.asarray(Image.open(saved)))) == {0, 1, 2, 3}

    (tmp_path / "bad").mkdir()
    bad = _label_png(tmp_path / "bad" / f"{image_id}.png", image, [0, 1, 7])
    with open(bad, "rb") as f:
        r = requests.put(f"{structures_server.url}/datastore/label", params={"image": image_id, "tag": "final"},
                         files={"label": (bad.name, f)}, data={"params": json.dumps({})}, timeout=60)
    assert r.status_code == 422, r.text[:300]
    detail = r.json()["detail"]
    assert "unexpected value(s) 7" in detail and "[0, 1, 2, 3]" in detail and "1 LV, 2 MYO, 3 LA" in detail
    assert set(np.unique(np.asarray(Image.open(saved)))) == {0, 1, 2, 3}  # the stored label is unchanged


def test_infer_through_monai_label_client_returns_three_structures(structures_server, tmp_path):
    image = sorted(structures_server.studies_dir.glob("image_*.png"))[0]
    client = MONAILabelClient(structures_server.url, tmpdir=str(tmp_path / "client"))
    result, params = client.infer("intrasense", image.name[: -len(".png")], {})
    label, _ = load(result)
    values = set(np.unique(label).tolist())
    assert values <= {0, 1, 2, 3}
    assert values == {0, 1, 2, 3}  # the banded model answers every structure
    assert params["label_names"] == NAMES
    assert set(params["label_colors"]) == set(NAMES)
    assert params["model"]["weights"] == "intrasense_1-LV_2-MYO_3-LA.pt" and "untrained" not in params
    # the untrained dsanet answers a label map of the same set (allowed in tests by untrained_infer allow)
    cine = sorted(structures_server.studies_dir.glob("cine_*.dcm"))[0]
    result, params = client.infer("dsanet", cine.name[: -len(".dcm")], {})
    label, _ = load(result)
    assert set(np.unique(label).tolist()) <= {0, 1, 2, 3} and params["label_names"] == NAMES
    assert params["untrained"] is True
