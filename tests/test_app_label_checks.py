"""Unit tests of the label checks, header-only probing and decoded-size limits (no server)."""

from __future__ import annotations

import gzip
import os
import struct
import zlib

import nibabel as nib
import nrrd
import numpy as np
import pydicom
import pytest
from fastapi import HTTPException
from PIL import Image
from server_utils import SAMPLE_STUDIES

from monailabel_app.lib.input_limits import (
    LIMIT_ENV,
    check_decoded_size,
    check_result_fits,
    max_decoded_voxels,
    read_checked,
)
from monailabel_app.lib.label_checks import LabelMismatch, check_label
from usseg_models.io.formats import probe_header
from usseg_models.io.header import ImageHeader

IMAGE = ImageHeader("png", (96, 64), None, 1, 96 * 64)  # X = 96 columns, Y = 64 rows
CINE = ImageHeader("dicom", (96, 64), 24, 1, 96 * 64 * 24)
GREY = {"format": "nifti", "original_channel_dim": "no_channel"}


def png_with_size(path, width, height):
    """A tiny PNG whose IHDR declares ``width`` x ``height`` (grey, 8 bit) with almost no pixel data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))
    return path


def nifti_header_only(path, shape, dtype=np.uint8):
    """A ``.nii.gz`` whose header declares ``shape`` but which holds no voxel data."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_qform(np.eye(4), 1)
    raw = header.binaryblock + b"\x00" * 4
    path.write_bytes(gzip.compress(raw))
    return path


# ---- label checks --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("label", "image", "meta"),
    [
        (np.zeros((96, 64), np.uint8), IMAGE, GREY),
        (np.ones((96, 64), np.int16), IMAGE, GREY),
        (np.ones((96, 64), bool), IMAGE, GREY),
        (np.zeros((96, 64), np.float32), IMAGE, GREY),
        (np.full((96, 64), 255, np.uint8), IMAGE, {"format": "png", "original_channel_dim": "no_channel"}),
        (np.zeros((96, 64, 24), np.uint8), CINE, GREY),
    ],
)
def test_good_labels_pass(label, image, meta):
    result = check_label(label, meta, image)
    assert result["shape"] == list(label.shape)


@pytest.mark.parametrize(
    ("label", "image", "meta", "words"),
    [
        (np.zeros((96, 64, 7), np.uint8), CINE, GREY, ["7 frames", "24", "(96, 64, 24)"]),
        (np.zeros((48, 32, 24), np.uint8), CINE, GREY, ["(48, 32)", "(96, 64)"]),
        (np.zeros((96, 64), np.uint8), CINE, GREY, ["(96, 64)", "24 frames", "(96, 64, 24)"]),
        (np.zeros((64, 96), np.uint8), IMAGE, GREY, ["(64, 96)", "(96, 64)"]),  # transposed
        (np.zeros((17, 3), np.uint8), IMAGE, GREY, ["(17, 3)", "(96, 64)"]),
        (np.zeros((96, 64, 5), np.uint8), IMAGE, GREY, ["(96, 64, 5)", "2D"]),
        (np.full((96, 64), np.nan, np.float32), IMAGE, GREY, ["NaN"]),
        (np.full((96, 64), np.inf, np.float64), IMAGE, GREY, ["infinite"]),
        (np.full((96, 64), 0.5, np.float32), IMAGE, GREY, ["integers", "0.5"]),
        (np.arange(96 * 64).reshape(96, 64).astype(np.uint8), IMAGE, GREY, ["[0, 1]", "2, 3"]),
        (np.full((96, 64), 255, np.uint8), IMAGE, GREY, ["255"]),  # 0/255 only for PNG
        (np.full((96, 64), -1, np.int16), IMAGE, GREY, ["-1"]),
        (np.zeros((96, 64, 3), np.uint8), IMAGE, {"format": "png", "original_channel_dim": -1}, ["one channel"]),
    ],
)
def test_bad_labels_name_expected_and_got(label, image, meta, words):
    with pytest.raises(LabelMismatch) as err:
        check_label(label, meta, image)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_png_0_255_with_other_values_is_refused():
    label = np.zeros((96, 64), np.uint8)
    label[0, 0], label[0, 1] = 255, 1
    with pytest.raises(LabelMismatch, match="unexpected value"):
        check_label(label, {"format": "png", "original_channel_dim": "no_channel"}, IMAGE)


def test_label_set_of_the_model_is_used():
    label = np.full((96, 64), 2, np.uint8)
    assert check_label(label, GREY, IMAGE, allowed={0, 1, 2})["values"] == [2]
    with pytest.raises(LabelMismatch, match=r"\[0, 1\]"):
        check_label(label, GREY, IMAGE, allowed={1})


# ---- header probing --------------------------------------------------------------------------------------------
def test_probe_matches_the_reader_on_the_sample_studies():
    from usseg_models.io import load_image

    files = sorted(SAMPLE_STUDIES.glob("*.dcm")) + sorted(SAMPLE_STUDIES.glob("*.png"))
    files += sorted((SAMPLE_STUDIES / "labels" / "final").iterdir())
    assert files
    for path in files:
        header = probe_header(path)
        array, meta = load_image(path)
        spatial = array.shape[:2] + ((array.shape[2],) if array.ndim == 3 and array.shape[2] > 1 else ())
        assert header.xy == tuple(array.shape[:2]), path
        assert header.frames == (spatial[2] if len(spatial) == 3 else None), path
        assert header.elements == array.size, path


def test_probe_formats(tmp_path):
    Image.fromarray(np.zeros((40, 70, 3), np.uint8)).save(tmp_path / "c.png")
    assert probe_header(tmp_path / "c.png") == ImageHeader("png", (70, 40), None, 3, 70 * 40 * 3)
    nib.save(nib.Nifti1Image(np.zeros((30, 20, 1), np.uint8), np.eye(4)), str(tmp_path / "s.nii.gz"))
    assert probe_header(tmp_path / "s.nii.gz") == ImageHeader("nifti", (30, 20), None, 1, 600)
    nrrd.write(str(tmp_path / "v.nrrd"), np.zeros((30, 20, 5), np.uint8))
    assert probe_header(tmp_path / "v.nrrd") == ImageHeader("nrrd", (30, 20), 5, 1, 3000, num_frames=5)


def test_probe_reads_only_the_header(tmp_path):
    # claims 20000 x 20000 x 1000 uint8 (400 GB) in a file of a few hundred bytes
    path = nifti_header_only(tmp_path / "huge.nii.gz", (20000, 20000, 1000))
    header = probe_header(path)
    assert header.frames == 1000 and header.elements == 20000 * 20000 * 1000


# ---- size limit, finiteness, result formats ---------------------------------------------------------------------
def test_size_limit_from_headers_gives_413(tmp_path, monkeypatch):
    monkeypatch.delenv(LIMIT_ENV, raising=False)
    cases = [
        nifti_header_only(tmp_path / "huge.nii.gz", (20000, 20000, 1000)),
        png_with_size(tmp_path / "huge.png", 60000, 60000),  # Pillow's own bomb check fires first
        png_with_size(tmp_path / "wide.png", 65535, 4096),
    ]
    ds = pydicom.dcmread(next(SAMPLE_STUDIES.glob("cine_*.dcm")))
    ds.Rows, ds.Columns, ds.NumberOfFrames = 4096, 4096, 1000
    ds.save_as(tmp_path / "huge.dcm")
    cases.append(tmp_path / "huge.dcm")
    for path in cases:
        with pytest.raises(HTTPException) as err:
            check_decoded_size(path, "upload")
        assert err.value.status_code == 413, (path.name, err.value.detail)
        assert "upload" in err.value.detail


def test_limit_is_configurable(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((40, 70), np.uint8)).save(tmp_path / "g.png")
    monkeypatch.setenv(LIMIT_ENV, "1000")
    assert max_decoded_voxels() == 1000
    with pytest.raises(HTTPException) as err:
        check_decoded_size(tmp_path / "g.png")
    assert err.value.status_code == 413 and "2,800" in err.value.detail and "1,000" in err.value.detail
    monkeypatch.setenv(LIMIT_ENV, "junk")
    assert max_decoded_voxels() == 2**28


def test_read_checked_refuses_nan_and_inf(tmp_path):
    for value in (np.nan, np.inf):
        arr = np.zeros((8, 8, 3), np.float32)
        arr[1, 2, 0] = value
        nib.save(nib.Nifti1Image(arr, np.eye(4)), str(tmp_path / "bad.nii.gz"))
        with pytest.raises(HTTPException) as err:
            read_checked(tmp_path / "bad.nii.gz", "image")
        assert err.value.status_code == 422 and "NaN or infinite" in err.value.detail
    nib.save(nib.Nifti1Image(np.ones((8, 8, 3), np.float32), np.eye(4)), str(tmp_path / "ok.nii.gz"))
    array, _, header = read_checked(tmp_path / "ok.nii.gz")
    assert array.shape == (8, 8, 3) and header.frames == 3


def test_unreadable_header_is_422(tmp_path):
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(HTTPException) as err:
        check_decoded_size(tmp_path / "x.png")
    assert err.value.status_code == 422


def test_nifti_result_dimension_limit():
    check_result_fits(".nii.gz", (32767, 2))
    check_result_fits(".png", (65535, 1))
    check_result_fits(".nrrd", (65535, 1, 3))
    with pytest.raises(HTTPException) as err:
        check_result_fits(".nii.gz", (65535, 1))
    assert err.value.status_code == 422 and ".nrrd" in err.value.detail


# ---- the DICOMweb datastore runs the same checks (series kept in its local cache) ------------------------------
class _FakeDicomWeb:
    base_url = "http://127.0.0.1:1/dicom-web"

    def search_for_series(self, search_filters=None):
        return [{}]


def test_dicomweb_datastore_checks_labels_and_uploads(tmp_path):
    import shutil

    from monailabel_app.lib.datastore import UltrasoundDicomWebDatastore

    store = UltrasoundDicomWebDatastore(_FakeDicomWeb(), {}, cache_path=str(tmp_path / "cache"))
    series = "1.2.826.0.1.3680043.8.498.1"
    folder = tmp_path / "cache" / os.path.basename(store._datastore_path) / series
    folder.mkdir(parents=True)
    cine = next(SAMPLE_STUDIES.glob("cine_*.dcm"))
    shutil.copy(cine, folder / "cine.dcm")
    x, y, t = probe_header(cine).xy + (probe_header(cine).frames,)
    labels = folder.parent / "labels" / "final"
    wrong = nib.Nifti1Image(np.zeros((x, y, t - 1), np.uint8), np.eye(4))
    nib.save(wrong, str(tmp_path / "wrong.nii.gz"))
    with pytest.raises(HTTPException) as err:
        store.save_label(series, str(tmp_path / "wrong.nii.gz"), "final", {})
    assert err.value.status_code == 422 and f"{t - 1} frames" in err.value.detail
    assert not list(labels.glob(f"{series}*"))
    nib.save(nib.Nifti1Image(np.ones((x, y, t), np.uint8), np.eye(4)), str(tmp_path / "good.nii.gz"))
    assert store.save_label(series, str(tmp_path / "good.nii.gz"), "final", {}) == series
    assert (labels / f"{series}.nii.gz").read_bytes() == (tmp_path / "good.nii.gz").read_bytes()
    nib.save(nib.Nifti1Image(np.full((8, 8, 3), np.nan, np.float32), np.eye(4)), str(tmp_path / "nan.nii.gz"))
    with pytest.raises(HTTPException) as err:
        store.add_image("nan_upload", str(tmp_path / "nan.nii.gz"), {})
    assert err.value.status_code == 422


def test_reviewed_frames_must_be_frames_of_the_cine():
    from monailabel_app.lib.label_checks import check_reviewed_frames

    cine = ImageHeader("dicom", (128, 128), 24, 1, 128 * 128 * 24, num_frames=24)
    image = ImageHeader("png", (64, 64), None, 1, 64 * 64)
    check_reviewed_frames({}, cine)
    check_reviewed_frames({"reviewed_frames": [0, 5, 23, 5]}, cine)
    for bad, words in [([24], "outside"), ([-1], "outside"), ([], "empty"), (["3"], "integers"), ([True], "integers"),
                       ("0,1", "list")]:
        with pytest.raises(LabelMismatch, match=words):
            check_reviewed_frames({"reviewed_frames": bad}, cine)
    with pytest.raises(LabelMismatch, match="cines"):
        check_reviewed_frames({"reviewed_frames": [0]}, image)
