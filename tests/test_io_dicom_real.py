"""Every real ultrasound DICOM in ``../shared/data/us_dicom`` reads as its MANIFEST says, with pydicom's pixels."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from monai.transforms import EnsureChannelFirstd, LoadImage, LoadImaged
from pydicom.pixel_data_handlers.util import apply_color_lut, convert_color_space

from usseg_models.io import UltrasoundDicomReader, read_dicom
from usseg_models.io.validate import check_decoder_available


def _manifest(us_dicom_dir: Path) -> dict[str, tuple[int, int, int]]:
    """File name -> (rows, columns, frames) from MANIFEST.txt lines ``name | class | RxC | frames=N | ...``."""
    entries = {}
    for line in (us_dicom_dir / "MANIFEST.txt").read_text().splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) > 4 and parts[0].endswith(".dcm") and parts[3].startswith("frames="):
            rows, cols = (int(v) for v in parts[2].split("x"))
            entries[parts[0]] = (rows, cols, int(parts[3].split("=")[1]))
    return entries


REAL_FILES = [
    "JPGLosslessP14SV1_1s_1f_8b.dcm", "OBXXXX1A.dcm", "OBXXXX1A_2frame.dcm", "OBXXXX1A_rle_2frame.dcm",
    "US-PAL-8-10x-echo.dcm", "US-RGB-8-epicard.dcm", "US1_J2KI.dcm", "US1_UNCR.dcm", "color-pl.dcm",
    "examples_jpeg2k.dcm", "examples_palette.dcm", "examples_rgb_color.dcm", "examples_ybr_color.dcm",
    "gdcm-US-ALOKA-16.dcm",
]


def _pydicom_reference(path: Path) -> np.ndarray:
    """pydicom's own decoding with its colour helpers, in pydicom's (T, rows, columns[, 3]) layout."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        arr = ds.pixel_array
    pi = ds.PhotometricInterpretation
    if pi in ("YBR_FULL", "YBR_FULL_422"):
        arr = convert_color_space(arr, pi, "RGB")
    elif pi == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    return arr


def test_manifest_lists_every_file(us_dicom_dir):
    listed = set(_manifest(us_dicom_dir))
    assert listed == {p.name for p in us_dicom_dir.glob("*.dcm")} == set(REAL_FILES)


@pytest.mark.parametrize("name", REAL_FILES)
def test_real_file_matches_manifest_and_pydicom(us_dicom_dir, name):
    path = us_dicom_dir / name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ts = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    try:
        check_decoder_available(ts, path)
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"decoder not installed here: {exc}")
    rows, cols, frames = _manifest(us_dicom_dir)[name]
    arr, meta = read_dicom(path)
    assert (meta["rows"], meta["columns"]) == (rows, cols)
    assert arr.shape[:2] == (cols, rows)
    if meta["num_frames"] is None:
        assert frames == 1 and arr.ndim in (2, 3) and tuple(meta["spatial_shape"]) == (cols, rows)
    else:
        assert meta["num_frames"] == frames == arr.shape[2]
    ref = _pydicom_reference(path)
    if meta["num_frames"] is not None and ref.ndim == arr.ndim - 1:
        ref = ref[None]
    spatial = arr.ndim - (1 if meta["original_channel_dim"] == -1 else 0)
    ref = ref.transpose(tuple(reversed(range(spatial))) + tuple(range(spatial, ref.ndim)))
    assert arr.dtype == ref.dtype
    np.testing.assert_array_equal(arr, ref)
    assert meta["modality"] == "US" and meta["sop_instance_uid"] and meta["study_instance_uid"]


def test_ybr_cine_metadata(us_dicom_dir):
    arr, meta = read_dicom(us_dicom_dir / "examples_ybr_color.dcm")
    assert arr.shape == (320, 240, 30, 3)
    assert meta["frame_time_ms"] == pytest.approx(33.333)
    assert meta["photometric_interpretation"] == "YBR_FULL_422"
    assert meta["spacing_source"] == "ultrasound_regions"
    ds = pydicom.dcmread(us_dicom_dir / "examples_ybr_color.dcm", stop_before_pixels=True)
    region = ds.SequenceOfUltrasoundRegions[0]
    np.testing.assert_allclose(meta["spacing"][:2], [region.PhysicalDeltaX * 10, region.PhysicalDeltaY * 10])
    assert meta["study_instance_uid"] == ds.StudyInstanceUID and meta["series_instance_uid"] == ds.SeriesInstanceUID


def test_palette_grayscale_is_bt601_luma_of_lut_rgb(us_dicom_dir):
    path = us_dicom_dir / "US-PAL-8-10x-echo.dcm"
    rgb, _ = read_dicom(path)
    grey, meta = read_dicom(path, grayscale=True)
    assert grey.shape == (600, 430, 10) and meta["frame_time_ms"] == 76.0
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    np.testing.assert_array_equal(grey, np.rint(0.299 * r + 0.587 * g + 0.114 * b).astype(rgb.dtype))


def test_load_image_integration(us_dicom_dir):
    path = str(us_dicom_dir / "examples_ybr_color.dcm")
    img = LoadImage(reader=UltrasoundDicomReader(grayscale=True), image_only=True, ensure_channel_first=True)(path)
    assert tuple(img.shape) == (1, 320, 240, 30)
    assert img.meta["frame_time_ms"] == pytest.approx(33.333)
    np.testing.assert_allclose(np.asarray(img.affine)[:2, :2], np.diag(img.meta["spacing"][:2]))
    reference, _ = read_dicom(path, grayscale=True)
    np.testing.assert_array_equal(img[0].numpy(), reference.astype(np.float32))


def test_load_imaged_integration_colour(us_dicom_dir):
    path = str(us_dicom_dir / "examples_rgb_color.dcm")
    data = LoadImaged("image", reader=UltrasoundDicomReader())({"image": path})
    data = EnsureChannelFirstd("image")(data)
    assert tuple(data["image"].shape) == (3, 320, 240)
    assert data["image"].meta["filename_or_obj"] == path


def test_reader_verify_suffix(us_dicom_dir, tmp_path):
    reader = UltrasoundDicomReader()
    no_suffix = tmp_path / "IM0001"
    no_suffix.write_bytes((us_dicom_dir / "color-pl.dcm").read_bytes())
    assert reader.verify_suffix(str(us_dicom_dir / "color-pl.dcm"))
    assert reader.verify_suffix(str(no_suffix))
    assert not reader.verify_suffix("frame.png")
    with pytest.raises(ValueError):
        UltrasoundDicomReader(grayscale="yes")


def test_error_messages_tell_frames_from_colour_channels(us_dicom_dir):
    """A single colour image is (X, Y, 3) and a 3-frame grey cine (X, Y, 3): the wording of the server's 422 must
    not let a user read the colour channels as frames."""
    from usseg_models.io.layout import describe_array

    arr, meta = read_dicom(us_dicom_dir / "OBXXXX1A.dcm")
    assert describe_array(arr, meta) == "one image of 800 x 600 px, 3 colour channels"
    arr, meta = read_dicom(us_dicom_dir / "OBXXXX1A_2frame.dcm")
    assert describe_array(arr, meta) == "a cine of 2 frame(s) of 800 x 600 px, 3 colour channels"
    grey = np.zeros((64, 48, 3), np.uint8)
    assert describe_array(grey, {"original_channel_dim": "no_channel"}) == "a cine of 3 frame(s) of 64 x 48 px"
