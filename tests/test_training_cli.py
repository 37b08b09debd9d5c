"""``usseg train``: k-fold UNet baseline run from the CLI writes per-fold checkpoints and a CV summary."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from usseg_models.cli.main import main
from usseg_models.networks.checkpoint import load_checkpoint, read_checkpoint


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


def _vtus_as_shipped(root, shared_data, test_frames: int = 6):
    """VTUS as its repository ships it: one training clip (``Train/0002`` + ``Train_GT/0002``) and one test clip
    (``Test/0004`` + ``Test_GT/0004``), here frames of the real clip 0002 (the test clip a copy of its first frames)."""
    src = shared_data / "vtus_clip0002"
    frames = sorted((src / "image" / "0002").glob("*.jpg"))[:12]
    for split, clip, chosen in (("Train", "0002", frames), ("Test", "0004", frames[:test_frames])):
        (root / split / clip).mkdir(parents=True)
        (root / f"{split}_GT" / clip).mkdir(parents=True)
        for f in chosen:
            (root / split / clip / f.name).write_bytes(f.read_bytes())
            mask = src / "mask" / "0002" / f"{f.stem}.png"
            (root / f"{split}_GT" / clip / mask.name).write_bytes(mask.read_bytes())
    return root


def test_train_dsanet_on_vtus_as_shipped_one_training_clip(shared_data, tmp_path, capsys, caplog):
    """One training clip: no hold-out is possible, so training runs without validation and says so (was a traceback
    from the split); ``--val-split test`` validates on the shipped Test clip instead."""
    data = _vtus_as_shipped(tmp_path / "VTUS", shared_data)
    out = tmp_path / "run"
    with caplog.at_level("WARNING"):
        code = main(["train", "dsanet", "--data", str(data), "--config", "small", "--epochs", "1", "--out", str(out),
                     "--device", "cpu", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "trained without validation" in printed and "--val-split test" in printed
    assert any("no validation hold-out" in r.getMessage() for r in caplog.records)
    data_info = read_checkpoint(out / "best.pt")["extra"]["data"]
    assert data_info["n_val"] == 0 and data_info["n_train"] == 1 and "no validation" in data_info["split"]

    out2 = tmp_path / "run_test_split"
    code = main(["train", "dsanet", "--data", str(data), "--config", "small", "--epochs", "1", "--out", str(out2),
                 "--device", "cpu", "--no-progress", "--val-split", "test"])
    assert code == 0
    assert "best validation Dice" in capsys.readouterr().out
    data_info = read_checkpoint(out2 / "best.pt")["extra"]["data"]
    assert data_info["n_val"] == 1 and data_info["split"] == "validation on the test split folders"
    assert np.isfinite(json.loads((out2 / "history.json").read_text())["history"][0]["val_dice"])


def test_val_split_test_without_a_test_folder_is_one_line(tmp_path, capsys):
    for i in range(2):
        _png(tmp_path / "data" / "images" / f"{i:03d}.png", np.full((32, 32), 60 + i, np.uint8))
        _png(tmp_path / "data" / "masks" / f"{i:03d}.png", np.zeros((32, 32), np.uint8))
    assert main(["train", "intrasense", "--data", str(tmp_path / "data"), "--val-split", "test", "--epochs", "1",
                 "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--val-split test" in err and "no test split folder" in err and "Traceback" not in err
