"""Evaluation: reports, overlays, CSV; figures agree with an independent recomputation; CLI exit codes."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from usseg_models.cli.main import main
from usseg_models.data.datasets import load_clip_arrays, load_image_arrays
from usseg_models.data.discovery import discover_clips, discover_images
from usseg_models.evaluation import evaluate_dsanet
from usseg_models.evaluation.common import parse_speckle
from usseg_models.evaluation.overlays import overlay_panel
from usseg_models.metrics import segmentation_metrics
from usseg_models.networks.checkpoint import save_checkpoint
from usseg_models.networks.factory import build_network


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from usseg_models.data.sample_set import generate_sample_set

    out = tmp_path_factory.mktemp("eval_data")
    generate_sample_set(out, frames=5, cines=2, images=3, dicom_images=0, size=64, unlabeled=0)
    return out


def _checkpoint(path, name):
    torch.manual_seed(0)
    return save_checkpoint(path, build_network(name, "small"), name, "small")


def test_dsanet_report_matches_predictor(data_dir, tmp_path):
    from usseg_models.inference.video import DSANetPredictor

    ckpt = _checkpoint(tmp_path / "dsanet.pt", "dsanet")
    out = tmp_path / "eval"
    result = evaluate_dsanet(ckpt, data_dir, out, speckle=(25, 20), device="cpu", overlay_clips=1, overlay_frames=2)
    assert list(result["rows"]) == ["no added noise", "speckle L=25 (mild)", "speckle L=20 (heavy)"]
    assert result["n_clips"] == 2 and result["n_frames"] == 10
    # independent recomputation of the clean row through the clip predictor
    torch.manual_seed(0)
    predictor = DSANetPredictor(build_network("dsanet", "small"), 64)
    preds, truths = [], []
    for rec in discover_clips(data_dir):
        cine, label = load_clip_arrays(rec)
        preds.append(np.moveaxis(predictor.predict_clip(cine), -1, 0))
        truths.append(np.moveaxis(label, -1, 0))
    ref = segmentation_metrics(np.concatenate(preds), np.concatenate(truths))
    clean = result["rows"]["no added noise"]
    for k in ("dice", "iou", "precision", "recall", "accuracy"):
        assert clean[k] == pytest.approx(ref[k], abs=1e-9), k
    assert clean["mae"] != result["rows"]["speckle L=20 (heavy)"]["mae"]  # the noise was applied
    report = (out / "report.md").read_text()
    assert "Table II" in report and "| speckle L=25 (mild) |" in report and "Temporal stability" in report
    assert len(result["overlays"]) == 2 and all(p.is_file() for p in result["overlays"])
    with Image.open(result["overlays"][0]) as im:
        assert im.size == (3 * 256, 256) and im.mode == "RGB"  # 64 px panels enlarged 4x for display
    rows = list(csv.DictReader((out / "per_clip.csv").open()))
    assert len(rows) == 6  # 2 clips x 3 noise settings
    assert json.loads((out / "metrics.json").read_text())["n_frames"] == 10


def test_image_report_csv_and_cli(data_dir, tmp_path, capsys):
    from usseg_models.inference.image import ImagePredictor

    ckpt = _checkpoint(tmp_path / "unet.pt", "unet")
    out = tmp_path / "eval_img"
    code = main(["evaluate", "intrasense", "--checkpoint", str(ckpt), "--data", str(data_dir), "--out", str(out),
                 "--device", "cpu"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "no added noise: dice" in printed and "report:" in printed
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    recs = discover_images(data_dir)
    assert [r["id"] for r in rows] == [r.id for r in recs]
    predictor = ImagePredictor.from_checkpoint(ckpt)
    for row, rec in zip(rows, recs):
        image, label = load_image_arrays(rec)
        ref = segmentation_metrics(predictor.predict(image), label)
        assert float(row["dice"]) == pytest.approx(ref["dice"], abs=1e-5)
        assert float(row["jaccard"]) == pytest.approx(ref["iou"], abs=1e-5)
    assert len(list((out / "overlays").glob("*.png"))) == 3
    assert "| Dice | Jaccard |" in (out / "report.md").read_text()


def test_evaluate_refuses_wrong_network_and_bad_speckle(data_dir, tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "unet.pt", "unet")
    assert main(["evaluate", "dsanet", "--checkpoint", str(ckpt), "--data", str(data_dir)]) == 2
    assert "holds a unet network" in capsys.readouterr().err
    assert main(["evaluate", "intrasense", "--checkpoint", str(tmp_path / "missing.pt"), "--data", "x"]) == 2
    with pytest.raises(ValueError):
        parse_speckle("25,abc")
    assert parse_speckle("25, 20") == (25.0, 20.0) and parse_speckle("") == ()


def test_overlay_panel_layout():
    img = np.zeros((6, 4), np.uint8)
    img[0, 0] = 255
    truth = np.zeros((6, 4), np.uint8)
    truth[1:3, 1:3] = 1
    panel = overlay_panel(img, truth, np.zeros((6, 4), np.uint8))
    assert panel.shape == (4, 18, 3)  # rows = Y, 3 panels of X columns
    assert tuple(panel[0, 0]) == (255, 255, 255)  # image (X=0, Y=0) at the top-left
    assert panel[1, 6 + 1, 1] > panel[1, 6 + 1, 0]  # truth shown in green in the second panel
    with pytest.raises(ValueError):
        overlay_panel(img, truth[:5], truth)
