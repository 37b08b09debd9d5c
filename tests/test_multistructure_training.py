"""Several structures in the networks, training, validation and predictors; the one-structure path unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from usseg_models.data.datasets import ClipWindowDataset, ImageSegDataset
from usseg_models.data.records import ClipRecord, ImageRecord
from usseg_models.data.synthetic_layered import LAYERED_LABELS, simulate_layered_cine
from usseg_models.inference.image import ImagePredictor
from usseg_models.inference.video import DSANetPredictor
from usseg_models.io.writers import write_png
from usseg_models.labels import LabelSet
from usseg_models.metrics import per_structure_metrics
from usseg_models.networks import build_network
from usseg_models.networks.checkpoint import load_checkpoint
from usseg_models.training import train_dsanet, train_intrasense
from usseg_models.training.common import LabelOptionError, check_label_options, label_overrides
from usseg_models.training.engine import sample_dice


def _clip(root: Path, seed: int, frames: int = 12, binary: bool = False) -> tuple[ClipRecord, object]:
    c = simulate_layered_cine(frames, 64, seed=seed)
    label = (c.label == 1).astype(np.uint8) if binary else c.label
    fr = [write_png(root / f"c{seed}" / "f" / f"{t:03d}.png", c.image[..., t], mode="labels") for t in range(frames)]
    ms = [write_png(root / f"c{seed}" / "m" / f"{t:03d}.png", label[..., t], mode="labels") for t in range(frames)]
    return ClipRecord(f"c{seed}", tuple(fr), tuple(ms), f"s{seed}"), c


@pytest.mark.parametrize("name", ["dsanet", "intrasense", "unet"])
def test_networks_give_one_channel_per_structure_plus_background(name):
    overrides = label_overrides(LAYERED_LABELS, {})
    assert overrides == {"out_channels": 4}
    assert label_overrides(LabelSet.binary(), {}) == {}  # one structure: the configuration's single channel
    torch.manual_seed(0)
    net = build_network(name, "small", **overrides).eval()
    x = torch.randn(2, 3, 3, 64, 64) if name == "dsanet" else torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = net(x)
    assert out.shape == (2, 4, 64, 64)
    if name == "dsanet":
        predictor = DSANetPredictor(net, 64, labels=LabelSet((10, 20, 30), ("LV", "MYO", "LA")))
        cine = np.random.default_rng(0).integers(0, 255, (80, 70, 5), dtype=np.uint8)
        clip = predictor.predict_clip(cine)
        streamed = np.stack([m for _, m in predictor.stream(cine[:, :, t] for t in range(5))], axis=-1)
        assert clip.shape == streamed.shape == (80, 70, 5)
        # random weights give near-ties between channels: batch-size rounding may flip an argmax pixel (1 of 28000)
        assert (clip != streamed).mean() < 1e-3
    else:
        predictor = ImagePredictor(net, 64, labels=LabelSet((10, 20, 30), ("LV", "MYO", "LA")))
        clip = predictor.predict(np.random.default_rng(0).integers(0, 255, (80, 70), dtype=np.uint8))
        assert clip.shape == (80, 70)
    assert clip.dtype == np.uint8 and set(np.unique(clip).tolist()) <= {0, 10, 20, 30}
    with pytest.raises(ValueError, match="needs 1 output channel"):
        (DSANetPredictor if name == "dsanet" else ImagePredictor)(net, 64, labels=LabelSet.binary())
    default = (DSANetPredictor if name == "dsanet" else ImagePredictor)(net, 64)
    assert default.labels.values == (1, 2, 3)  # a 4-channel model without a stored set: values 1..3


def test_sample_dice_is_the_mean_over_structures():
    target = torch.zeros(1, 1, 4, 4)
    target[0, 0, :2, :2] = 1
    target[0, 0, 2:, 2:] = 2
    logits = torch.zeros(1, 3, 4, 4)
    logits[0, 0] = 1.0  # background everywhere ...
    logits[0, 1, :2, :2] = 5.0  # ... but structure 1 exactly right; structure 2 missed
    assert sample_dice(logits, target).tolist() == [0.5]
    binary = torch.full((1, 1, 4, 4), -1.0)
    binary[0, 0, :2, :2] = 1.0
    assert sample_dice(binary, (target == 1).float()).tolist() == [1.0]


def test_label_options():
    assert check_label_options(None, 2) is None
    assert check_label_options("auto", None) == "auto"
    assert check_label_options(" 2:MYO, 1:LV ", None).values == (1, 2)
    for bad in ("1:LV,1:MYO", "LV", "0:bg", "1:", "300:x"):
        with pytest.raises(LabelOptionError):
            check_label_options(bad, None)
    with pytest.raises(LabelOptionError, match="not both"):
        check_label_options("1:LV", 1)


def test_one_structure_label_set_trains_exactly_as_before(tmp_path):
    """Binary masks: ``labels=LabelSet.binary()`` and the old path give identical losses, Dice and predictions."""
    rec, cine = _clip(tmp_path, 0, frames=6, binary=True)
    runs = []
    for labels in (None, LabelSet.binary()):
        train = ClipWindowDataset([rec], 64, augment=True, labels=labels, seed=0)
        val = ClipWindowDataset([rec], 64, labels=labels)
        runs.append(train_dsanet((train, val), tmp_path / f"run_{labels is None}", config="small", epochs=2,
                                 batch_size=2, lr=1e-3, device="cpu", progress=False, seed=0))
    old, new = runs
    assert [h["train_loss"] for h in old["history"]] == [h["train_loss"] for h in new["history"]]
    assert [h["val_dice"] for h in old["history"]] == [h["val_dice"] for h in new["history"]]
    preds = [DSANetPredictor.from_checkpoint(r["best_checkpoint"]).predict_clip(cine.image) for r in runs]
    assert np.array_equal(preds[0], preds[1]) and set(np.unique(preds[0]).tolist()) <= {0, 1}
    _, payload = load_checkpoint(old["best_checkpoint"])
    assert payload["extra"]["labels"] == LabelSet.binary().to_json()
    assert "out_channels" not in payload["overrides"]


def test_three_structure_cine_beats_a_trivial_predictor_per_structure(tmp_path):
    """Small DSANet, 24 seeded steps on two layered cines, scored on a third: every structure well above the
    trivial predictors (all background: Dice 0; the structure everywhere: Dice 2|G| / (|G| + N))."""
    recs = [_clip(tmp_path, seed) for seed in range(3)]
    train = ClipWindowDataset([r for r, _ in recs[:2]], 64, labels=LAYERED_LABELS, seed=0)
    result = train_dsanet((train, None), tmp_path / "run", config="small", epochs=4, batch_size=4, lr=3e-3,
                          warmup_epochs=0, device="cpu", progress=False, seed=0)
    assert len(result["history"]) * 6 == 24  # 24 windows / batch 4 = 6 steps per epoch
    predictor = DSANetPredictor.from_checkpoint(result["last_checkpoint"])
    assert predictor.labels == LAYERED_LABELS
    truth = recs[2][1].label
    pred = predictor.predict_clip(recs[2][1].image)
    scores = per_structure_metrics(pred, truth, LAYERED_LABELS.label_names(), frame_axis=-1)
    for name, value in LAYERED_LABELS.label_names().items():
        g = (truth == value).sum(axis=(0, 1))
        everywhere = float(np.mean(2 * g / (g + truth[..., 0].size)))
        # measured: LV 0.89-0.95, MYO 0.71-0.74, LA 0.77-0.82 (trivial at most ~0.16)
        assert scores[name]["dice"] > max(everywhere, 0.0) + 0.35, (name, scores[name]["dice"], everywhere)
    assert scores["mean"]["dice"] > 0.6


def test_image_training_with_labels_auto_stores_the_set(tmp_path):
    c = simulate_layered_cine(4, 64, seed=5)
    recs = []
    for t in range(4):
        img = write_png(tmp_path / "img" / f"patient{t:04d}_2CH_ED.png", c.image[..., t], mode="labels")
        lab = write_png(tmp_path / "img" / f"patient{t:04d}_2CH_ED_gt.png", c.label[..., t], mode="labels")
        recs.append(ImageRecord(img.stem, img, (lab,), f"patient{t:04d}"))
    result = train_unet_like(tmp_path, "auto")
    assert result["labels"].describe() == "1:label_1,2:label_2,3:label_3"
    model, payload = load_checkpoint(result["best_checkpoint"])
    assert payload["overrides"]["out_channels"] == 4 and LabelSet.from_json(payload["extra"]["labels"]).values == (
        1, 2, 3)
    predictor = ImagePredictor.from_checkpoint(result["best_checkpoint"])
    assert set(np.unique(predictor.predict(c.image[..., 0])).tolist()) <= {0, 1, 2, 3}
    ds = ImageSegDataset(recs, 64, labels=LAYERED_LABELS)
    assert set(ds[0]["label"].unique().tolist()) == {0.0, 1.0, 2.0, 3.0}
    with pytest.raises(LabelOptionError, match="not both"):
        train_intrasense(tmp_path / "img", None, model="unet", labels="1:LV", label_value=1)


def train_unet_like(tmp_path: Path, labels):
    return train_intrasense(tmp_path / "img", tmp_path / "unet", model="unet", config="small", epochs=1,
                            batch_size=2, device="cpu", progress=False, labels=labels, val_fraction=0.5)


def test_validation_dice_by_structure_averages_to_validation_dice():
    import torch

    from usseg_models.training.engine import structure_dice, validation_dice, validation_dice_by_structure

    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (6, 1, 16, 16), generator=g).float()
    logits = torch.randn(6, 4, 16, 16, generator=g)
    logits[:3] += 8 * torch.nn.functional.one_hot(target[:3, 0].long(), 4).permute(0, 3, 1, 2)  # 3 perfect samples
    per = structure_dice(logits, target)
    assert per.shape == (6, 3) and np.allclose(per[:3], 1.0) and (per[3:] < 0.6).all()

    class Lookup(torch.nn.Module):  # "predicts" the stored logits of each sample index
        def forward(self, idx):
            return logits[idx]

    data = [{"image": torch.tensor(i), "label": target[i]} for i in range(6)]
    predict = lambda model, batch: (model(batch["image"]), batch["label"])  # noqa: E731
    by = validation_dice_by_structure(Lookup(), data, predict)
    assert len(by) == 3 and np.isclose(np.mean(by), validation_dice(Lookup(), data, predict))
    one = torch.randn(6, 1, 16, 16, generator=g)
    assert structure_dice(one, (target > 1).float()).shape == (6, 1)
