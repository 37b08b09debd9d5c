"""``usseg train|evaluate|predict`` with several structures: ``--labels`` parsing, per-structure reports, label maps
with named segments; bad ``--labels`` is one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from usseg_models.cli.main import main
from usseg_models.data.synthetic_layered import simulate_layered_cine
from usseg_models.io.writers import write_png


@pytest.fixture(scope="module")
def camus_like(tmp_path_factory) -> Path:
    """Six CAMUS-named images (six patients) with 0/1/2/3 masks."""
    root = tmp_path_factory.mktemp("camus_like")
    c = simulate_layered_cine(6, 64, seed=7)
    for t in range(6):
        write_png(root / f"patient{t:04d}_2CH_ED.png", c.image[..., t], mode="labels")
        write_png(root / f"patient{t:04d}_2CH_ED_gt.png", c.label[..., t], mode="labels")
    return root


def _one_line_exit_2(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize("labels, message", [
    ("1:LV,1:MYO", "distinct"),
    ("LV,MYO", "expected 'value:name'"),
    ("0:background", "1..255"),
    ("1:LV,2:MYO", "label values [3] are not in the label set 1:LV,2:MYO"),  # the masks hold 3 too
])
def test_bad_labels_one_line_exit_2(camus_like, tmp_path, capsys, labels, message):
    err = _one_line_exit_2(capsys, ["train", "intrasense", "--model", "unet", "--data", str(camus_like),
                                    "--labels", labels, "--epochs", "1", "--out", str(tmp_path / "out"),
                                    "--device", "cpu", "--no-progress"])
    assert message in err, err


def test_labels_and_label_value_conflict(camus_like, tmp_path, capsys):
    err = _one_line_exit_2(capsys, ["train", "dsanet", "--data", str(camus_like), "--labels", "1:LV",
                                    "--label-value", "1", "--out", str(tmp_path / "o")])
    assert "not both" in err


def test_train_evaluate_predict_three_structures(camus_like, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "intrasense", "--model", "unet", "--data", str(camus_like), "--labels",
                 "1:LV,2:MYO,3:LA", "--epochs", "1", "--batch", "2", "--out", str(run), "--device", "cpu",
                 "--no-progress", "--val-fraction", "0.34"]) == 0
    out = capsys.readouterr().out
    assert "3 structures 1:LV,2:MYO,3:LA" in out
    ev = tmp_path / "eval"
    assert main(["evaluate", "intrasense", "--checkpoint", str(run / "best.pt"), "--data", str(camus_like),
                 "--out", str(ev), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "Dice per structure (1:LV,2:MYO,3:LA): LV " in out and " mean " in out
    metrics = json.loads((ev / "metrics.json").read_text())
    per = metrics["structures"]["no added noise"]
    assert list(per) == ["LV", "MYO", "LA", "mean"]
    assert per["mean"]["dice"] == pytest.approx(np.mean([per[n]["dice"] for n in ("LV", "MYO", "LA")]))
    assert metrics["rows"]["no added noise"]["dice"] == pytest.approx(per["mean"]["dice"])
    header = (ev / "per_image.csv").read_text().splitlines()[0]
    assert header.endswith("dice_LV,dice_MYO,dice_LA")
    assert "## Per structure" in (ev / "report.md").read_text()

    pred = tmp_path / "pred"
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes((camus_like / "patient0000_2CH_ED.png").read_bytes())
    assert main(["predict", "intrasense", "--checkpoint", str(run / "best.pt"), "--input", str(src), "--output",
                 str(pred), "--format", "seg.nrrd", "--device", "cpu", "--no-progress"]) == 0
    import nrrd

    data, header = nrrd.read(str(pred / "a.seg.nrrd"))
    names = {header[f"Segment{i}_Name"]: int(header[f"Segment{i}_LabelValue"]) for i in range(3)}
    assert names == {"LV": 1, "MYO": 2, "LA": 3}
    assert set(np.unique(data).tolist()) <= {0, 1, 2, 3}
    assert main(["predict", "intrasense", "--checkpoint", str(run / "best.pt"), "--input", str(src), "--output",
                 str(tmp_path / "png"), "--format", "png", "--device", "cpu", "--no-progress"]) == 0
    from PIL import Image

    values = set(np.unique(np.asarray(Image.open(tmp_path / "png" / "a.png"))).tolist())
    assert values <= {0, 1, 2, 3}  # label values, not 0/255
