"""Training engine: DSANet small learns, checkpoints reload, curves PNG, schedule, splits."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image
from test_training_data import Discs, all_foreground_dice

from usseg_models.metrics import dice
from usseg_models.networks.checkpoint import load_checkpoint
from usseg_models.training import holdout_split, kfold_splits, train_dsanet
from usseg_models.training.schedule import warmup_cosine_lambda


@pytest.fixture(scope="module")
def dsanet_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dsanet_run")
    train, val = Discs(16, clip=True, seed=0), Discs(8, clip=True, seed=1)
    result = train_dsanet((train, val), out, config="small", epochs=4, batch_size=2, lr=1e-3, progress=False,
                          device="cpu")
    return result, val, out


def test_dsanet_small_learns(dsanet_run):
    # Bar: the best constant predictor (every pixel foreground) scores all_foreground_dice (~0.2 on these discs);
    # an untrained net scores at most that. After 4 short epochs the net must beat it by 0.3 Dice and reach 0.6.
    result, val, _ = dsanet_run
    trivial = all_foreground_dice(val)
    assert result["best_dice"] >= trivial + 0.3
    assert result["best_dice"] >= 0.6
    assert result["best_dice"] > result["initial_val_dice"] + 0.2
    assert len(result["history"]) == 4
    assert all(math.isfinite(h["train_loss"]) for h in result["history"])


def test_checkpoints_reload_and_reproduce(dsanet_run):
    result, val, out = dsanet_run
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()
    model, payload = load_checkpoint(out / "best.pt")
    assert payload["network"] == "dsanet" and payload["extra"]["epoch"] == result["best_epoch"]
    model.eval()
    with torch.no_grad():
        x = torch.stack([it["image"] for it in val])
        pred = model(x) > 0
    g = torch.stack([it["label"][0] for it in val])
    assert dice(pred, g) == pytest.approx(result["best_dice"], abs=1e-4)
    hist = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in hist["history"]] == [1, 2, 3, 4]


def test_curves_png_is_valid(dsanet_run):
    result, _, out = dsanet_run
    png = out / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as im:
        im.verify()
    assert result["curves"] == png


def test_warmup_cosine_schedule():
    fn = warmup_cosine_lambda(total_steps=10, warmup_steps=2, base_lr=1e-4, min_lr=1e-6)
    assert fn(0) == pytest.approx(0.5) and fn(1) == pytest.approx(1.0)
    assert fn(2) == pytest.approx(1.0)
    assert fn(9) == pytest.approx(1e-2)  # min_lr / base_lr at the last step
    vals = [fn(s) for s in range(2, 10)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))
    with pytest.raises(ValueError):
        warmup_cosine_lambda(10, 2, 1e-4, 1e-3)


class _Rec:
    def __init__(self, i, subject):
        self.id, self.subject = f"img{i}", subject


def test_kfold_disjoint_cover_and_by_subject():
    recs = [_Rec(i, f"s{i // 3}") for i in range(20)]  # 7 subjects, 3 images each (last has 2)
    splits = kfold_splits(recs, folds=5, by_subject=True, seed=3)
    vals = [set(v) for _, v in splits]
    assert set().union(*vals) == set(range(20))
    assert sum(len(v) for v in vals) == 20  # disjoint
    for tr, va in splits:
        assert set(tr) | set(va) == set(range(20)) and not set(tr) & set(va)
        assert not {recs[i].subject for i in tr} & {recs[i].subject for i in va}
    flat = kfold_splits(recs, folds=5, by_subject=False)
    assert sorted(len(v) for _, v in flat) == [4, 4, 4, 4, 4]
    with pytest.raises(ValueError):
        kfold_splits(recs[:3], folds=5, by_subject=True)


def test_holdout_by_subject():
    recs = [_Rec(i, f"s{i // 2}") for i in range(10)]
    tr, va = holdout_split(recs, 0.2, by_subject=True, seed=0)
    assert len(va) == 2 and not {recs[i].subject for i in tr} & {recs[i].subject for i in va}
    assert holdout_split(recs, 0.0) == (list(range(10)), [])
