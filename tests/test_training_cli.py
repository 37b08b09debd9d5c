"""``usseg train``: k-fold UNet baseline run from the CLI writes per-fold checkpoints and a CV summary."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from usseg_models.cli.main import main
from usseg_models.networks.checkpoint import load_checkpoint


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_train_intrasense_cli_kfold_unet(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for i in range(6):  # 3 subjects x 2 images, images/ + masks/ layout
        img = (rng.random((32, 32)) * 80).astype(np.uint8)
        mask = np.zeros((32, 32), np.uint8)
        mask[8 + i:20 + i, 6:18] = 255
        img[mask > 0] += 120
        _png(tmp_path / "data" / "images" / f"{i // 2:03d}_{i}.png", img)
        _png(tmp_path / "data" / "masks" / f"{i // 2:03d}_{i}.png", mask)
    out = tmp_path / "run"
    code = main(["train", "intrasense", "--data", str(tmp_path / "data"), "--model", "unet", "--folds", "3",
                 "--epochs", "1", "--batch", "2", "--out", str(out), "--device", "cpu", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "3-fold validation Dice" in printed
    summary = json.loads((out / "cv_summary.json").read_text())
    assert summary["folds"] == 3 and summary["by_subject"] and len(summary["fold_best_dice"]) == 3
    for k in range(3):
        model, payload = load_checkpoint(out / f"fold_{k}" / "best.pt")
        assert payload["network"] == "unet" and payload["extra"]["data"]["n_val"] == 2  # one subject per fold
        assert (out / f"fold_{k}" / "curves.png").is_file()


def test_train_cli_reports_bad_data(tmp_path, capsys):
    assert main(["train", "dsanet", "--data", str(tmp_path / "none"), "--epochs", "1", "--out", str(tmp_path)]) == 2
    assert "data folder not found" in capsys.readouterr().err


def test_train_dsanet_cli_on_frame_folders(tmp_path, capsys):
    # ASTR/VTUS-style frame folders, split folders train/ and val/ are used as given
    rng = np.random.default_rng(1)
    for split, videos in (("train", 2), ("val", 1)):
        for v in range(videos):
            for t in range(4):
                mask = np.zeros((48, 48), np.uint8)
                mask[10 + t:30 + t, 12:30] = 255
                img = (rng.random((48, 48)) * 60).astype(np.uint8) + (mask > 0) * 150
                _png(tmp_path / "data" / split / "frames" / f"v{v}" / f"{t}.jpg", img.astype(np.uint8))
                _png(tmp_path / "data" / split / "masks" / f"v{v}" / f"{t}.png", mask)
    out = tmp_path / "run"
    code = main(["train", "dsanet", "--data", str(tmp_path / "data"), "--epochs", "1", "--batch", "2",
                 "--out", str(out), "--device", "cpu", "--no-progress"])
    assert code == 0
    assert "best validation Dice" in capsys.readouterr().out
    hist = json.loads((out / "history.json").read_text())["history"]
    assert len(hist) == 1
    _, payload = load_checkpoint(out / "last.pt")
    assert payload["extra"]["data"]["split"] == "split folders" and payload["extra"]["data"]["n_val"] == 1
