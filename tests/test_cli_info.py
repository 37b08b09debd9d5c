"""``usseg info``: the done-when files, other formats, JSON output and one-line errors without traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from usseg_models.cli.main import main


def test_info_ybr_cine(us_dicom_dir, capsys):
    assert main(["info", str(us_dicom_dir / "examples_ybr_color.dcm")]) == 0
    out = capsys.readouterr().out
    assert "frames:           30" in out and "240x320" in out
    assert "33.333 ms" in out and "YBR_FULL_422" in out and "JPEG Baseline" in out
    assert "0.510497 x 0.510497 mm (ultrasound_regions)" in out and "modality:         US" in out
    assert "1.2.840.114340.3.8251017118051.1.20160503.120850.2171" in out  # study UID


def test_info_palette_cine_subprocess(us_dicom_dir):
    proc = subprocess.run(
        [sys.executable, "-m", "usseg_models.cli.main", "info", str(us_dicom_dir / "US-PAL-8-10x-echo.dcm")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "frames:           10" in proc.stdout and "430x600" in proc.stdout and "76 ms" in proc.stdout
    assert "PALETTE COLOR" in proc.stdout and "RLE Lossless" in proc.stdout


def test_info_json(us_dicom_dir, capsys):
    assert main(["info", "--json", str(us_dicom_dir / "US-PAL-8-10x-echo.dcm")]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["num_frames"] == 10 and (meta["rows"], meta["columns"]) == (430, 600)
    assert meta["spatial_shape"] == [600, 430, 10] and meta["frame_time_ms"] == 76.0


def test_info_png(tmp_path, capsys):
    Image.fromarray(np.zeros((30, 50), np.uint8)).save(tmp_path / "f.png")
    assert main(["info", str(tmp_path / "f.png")]) == 0
    out = capsys.readouterr().out
    assert "30x50" in out and "format:           png" in out and "single-frame" in out


@pytest.mark.parametrize("content", [b"", b"hello, not an image" * 40])
def test_info_bad_input_one_line_no_traceback(tmp_path, content):
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(content)
    proc = subprocess.run(
        [sys.executable, "-m", "usseg_models.cli.main", "info", str(bad)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("usseg info: error:") and str(bad) in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_info_missing_file(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nope.dcm")]) == 2
    assert "file not found" in capsys.readouterr().err
