"""Small DICOM files built with pydicom for cases the real set lacks (MONOCHROME1, 16-bit, big-endian, geometry).

``make_us_dicom`` is also imported by ``test_io_validate.py`` to build broken files.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixel_data_handlers.util import convert_color_space
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, RLELossless, generate_uid

from usseg_models.io import read_dicom

US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"


def make_us_dicom(
    path,
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    multi_frame: bool | None = None,
    big_endian: bool = False,
    bits_stored: int | None = None,
    modality: str = "US",
    **elements,
):
    """Write ``pixels`` ((T,) rows, columns[, 3]) as an uncompressed US DICOM; ``elements`` override/add tags."""
    pixels = np.asarray(pixels)
    colour = photometric in ("RGB", "YBR_FULL")
    frames_axis = pixels.ndim == (4 if colour else 3)
    multi_frame = frames_axis if multi_frame is None else multi_frame
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = US_MULTIFRAME
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRBigEndian if big_endian else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.is_little_endian, ds.is_implicit_VR = not big_endian, False
    ds.preamble = b"\0" * 128
    ds.SOPClassUID, ds.SOPInstanceUID = US_MULTIFRAME, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = modality
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if colour else pixels.shape[-2:]
    if multi_frame:
        ds.NumberOfFrames = pixels.shape[0] if frames_axis else 1
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored = bits, bits_stored or bits
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if np.issubdtype(pixels.dtype, np.signedinteger) else 0
    order = ">" if big_endian else "<"
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder(order)).tobytes()
    for key, value in elements.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    ds.save_as(str(path), write_like_original=False)
    return path


def _region(dx_cm: float, dy_cm: float, units: int = 3, spatial_format: int = 1) -> Dataset:
    r = Dataset()
    r.RegionSpatialFormat, r.RegionDataType = spatial_format, 1
    r.PhysicalUnitsXDirection, r.PhysicalUnitsYDirection = units, units
    r.PhysicalDeltaX, r.PhysicalDeltaY = dx_cm, dy_cm
    return r


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_monochrome2_layout_and_values(tmp_path, rng):
    frames = rng.integers(0, 256, size=(4, 12, 20), dtype=np.uint8)  # T, rows, columns
    arr, meta = read_dicom(make_us_dicom(tmp_path / "m2.dcm", frames, FrameTime="40"))
    assert arr.shape == (20, 12, 4) and arr.dtype == np.uint8
    np.testing.assert_array_equal(arr, frames.transpose(2, 1, 0))
    assert meta["num_frames"] == 4 and meta["frame_time_ms"] == 40.0
    assert tuple(meta["spatial_shape"]) == (20, 12, 4) and meta["original_channel_dim"] == "no_channel"
    assert (meta["rows"], meta["columns"]) == (12, 20)


@pytest.mark.parametrize("dtype,bits_stored", [(np.uint8, 8), (np.uint16, 12), (np.uint16, 16)])
def test_monochrome1_is_inverted(tmp_path, rng, dtype, bits_stored):
    frame = rng.integers(0, 2**bits_stored, size=(10, 14)).astype(dtype)
    arr, meta = read_dicom(make_us_dicom(tmp_path / "m1.dcm", frame, "MONOCHROME1", bits_stored=bits_stored))
    assert arr.dtype == dtype and arr.shape == (14, 10)
    np.testing.assert_array_equal(arr, ((2**bits_stored - 1) - frame.astype(np.int64)).T)
    assert meta["num_frames"] is None and meta["photometric_interpretation"] == "MONOCHROME1"


def test_monochrome1_signed(tmp_path, rng):
    frame = rng.integers(-2000, 2000, size=(6, 8)).astype(np.int16)
    arr, _ = read_dicom(make_us_dicom(tmp_path / "m1s.dcm", frame, "MONOCHROME1"))
    np.testing.assert_array_equal(arr, (-1 - frame.astype(np.int32)).T)


def test_big_endian_16_bit(tmp_path, rng):
    frames = rng.integers(0, 65536, size=(2, 9, 7)).astype(np.uint16)
    path = make_us_dicom(tmp_path / "be.dcm", frames, big_endian=True)
    arr, meta = read_dicom(path)
    assert arr.dtype.isnative and arr.dtype == np.uint16
    np.testing.assert_array_equal(arr, frames.transpose(2, 1, 0))
    assert meta["transfer_syntax_uid"] == ExplicitVRBigEndian and meta["bits_allocated"] == 16


def test_one_frame_multiframe_keeps_t_axis(tmp_path, rng):
    frame = rng.integers(0, 256, size=(5, 6, 3), dtype=np.uint8)
    arr, meta = read_dicom(make_us_dicom(tmp_path / "one.dcm", frame, "RGB", multi_frame=True))
    assert arr.shape == (6, 5, 1, 3) and meta["num_frames"] == 1 and meta["original_channel_dim"] == -1
    np.testing.assert_array_equal(arr[:, :, 0], frame.transpose(1, 0, 2))


def test_ybr_full_native_and_grayscale_luma(tmp_path, rng):
    frame = rng.integers(16, 240, size=(8, 10, 3), dtype=np.uint8)
    path = make_us_dicom(tmp_path / "ybr.dcm", frame, "YBR_FULL")
    arr, _ = read_dicom(path)
    np.testing.assert_array_equal(arr, convert_color_space(frame, "YBR_FULL", "RGB").transpose(1, 0, 2))
    grey, meta = read_dicom(path, grayscale=True)
    rgb = arr.astype(np.float64)
    expected = np.rint(0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]).astype(np.uint8)
    np.testing.assert_array_equal(grey, expected)
    assert meta["original_channel_dim"] == "no_channel"


def test_rle_roundtrip(tmp_path, rng):
    frames = rng.integers(0, 4, size=(3, 16, 16), dtype=np.uint8) * 60
    path = make_us_dicom(tmp_path / "plain.dcm", frames)
    ds = pydicom.dcmread(path)
    ds.compress(RLELossless, frames)
    ds.save_as(tmp_path / "rle.dcm")
    arr, meta = read_dicom(tmp_path / "rle.dcm")
    assert meta["transfer_syntax_uid"] == RLELossless
    np.testing.assert_array_equal(arr, frames.transpose(2, 1, 0))


@pytest.mark.parametrize(
    "elements,expected,source",
    [
        ({"SequenceOfUltrasoundRegions": Sequence([_region(0.02, 0.03)])}, (0.2, 0.3), "ultrasound_regions"),
        (  # a Doppler (spectral) region first, the 2D tissue region wins; PixelSpacing ignored
            {
                "SequenceOfUltrasoundRegions": Sequence([_region(0.5, 0.7, spatial_format=3), _region(0.04, 0.05)]),
                "PixelSpacing": [9, 9],
            },
            (0.4, 0.5),
            "ultrasound_regions",
        ),
        (  # regions not in cm -> PixelSpacing [row, column] = [Y, X]
            {"SequenceOfUltrasoundRegions": Sequence([_region(1.0, 1.0, units=4)]), "PixelSpacing": [0.25, 0.5]},
            (0.5, 0.25),
            "pixel_spacing",
        ),
        ({}, (1.0, 1.0), "default"),
    ],
)
def test_spacing_rules(tmp_path, elements, expected, source):
    path = make_us_dicom(tmp_path / "sp.dcm", np.zeros((2, 4, 5), np.uint8), **elements)
    _, meta = read_dicom(path)
    assert meta["spacing_source"] == source
    np.testing.assert_allclose(meta["spacing"], [*expected, 1.0])
    np.testing.assert_allclose(meta["affine"], np.diag([*expected, 1.0, 1.0]))


@pytest.mark.parametrize(
    "elements,expected",
    [({"FrameTimeVector": [0, 20, 30, 40]}, 30.0), ({"CineRate": 25}, 40.0), ({}, None)],
)
def test_frame_time_sources(tmp_path, elements, expected):
    _, meta = read_dicom(make_us_dicom(tmp_path / "ft.dcm", np.zeros((4, 3, 3), np.uint8), **elements))
    assert meta["frame_time_ms"] == expected
