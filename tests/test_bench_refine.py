"""``usseg bench refine``: frame placements, scoring of the uncorrected frames only, outputs, and bad input."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from usseg_models.bench.refine import distance_to_corrections, placed_frames


def test_placed_frames_spaced_and_bunched():
    assert placed_frames(91, 1, "spaced") == [46]
    assert placed_frames(91, 3, "spaced") == [15, 46, 76]
    assert placed_frames(91, 9, "spaced") == [5, 15, 25, 35, 46, 56, 66, 76, 86]
    assert placed_frames(10, 3, "spaced") == [2, 5, 8]
    assert placed_frames(10, 3, "bunched") == [3, 4, 5]
    assert placed_frames(91, 1, "bunched") == [45]
    with pytest.raises(ValueError):
        placed_frames(5, 6, "spaced")


def test_distance_to_corrections():
    assert distance_to_corrections(8, [2, 5]).tolist() == [2, 1, 0, 1, 1, 0, 1, 2]


def _write_clip(folder, clip_id: str, cine: np.ndarray, truth: np.ndarray) -> None:
    """A MONAI Label datastore item: ``<id>.nii.gz`` cine and ``labels/final/<id>.nii.gz`` masks."""
    import nibabel as nib

    (folder / "labels" / "final").mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(cine, np.eye(4)), folder / f"{clip_id}.nii.gz")
    nib.save(nib.Nifti1Image(truth, np.eye(4)), folder / "labels" / "final" / f"{clip_id}.nii.gz")


def _rows(path):
    return list(csv.DictReader(open(path)))


def refuses_missing_checkpoint(bench: str, tmp_path, capsys) -> str:
    """``usseg bench <bench> --quick --pretrained <missing> --out tmp_path/o`` exits 2 with an error naming the file
    and no traceback; returns that stderr (also used by ``test_bench_loop.py``)."""
    from usseg_models.cli.main import main

    missing = tmp_path / "base.pt"
    assert main(["bench", bench, "--quick", "--pretrained", str(missing), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no such checkpoint file" in err and str(missing) in err and "Traceback" not in err
    return err


def test_copy_scores_only_the_uncorrected_frames(tmp_path):
    from usseg_models.cli.main import main

    rng = np.random.default_rng(0)
    n = 10
    cine = np.repeat(rng.integers(0, 255, (32, 32, 1), dtype=np.uint8), n, axis=-1)
    a = np.zeros((32, 32), np.uint8)
    a[4:12, 4:12] = 1
    b = np.zeros((32, 32), np.uint8)
    b[18:28, 18:28] = 1
    _write_clip(tmp_path / "data", "static", cine, np.repeat(a[..., None], n, axis=-1))
    # mask a on frames 0-4, b (disjoint) on 5-9: k = 1 corrects frame 5 and copies b everywhere
    _write_clip(tmp_path / "data", "switch", cine, np.stack([a] * 5 + [b] * 5, axis=-1))
    out = tmp_path / "out"
    assert main(["bench", "refine", "--data", str(tmp_path / "data"), "--methods", "copy", "--ks", "1,3",
                 "--placements", "spaced", "--out", str(out)]) == 0
    rows = {(r["clip"], int(r["k"])): r for r in _rows(out / "refine.csv")}
    assert len(rows) == 4
    assert float(rows["static", 1]["dice"]) == 1.0 and float(rows["static", 3]["dice"]) == 1.0
    assert float(rows["static", 1]["iou"]) == 1.0 and float(rows["static", 1]["consecutive_dice"]) == 1.0
    assert rows["switch", 1]["corrected"] == "5"
    # 4 of the 9 uncorrected frames right: 0.444 (0.5 if the corrected frame were scored too)
    assert float(rows["switch", 1]["dice"]) == pytest.approx(4 / 9, abs=1e-4)
    # k = 3 corrects 2, 5, 8: frames 0, 1, 3 (a) and 6, 7, 9 (b) right, frame 4 (a, copied from 5: b) wrong
    assert rows["switch", 3]["corrected"] == "2 5 8"
    assert float(rows["switch", 3]["dice"]) == pytest.approx(6 / 7, abs=1e-4)
    bins = [r for r in _rows(out / "refine_distance.csv") if r["clip"] == "switch" and r["k"] == "1"]
    assert {r["distance"]: (int(r["frames_in_bin"]), float(r["dice"])) for r in bins} == {
        "1": (2, 0.5), "2-3": (4, 0.5), "4-7": (3, pytest.approx(1 / 3, abs=1e-4))}
    summary = (out / "summary.md").read_text()
    assert "## spaced corrected frames" in summary and "| copy |" in summary


@pytest.mark.slow
def test_bench_refine_quick_writes_every_output(tmp_path):
    from usseg_models.bench.refine import product_modes
    from usseg_models.cli.main import main

    out = tmp_path / "refine"
    assert main(["bench", "refine", "--quick", "--out", str(out)]) == 0
    rows = _rows(out / "refine.csv")
    methods = [*product_modes(), "copy", "fill", "flow"]
    assert len(rows) == 2 * 2 * len(methods)  # one clip x two placements x k in (1, 3) x methods
    assert {(r["placement"], int(r["k"]), r["method"]) for r in rows} == {
        (p, k, m) for p in ("spaced", "bunched") for k in (1, 3) for m in methods}
    for r in rows:
        assert 0.0 <= float(r["dice"]) <= 1.0 and 0.0 <= float(r["iou"]) <= float(r["dice"]) + 1e-9
        assert float(r["seconds"]) >= 0.0
        # fill has no gap with one frame or consecutive ones
        assert (r["applicable"] == "True") == (r["method"] != "fill" or (r["placement"], r["k"]) == ("spaced", "3"))
    assert _rows(out / "refine_distance.csv")
    assert (out / "base.pt").is_file()
    summary = (out / "summary.md").read_text()
    assert "## spaced corrected frames" in summary and "## bunched corrected frames" in summary
    assert (out / "refine.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_refine_refuses_a_missing_checkpoint_and_unreadable_data(tmp_path, capsys):
    from usseg_models.cli.main import main

    err = refuses_missing_checkpoint("refine", tmp_path, capsys)
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
    assert main(["bench", "refine", "--data", str(tmp_path / "nowhere"), "--methods", "copy",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "nowhere" in err
    assert main(["bench", "refine", "--methods", "copy,magic", "--out", str(tmp_path / "o")]) == 2
    assert "magic" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
