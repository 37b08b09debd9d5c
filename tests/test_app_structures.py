"""The app with several structures per model, without a server: ``--conf labels`` parsing, the palette's colours,
one model file per label set (another set's checkpoint refused), label values in infer answers, label checks,
per-structure temporal uncertainty, and the one-line refusal to start on a bad label set."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from monailabel_app.lib.configs import IntraSenseConfig
from monailabel_app.lib.label_checks import LabelMismatch, check_label
from monailabel_app.lib.label_config import (
    LabelConfigError,
    check_checkpoint_labels,
    configured_labels,
    model_stem,
)
from monailabel_app.lib.model_store import ModelStore
from monailabel_app.lib.scoring.temporal import temporal_disagreement
from usseg_models import palette
from usseg_models.errors import CheckpointError
from usseg_models.io.header import ImageHeader
from usseg_models.labels import LabelSet, parse_labels
from usseg_models.networks.checkpoint import save_checkpoint
from usseg_models.networks.factory import build_network

THREE = "1:LV,2:MYO,3:LA"
IMAGE = ImageHeader("png", (12, 10), None, 1, 120)
GREY = {"format": "png", "original_channel_dim": "no_channel"}


# ---- --conf labels --------------------------------------------------------------------------------------------
def test_default_label_set_is_the_palette_one_structure():
    for model in ("dsanet", "intrasense"):
        labels = configured_labels({}, model, model)
        assert labels.is_binary and labels.out_channels == 1
        assert labels.label_names() == palette.label_names(model)
        assert labels.label_colors() == palette.label_colors(model)


def test_conf_labels_parsed_and_per_model_override():
    labels = configured_labels({"labels": THREE}, "dsanet", "dsanet")
    assert labels.values == (1, 2, 3) and labels.names == ("LV", "MYO", "LA") and labels.out_channels == 4
    # <model>_labels wins for that model only
    conf = {"labels": THREE, "intrasense_labels": "1:LV"}
    assert configured_labels(conf, "intrasense", "intrasense").label_names() == {"LV": 1}
    assert configured_labels(conf, "dsanet", "dsanet").num_structures == 3


@pytest.mark.parametrize("bad", ["1:LV,1:MYO", "0:bg,1:LV", "LV", "1:LV,2:LV", "300:X", "1:LV,2:"])
def test_bad_conf_labels_named_in_one_line(bad):
    with pytest.raises(LabelConfigError) as info:
        configured_labels({"labels": bad}, "dsanet", "dsanet")
    message = str(info.value)
    assert message.startswith(f"--conf labels {bad!r}: ") and "\n" not in message


def test_task_config_builds_the_network_for_its_label_set(tmp_path):
    config = IntraSenseConfig()
    config.init("intrasense", str(tmp_path / "model"), {"labels": THREE, "config": "small", "device": "cpu"}, None)
    assert config.labels == {"LV": 1, "MYO": 2, "LA": 3}
    assert set(config.label_colors) == {"LV", "MYO", "LA"}
    assert config.store.network.out_channels == 4
    assert config.store.trained_path.name == "intrasense_1-LV_2-MYO_3-LA.pt"
    info = config.infer()["intrasense"].info()
    assert info["label_names"] == {"LV": 1, "MYO": 2, "LA": 3} and info["network"]["out_channels"] == 4
    assert set(info["label_colors"]) == {"LV", "MYO", "LA"}


# ---- palette --------------------------------------------------------------------------------------------------
def test_palette_colours_known_structures_and_falls_back_by_position():
    labels = palette.colored(parse_labels("1:LV,2:myo,5:LA,7:other"))
    colors = labels.label_colors()
    assert colors["LV"] == palette.STRUCTURE_COLORS["lv"]
    assert colors["myo"] == palette.STRUCTURE_COLORS["myo"]  # names match without case
    assert colors["LA"] == palette.STRUCTURE_COLORS["la"]
    assert colors["other"] == palette.fallback_color(3)  # 4th structure in label-value order
    assert len(set(colors.values())) == 4
    # a colour the set carries is kept; the models' own classes keep their palette colour
    own = palette.colored(LabelSet((1,), ("LV",), ((0.1, 0.2, 0.3),)))
    assert own.label_colors() == {"LV": (0.1, 0.2, 0.3)}
    assert palette.colored(parse_labels("1:lesion")).label_colors() == palette.label_colors("dsanet")
    segments = palette.segments_from(labels.label_names(), labels.label_colors())
    assert [s["label_value"] for s in segments] == [1, 2, 5, 7]


# ---- model files per label set -----------------------------------------------------------------------------------
def test_model_stem_per_label_set():
    assert model_stem("dsanet", palette.label_set("dsanet")) == "dsanet"
    assert model_stem("dsanet", parse_labels("1:LV")) == "dsanet"
    assert model_stem("dsanet", parse_labels(THREE)) == "dsanet_1-LV_2-MYO_3-LA"
    assert model_stem("dsanet", parse_labels("1:LV cavity,2:MYO")) == "dsanet_1-LV-cavity_2-MYO"


def test_checkpoint_of_another_label_set_is_refused():
    three = parse_labels(THREE)
    old = {"network": "dsanet", "config": "small", "extra": {}}  # before label sets: one structure
    check_checkpoint_labels(old, palette.label_set("dsanet"), "old.pt")
    check_checkpoint_labels({"extra": {"labels": three.to_json()}}, three, "same.pt")
    with pytest.raises(CheckpointError, match=r"old\.pt was trained for the label set '1:foreground'.*'1:LV,2:MYO"):
        check_checkpoint_labels(old, three, "old.pt")
    swapped = parse_labels("1:MYO,2:LV,3:LA")
    with pytest.raises(CheckpointError, match="1:MYO,2:LV,3:LA"):
        check_checkpoint_labels({"extra": {"labels": swapped.to_json()}}, three, "swapped.pt")
    with pytest.raises(CheckpointError, match="1:LV,2:MYO,3:LA"):
        check_checkpoint_labels({"extra": {"labels": three.to_json()}}, palette.label_set("dsanet"), "x.pt")


def test_model_store_loads_its_label_set_and_refuses_another(tmp_path):
    three = palette.colored(parse_labels(THREE))
    store = ModelStore("intrasense", "small", tmp_path, "cpu", labels=three)
    assert store.network.out_channels == 4 and store.trained_path.name == "intrasense_1-LV_2-MYO_3-LA.pt"
    # a one-structure checkpoint put under this set's name: refused, initial weights kept, reason shown
    binary = build_network("intrasense", "small")
    save_checkpoint(store.trained_path, binary, "intrasense", "small")
    _, version = store.refresh()
    assert version["weights"] == "initial"
    assert store.refused["file"] == store.trained_path.name and "1:LV,2:MYO,3:LA" in store.refused["reason"]
    # a checkpoint of this set loads
    torch.manual_seed(3)
    net = build_network("intrasense", "small", out_channels=4)
    os.unlink(store.trained_path)
    save_checkpoint(store.trained_path, net, "intrasense", "small", overrides={"out_channels": 4},
                    extra={"labels": three.to_json()})
    _, version = store.refresh()
    assert version["weights"] == store.trained_path.name and store.refused is None
    for a, b in zip(store.network.state_dict().values(), net.state_dict().values()):
        assert torch.equal(a, b)
    # the default one-structure store keeps today's file name and never sees the three-structure file
    default = ModelStore("intrasense", "small", tmp_path, "cpu")
    assert default.trained_path.name == "intrasense.pt" and default.weights_path() is None


def test_uploaded_checkpoint_of_another_label_set_is_refused(tmp_path):
    from monailabel_app.lib.checkpoint_upload import validate_checkpoint

    three = palette.colored(parse_labels(THREE))
    store = ModelStore("intrasense", "small", tmp_path / "model", "cpu", labels=three)
    binary = save_checkpoint(tmp_path / "binary.pt", build_network("intrasense", "small"), "intrasense", "small")
    with pytest.raises(CheckpointError, match="'1:foreground'.*'1:LV,2:MYO,3:LA'"):
        validate_checkpoint(binary, store)
    net = build_network("intrasense", "small", out_channels=4)
    ours = save_checkpoint(tmp_path / "ours.pt", net, "intrasense", "small", overrides={"out_channels": 4},
                           extra={"labels": three.to_json()})
    assert validate_checkpoint(ours, store)["probe"] == "finite"


# ---- infer answers hold label values --------------------------------------------------------------------------
class _IndexPredictor:
    """A predictor that answers class indices (no label set of its own)."""

    def __init__(self, mask):
        self.mask = mask

    def predict(self, image):
        return self.mask


def test_infer_maps_class_indices_to_the_configured_values(tmp_path):
    config = IntraSenseConfig()
    config.init("intrasense", str(tmp_path / "model"), {"labels": "1:LV,2:MYO,4:LA", "config": "small"}, None)
    task = config.infer()["intrasense"]
    indices = np.array([[0, 1], [2, 3]], np.uint8)
    task._predictor = _IndexPredictor(indices)
    assert task.predict(None, np.zeros((2, 2))).tolist() == [[0, 1], [2, 4]]


def test_one_structure_infer_answers_zero_one_as_before(tmp_path):
    config = IntraSenseConfig()
    config.init("intrasense", str(tmp_path / "model"), {"config": "small"}, None)
    task = config.infer()["intrasense"]
    mask = np.array([[0, 1], [1, 0]], np.uint8)
    task._predictor = _IndexPredictor(mask)
    assert task.predict(None, np.zeros((2, 2))).tolist() == mask.tolist()


# ---- label checks ---------------------------------------------------------------------------------------------
def test_label_checks_accept_the_configured_values_and_refuse_others():
    allowed = parse_labels(THREE).allowed_values
    label = np.zeros((12, 10), np.uint8)
    label[:3], label[3:6], label[6:9] = 1, 2, 3
    assert check_label(label, GREY, IMAGE, allowed)["values"] == [0, 1, 2, 3]
    label[0, 0] = 7
    with pytest.raises(LabelMismatch) as info:
        check_label(label, GREY, IMAGE, allowed, "1 LV, 2 MYO, 3 LA")
    assert "unexpected value(s) 7" in str(info.value) and "[0, 1, 2, 3]" in str(info.value)
    assert "1 LV, 2 MYO, 3 LA" in str(info.value)
    # 0/255 PNG masks mean label 1 only for one structure
    mask = np.where(label > 1, 255, 0).astype(np.uint8)
    with pytest.raises(LabelMismatch, match="255"):
        check_label(mask, GREY, IMAGE, allowed)
    assert check_label(mask, GREY, IMAGE, {0, 1})["values"] == [0, 255]


# ---- per-structure uncertainty --------------------------------------------------------------------------------
def test_temporal_disagreement_per_structure():
    rng = np.random.default_rng(0)
    binary = (rng.random((16, 16, 5)) > 0.5).astype(np.uint8)
    assert temporal_disagreement(binary, values=(1,)) == temporal_disagreement(binary)  # one structure: unchanged
    # the mean over structures of each structure's own score
    two = np.where(binary == 1, 1, 2).astype(np.uint8)
    per_structure = [temporal_disagreement((two == v).astype(np.uint8)) for v in (1, 2)]
    assert temporal_disagreement(two, values=(1, 2)) == pytest.approx(np.mean(per_structure))
    # a structure identical on every frame counts as certain: it halves a flickering one's score
    still = binary.copy()
    still[:4, :4, :] = 2
    flicker = temporal_disagreement((still == 1).astype(np.uint8))
    assert flicker > 0.1
    assert temporal_disagreement(still, values=(1, 2)) == pytest.approx(flicker / 2)


# ---- a bad label set stops the server with one line ------------------------------------------------------------
def test_bad_labels_stop_the_app_with_one_line(tmp_path):
    from usseg_models.serving.launcher import prepare_app_dir

    app = prepare_app_dir(tmp_path / "app")
    (tmp_path / "studies").mkdir()
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('main', {str(app / 'main.py')!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        f"m.USSegApp({str(app)!r}, {str(tmp_path / 'studies')!r}, {{'labels': '1:LV,1:MYO', 'config': 'small'}})\n"
        "print('started')\n"
    )
    env = {**os.environ, "MONAI_LABEL_APP_DIR": str(app)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert lines == ["usseg app cannot start: --conf labels '1:LV,1:MYO': label values must be distinct, got [1, 1]"]


def test_infer_task_predictor_answers_the_configured_values(tmp_path):
    config = IntraSenseConfig()
    config.init("intrasense", str(tmp_path / "model"), {"labels": "1:LV,2:MYO,4:LA", "config": "small"}, None)
    task = config.infer()["intrasense"]
    image = np.random.default_rng(0).integers(0, 255, (40, 30), dtype=np.uint8)
    with config.store.lock:
        network, _ = config.store.refresh()
        label = task.predict(network, image)
    assert task._predictor.labels == config.store.labels
    assert label.shape == (40, 30) and label.dtype == np.uint8 and set(np.unique(label)) <= {0, 1, 2, 4}


# ---- training from the datastore with the label set ------------------------------------------------------------
def _study(folder, name, seed):
    """A 64 x 64 image whose three bright blobs are labelled 1, 2, 3 (labels/final/<name>.png)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 40, (64, 64)).astype(np.uint8)
    label = np.zeros((64, 64), np.uint8)
    for value, (r, c) in enumerate(((8, 8), (30, 36), (44, 12)), start=1):
        label[r:r + 14, c:c + 14] = value
        image[r:r + 14, c:c + 14] += np.uint8(60 * value)
    Image.fromarray(image).save(folder / f"{name}.png")
    Image.fromarray(label).save(folder / "labels" / "final" / f"{name}.png")


def test_training_from_the_datastore_with_three_structures(tmp_path):
    from monailabel_app.lib.datastore import SafeLocalDatastore
    from usseg_models.networks.checkpoint import read_checkpoint

    studies = tmp_path / "studies"
    (studies / "labels" / "final").mkdir(parents=True)
    for i in range(4):
        _study(studies, f"img_{i}", i)
    datastore = SafeLocalDatastore(str(studies), extensions=["*.png"])
    config = IntraSenseConfig()
    config.init("intrasense", str(tmp_path / "model"), {"labels": THREE, "config": "small", "device": "cpu"}, None)
    trainer = config.trainer()
    stats = trainer({"max_epochs": 2, "lr": 1e-3, "val_split": 0.5, "min_val_frames": 0}, datastore)
    assert stats["labels"] == THREE and stats["publish"] is True, stats
    assert stats["val_items"] and 0.0 <= stats["candidate_dice"] <= 1.0  # mean Dice over the three structures
    by_structure = stats["candidate_dice_by_structure"]                    # and each structure's, for the record
    assert list(by_structure) == ["LV", "MYO", "LA"]
    assert abs(sum(by_structure.values()) / 3 - stats["candidate_dice"]) < 1e-6
    published = config.store.trained_path
    assert published.name == "intrasense_1-LV_2-MYO_3-LA.pt" and published.is_file()
    payload = read_checkpoint(published)
    assert [d["name"] for d in payload["extra"]["labels"]] == ["LV", "MYO", "LA"]
    assert payload["state_dict"]["head.weight"].shape[0] == 4
    assert (tmp_path / "model" / "intrasense_1-LV_2-MYO_3-LA_train.json").is_file()
    assert not (tmp_path / "model" / "intrasense.pt").exists()
    _, version = config.store.refresh()
    assert version["weights"] == published.name
