"""Bad-input matrix: every broken file raises UltrasoundIOError (one documented type) naming the problem."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
from pydicom import config as pydicom_config
from pydicom.encaps import encapsulate
from pydicom.pixel_data_handlers import numpy_handler, rle_handler
from test_io_synthetic import make_us_dicom

from usseg_models.errors import MissingDecoderError, UltrasoundIOError, UssegError
from usseg_models.io import LoadUltrasound, UltrasoundDicomReader, load_image, read_dicom, sniff_format, validate_dicom

FRAMES = np.arange(2 * 6 * 5, dtype=np.uint8).reshape(2, 6, 5)


def _expect(path, *words):
    with pytest.raises(UltrasoundIOError) as info:
        load_image(path)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word.lower() in message.lower(), message
    return info.value


def test_error_type_is_documented():
    assert issubclass(UltrasoundIOError, UssegError) and issubclass(UltrasoundIOError, ValueError)
    assert issubclass(MissingDecoderError, UltrasoundIOError)


def test_text_file_named_dcm(tmp_path):
    path = tmp_path / "report.dcm"
    path.write_text("patient report, not an image\n" * 20)
    _expect(path, "not a DICOM")


def test_unknown_bytes_and_empty_and_directory(tmp_path):
    (tmp_path / "blob").write_bytes(np.random.default_rng(1).bytes(700))
    _expect(tmp_path / "blob", "unrecognised")
    (tmp_path / "empty.png").write_bytes(b"")
    _expect(tmp_path / "empty.png", "empty")
    _expect(tmp_path, "directory")
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.dcm")


@pytest.mark.parametrize(
    "name,keep,words",
    [
        ("US1_UNCR.dcm", 600_000, ("pixel data has", "truncated")),  # native pixel data cut short
        ("examples_ybr_color.dcm", 150_000, ("truncated",)),  # encapsulated JPEG frames cut short
        ("US-PAL-8-10x-echo.dcm", 400_000, ("truncated",)),  # RLE frames cut short
        ("US1_UNCR.dcm", 200, ("truncated or corrupt header",)),  # cut inside the file meta
    ],
)
def test_truncated_real_files(us_dicom_dir, tmp_path, name, keep, words):
    path = tmp_path / f"cut_{name}"
    path.write_bytes((us_dicom_dir / name).read_bytes()[:keep])
    _expect(path, *words)


@pytest.mark.parametrize(
    "elements,words",
    [
        ({"PixelData": None}, ("no pixel data",)),
        ({"NumberOfFrames": 0}, ("zero frames",)),
        ({"BitsAllocated": 7}, ("BitsAllocated 7",)),
        ({"BitsStored": 12}, ("BitsStored 12", "BitsAllocated 8")),
        ({"Rows": 60}, ("pixel data has 60 bytes", "needs 600")),
        ({"NumberOfFrames": 3}, ("NumberOfFrames 3",)),
        ({"Columns": 0}, ("Columns must be >= 1",)),
        ({"PhotometricInterpretation": "HSV"}, ("PhotometricInterpretation 'HSV'",)),
        ({"PhotometricInterpretation": "RGB"}, ("SamplesPerPixel 1", "RGB")),
        ({"PhotometricInterpretation": "PALETTE COLOR"}, ("palette",)),
        ({"PixelRepresentation": 4}, ("PixelRepresentation",)),
    ],
)
def test_inconsistent_headers(tmp_path, elements, words):
    path = make_us_dicom(tmp_path / "bad.dcm", FRAMES, **elements)
    _expect(path, *words)


def test_bits_allocated_7_never_reaches_a_decoder(tmp_path, monkeypatch):
    """The header that aborted a MONAI Label server inside ITK is refused before any pixel decoding."""
    path = make_us_dicom(tmp_path / "bits7.dcm", FRAMES, BitsAllocated=7)
    import pydicom.dataset

    def _boom(self):
        raise AssertionError("pixel data decoding was attempted")

    monkeypatch.setattr(pydicom.dataset.Dataset, "convert_pixel_data", _boom)
    with pytest.raises(UltrasoundIOError, match="BitsAllocated 7"):
        read_dicom(path)
    with pytest.raises(UltrasoundIOError, match="BitsAllocated 7"):
        UltrasoundDicomReader().read(str(path))
    with pytest.raises(UltrasoundIOError, match="BitsAllocated 7"):
        LoadUltrasound()(path)


def test_unsupported_transfer_syntax(tmp_path):
    path = make_us_dicom(tmp_path / "mpeg.dcm", FRAMES)
    import pydicom

    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 Main Profile
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 60])
    ds["PixelData"].is_undefined_length = True
    ds.save_as(path)
    _expect(path, "unsupported transfer syntax", "MPEG2")


@pytest.mark.parametrize(
    "name,package",
    [
        ("JPGLosslessP14SV1_1s_1f_8b.dcm", "python-gdcm"),
        ("examples_ybr_color.dcm", "pillow"),
        ("examples_jpeg2k.dcm", "openjpeg"),
    ],
)
def test_missing_decoder_names_the_package(us_dicom_dir, monkeypatch, name, package):
    monkeypatch.setattr(pydicom_config, "pixel_data_handlers", [numpy_handler, rle_handler])
    with pytest.raises(MissingDecoderError) as info:
        load_image(us_dicom_dir / name)
    assert "pip install" in str(info.value) and package in str(info.value)
    # the header alone is still readable (usseg info can say what is missing)
    assert validate_dicom(us_dicom_dir / name, check_decoder=False).Rows > 0


def test_non_us_modality_is_accepted_with_a_warning(tmp_path, caplog):
    path = make_us_dicom(tmp_path / "ct.dcm", FRAMES, modality="CT")
    with pytest.warns(UserWarning, match="modality is 'CT'"):
        arr, meta = load_image(path)
    assert arr.shape == (5, 6, 2) and meta["modality"] == "CT"
    assert any("not 'US'" in r.message for r in caplog.records)


def test_corrupt_png_jpeg_nifti_nrrd(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((40, 30), np.uint8)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    _expect(tmp_path / "cut.png", "corrupt or truncated")

    Image.fromarray(np.full((40, 30, 3), 100, np.uint8)).save(tmp_path / "ok.jpg")
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[:200])
    _expect(tmp_path / "cut.jpg", "corrupt or truncated")

    nib.save(nib.Nifti1Image(np.zeros((20, 20, 4), np.float32), np.eye(4)), tmp_path / "ok.nii")
    data = (tmp_path / "ok.nii").read_bytes()
    (tmp_path / "cut.nii").write_bytes(data[:1000])
    _expect(tmp_path / "cut.nii", "truncated")
    (tmp_path / "cut.nii.gz").write_bytes(gzip.compress(data)[:-300])
    _expect(tmp_path / "cut.nii.gz", "nifti")

    header = b"NRRD0004\ntype: uchar\ndimension: 3\nsizes: 4 4 4\nencoding: raw\n\n"
    (tmp_path / "bad.nrrd").write_bytes(header + b"\0" * 10)
    _expect(tmp_path / "bad.nrrd", "nrrd")


def test_sniff_format_ignores_misleading_suffix(tmp_path, us_dicom_dir):
    fake = tmp_path / "image.png"
    fake.write_bytes((us_dicom_dir / "color-pl.dcm").read_bytes())
    assert sniff_format(fake) == "dicom"
    arr, meta = load_image(fake)
    assert arr.shape == (256, 120, 3) and meta["format"] == "dicom"


@pytest.mark.parametrize(
    "ts,junk",
    [
        ("1.2.840.10008.1.2.4.50", b"\xff\xd8\xff\xe0"),  # JPEG baseline
        ("1.2.840.10008.1.2.4.70", b"\xff\xd8\xff\xc3"),  # JPEG lossless (python-gdcm)
        ("1.2.840.10008.1.2.4.90", b"\xff\x4f\xff\x51"),  # JPEG 2000
        ("1.2.840.10008.1.2.5", b""),  # RLE
    ],
)
def test_corrupt_compressed_frames_raise_cleanly(tmp_path, ts, junk):
    import pydicom

    path = make_us_dicom(tmp_path / "junk.dcm", FRAMES)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = ts
    noise = junk + np.random.default_rng(5).bytes(400)
    ds.PixelData = encapsulate([noise, noise])
    ds["PixelData"].is_undefined_length = True
    ds.save_as(path)
    try:
        from usseg_models.io.validate import check_decoder_available

        check_decoder_available(ts, path)
    except MissingDecoderError as exc:
        pytest.skip(str(exc))
    _expect(path, "could not be decoded")


def test_declared_size_over_limit(tmp_path, monkeypatch):
    from usseg_models.io import validate

    path = make_us_dicom(tmp_path / "big.dcm", FRAMES)
    assert load_image(path)[0].shape == (5, 6, 2)
    monkeypatch.setattr(validate, "MAX_DECODED_BYTES", FRAMES.nbytes - 1)
    _expect(path, "byte limit")
