"""Writers of the synthetic data set: US DICOM read back, NIfTI/PNG labels, datastore layout, CLI, committed set."""

from __future__ import annotations

import json
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from usseg_models.cli.main import main as usseg_main
from usseg_models.data.dicom_writer import (
    US_IMAGE_STORAGE,
    US_MULTIFRAME_IMAGE_STORAGE,
    synthetic_identity,
    write_us_cine,
    write_us_image,
)
from usseg_models.data.sample_set import generate_sample_set
from usseg_models.data.synthetic import simulate_cine

SMALL = dict(seed=3, frames=4, cines=2, images=2, dicom_images=1, size=48, unlabeled=1)


@pytest.fixture(scope="module")
def sample_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("studies")
    return out, generate_sample_set(out, **SMALL)


def test_cine_dicom_reads_back_with_pydicom(tmp_path):
    cine = simulate_cine(num_frames=5, size=40, seed=1)
    identity = synthetic_identity(7, "cine_000")
    path = write_us_cine(tmp_path / "c.dcm", cine.frames_tyx(), cine.pixel_mm, cine.frame_time_ms, identity,
                         region_box=(2, 1, 37, 30), transducer_frequency_khz=2500)
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID == US_MULTIFRAME_IMAGE_STORAGE
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID == identity.sop_instance_uid
    assert ds.Modality == "US" and ds.PhotometricInterpretation == "MONOCHROME2" and ds.BitsAllocated == 8
    assert int(ds.NumberOfFrames) == 5 and (ds.Rows, ds.Columns) == (40, 40)
    assert float(ds.FrameTime) == pytest.approx(cine.frame_time_ms, abs=1e-3)
    assert ds.FrameIncrementPointer == 0x00181063
    assert int(ds.CineRate) == 30
    (region,) = ds.SequenceOfUltrasoundRegions
    assert region.PhysicalUnitsXDirection == region.PhysicalUnitsYDirection == 3
    assert region.PhysicalDeltaX == region.PhysicalDeltaY == pytest.approx(cine.pixel_mm / 10)
    assert (region.RegionLocationMinX0, region.RegionLocationMinY0) == (2, 1)
    assert (region.RegionLocationMaxX1, region.RegionLocationMaxY1) == (37, 30)
    assert region.RegionSpatialFormat == 1 and region.RegionDataType == 1
    assert ds.PatientID and ds.PatientName and ds.StudyInstanceUID and ds.SeriesInstanceUID
    assert len({ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID}) == 3
    np.testing.assert_array_equal(ds.pixel_array, cine.frames_tyx())


def test_single_frame_dicom_is_us_image_storage(tmp_path):
    image = simulate_cine(num_frames=1, size=40, targets=("lesion",), seed=2)
    path = write_us_image(tmp_path / "i.dcm", image.frames_tyx()[0], image.pixel_mm,
                          synthetic_identity(7, "imagedcm_000"))
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == US_IMAGE_STORAGE and ds.Modality == "US"
    assert "NumberOfFrames" not in ds
    np.testing.assert_array_equal(ds.pixel_array, image.image[:, :, 0].T)


def test_dicom_passes_the_dicom3tools_validator_when_installed(sample_set):
    # dciodvfy (Debian package dicom3tools) checks the files against the IODs of the standard.
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (apt-get install dicom3tools) not installed")
    out, _ = sample_set
    for name in ("cine_000.dcm", "imagedcm_000.dcm"):
        result = subprocess.run(["dciodvfy", str(out / name)], capture_output=True, text=True, timeout=60)
        report = result.stdout + result.stderr
        assert "Error" not in report, report
        assert ("USMultiFrameImage" if name.startswith("cine") else "USImage") in report


def test_uids_are_deterministic_and_distinct():
    a, b = synthetic_identity(0, "cine_000"), synthetic_identity(0, "cine_000")
    assert a == b
    others = [synthetic_identity(1, "cine_000"), synthetic_identity(0, "cine_001")]
    uids = {u.sop_instance_uid for u in [a, *others]} | {u.study_instance_uid for u in [a, *others]}
    assert len(uids) == 6
    assert all(pydicom.uid.UID(u).is_valid for u in uids)


def test_writer_rejects_bad_pixels(tmp_path):
    identity = synthetic_identity(0, "x")
    with pytest.raises(ValueError, match="uint8"):
        write_us_cine(tmp_path / "x.dcm", np.zeros((2, 8, 8), np.float32), 0.5, 33.3, identity)
    with pytest.raises(ValueError, match="3D"):
        write_us_cine(tmp_path / "x.dcm", np.zeros((8, 8), np.uint8), 0.5, 33.3, identity)
    with pytest.raises(ValueError, match="frame_time_ms"):
        write_us_cine(tmp_path / "x.dcm", np.zeros((2, 8, 8), np.uint8), 0.5, 0, identity)


def test_sample_set_layout_and_labels(sample_set):
    out, manifest = sample_set
    ids = [item["id"] for item in manifest["items"]]
    assert ids == ["cine_000", "cine_001", "image_000", "image_001", "imagedcm_000"]
    for name in ("cine_000.dcm", "cine_001.dcm", "image_000.png", "imagedcm_000.dcm", "manifest.json"):
        assert (out / name).is_file(), name
    # the last cine is unlabelled: truth kept aside, not in the datastore's labels
    assert not (out / "labels" / "final" / "cine_001.nii.gz").exists()
    assert (out / "truth" / "cine_001.nii.gz").is_file()
    cine_item = manifest["items"][1]
    assert cine_item["label"] is None and cine_item["labeled"] is False
    assert cine_item["truth_label"] == "truth/cine_001.nii.gz"
    png_label = np.asarray(Image.open(out / "labels" / "final" / "image_000.png"))
    assert png_label.dtype == np.uint8 and png_label.shape == (48, 48) and set(np.unique(png_label)) == {0, 1}
    assert manifest["seed"] == 3 and manifest["label_values"]["1"].startswith("target")
    assert json.loads((out / "manifest.json").read_text()) == manifest


def test_nifti_label_matches_dicom_geometry_and_reproduces_from_manifest(sample_set):
    out, manifest = sample_set
    item = manifest["items"][0]
    ds = pydicom.dcmread(out / item["image"])
    label = nib.load(out / item["label"])
    assert label.shape == (ds.Columns, ds.Rows, int(ds.NumberOfFrames)) == (48, 48, 4)
    assert label.get_data_dtype() == np.uint8
    spacing_mm = ds.SequenceOfUltrasoundRegions[0].PhysicalDeltaX * 10
    np.testing.assert_allclose(label.affine, np.diag([spacing_mm, spacing_mm, 1, 1]))
    # the manifest is enough to regenerate the item exactly
    again = simulate_cine(4, 48, "sector", targets=tuple(item["targets"]),
                          seed=np.random.SeedSequence(item["seed_entropy"]))
    np.testing.assert_array_equal(np.asarray(label.dataobj), again.label)
    np.testing.assert_array_equal(ds.pixel_array, again.frames_tyx())
    np.testing.assert_allclose(item["truth"][0]["area_px"], again.truth[0].area_px, rtol=1e-4)
    dcm_label = nib.load(out / "labels" / "final" / "imagedcm_000.nii.gz")
    assert dcm_label.shape == (48, 48)


def test_sample_set_is_deterministic(sample_set, tmp_path):
    out, _ = sample_set
    generate_sample_set(tmp_path, **SMALL)
    for name in ("cine_000.dcm", "imagedcm_000.dcm", "image_001.png", "manifest.json"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name


def test_sample_set_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="unlabeled"):
        generate_sample_set(tmp_path, cines=1, unlabeled=2)
    with pytest.raises(ValueError, match="geometry"):
        generate_sample_set(tmp_path, geometry="phased")


def test_cli_writes_a_datastore_and_fails_cleanly(tmp_path, capsys):
    out = tmp_path / "s"
    rc = usseg_main(["sample-data", str(out), "--cines", "1", "--frames", "2", "--images", "1", "--dicom-images",
                     "0", "--size", "32", "--unlabeled", "0", "--geometry", "linear", "--studies-layout",
                     "--no-progress"])
    assert rc == 0
    assert (out / "cine_000.dcm").is_file() and (out / "labels" / "final" / "cine_000.nii.gz").is_file()
    assert json.loads((out / "manifest.json").read_text())["settings"]["geometry"] == "linear"
    rc = usseg_main(["sample-data", str(tmp_path / "t"), "--cines", "1", "--unlabeled", "3", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "unlabeled (3) cannot exceed" in err and "Traceback" not in err


def test_project_reader_loads_the_synthetic_dicom_and_label(sample_set):
    io = pytest.importorskip("usseg_models.io")
    out, manifest = sample_set
    item = manifest["items"][0]
    arr, meta = io.load_image(out / item["image"])
    again = simulate_cine(4, 48, "sector", targets=tuple(item["targets"]),
                          seed=np.random.SeedSequence(item["seed_entropy"]))
    assert arr.shape == (48, 48, 4)  # (X, Y, T)
    np.testing.assert_array_equal(arr, again.image)
    assert meta["num_frames"] == 4 and meta["modality"] == "US"
    assert meta["frame_time_ms"] == pytest.approx(again.frame_time_ms, abs=1e-3)
    np.testing.assert_allclose(np.asarray(meta["spacing"])[:2], [again.pixel_mm] * 2)
    label, label_meta = io.load_image(out / item["label"])
    np.testing.assert_array_equal(label, again.label)
    np.testing.assert_allclose(np.asarray(label_meta["affine"])[:3, :3], np.asarray(meta["affine"])[:3, :3])
    image2d, _ = io.load_image(out / "image_000.png")
    assert image2d.shape == (48, 48)


def test_committed_sample_data_is_small_and_complete(repo_root):
    studies = repo_root / "sample-data" / "studies"
    if not (studies / "manifest.json").is_file():
        pytest.skip("sample-data/studies not generated in this checkout")
    manifest = json.loads((studies / "manifest.json").read_text())
    total = sum(p.stat().st_size for p in studies.rglob("*") if p.is_file())
    assert total <= 5 * 1024 * 1024
    for item in manifest["items"]:
        assert (studies / item["image"]).is_file()
        assert (studies / item["truth_label"]).is_file()
        assert (item["label"] is None) == (not item["labeled"])
    assert any(not item["labeled"] for item in manifest["items"])  # active learning has something to pick
    # the committed files are what the current simulator makes (regenerate sample-data when this fails);
    # pixels may differ by one grey level where floating-point rounding differs between platforms
    item = manifest["items"][0]
    settings = manifest["settings"]
    again = simulate_cine(settings["frames"], settings["size"], settings["geometry"], targets=tuple(item["targets"]),
                          seed=np.random.SeedSequence(item["seed_entropy"]))
    pixels = pydicom.dcmread(studies / item["image"]).pixel_array.astype(int)
    diff = np.abs(pixels - again.frames_tyx())
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    np.testing.assert_array_equal(np.asarray(nib.load(studies / item["truth_label"]).dataobj), again.label)
