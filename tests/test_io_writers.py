"""Label writers: data and geometry (spacing, origin, direction) round-trip through NIfTI, .seg.nrrd and PNG."""

from __future__ import annotations

import nibabel as nib
import nrrd
import numpy as np
import pytest
import slicerio

from usseg_models.io import load_image, read_dicom, write_label, write_nifti, write_png, write_seg_nrrd


def _rotated_affine() -> np.ndarray:
    """Oblique geometry: 20 degree in-plane rotation, anisotropic spacing, non-zero origin (float64 values)."""
    c, s = np.cos(np.deg2rad(20)), np.sin(np.deg2rad(20))
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([0.1, 0.3, 2.5])
    aff[:3, 3] = [12.3, -45.6, 7.89]
    return aff


@pytest.fixture
def cine_label():
    lab = np.zeros((24, 18, 4), np.uint8)
    for t in range(4):
        lab[3 + t : 10 + t, 5:12, t] = 1
    lab[15:20, 2:6, 2] = 2
    return lab


def test_seg_nrrd_roundtrip_exact_geometry(tmp_path, cine_label):
    aff = _rotated_affine()
    path = write_seg_nrrd(tmp_path / "lab.seg.nrrd", cine_label, aff, names={1: "lesion", 2: "vessel"})
    arr, meta = load_image(path)
    np.testing.assert_array_equal(arr, cine_label)
    np.testing.assert_array_equal(meta["affine"], aff)  # exact: 17 significant digits, LPS flip is exact
    np.testing.assert_array_equal(meta["spacing"], np.sqrt((aff[:3, :3] ** 2).sum(0)))


def test_seg_nrrd_is_read_by_slicerio(tmp_path, cine_label):
    aff = _rotated_affine()
    write_seg_nrrd(tmp_path / "lab.seg.nrrd", cine_label, aff,
                   segments=[{"label_value": 1, "name": "lesion", "color": (1.0, 0.0, 0.0)},
                             {"label_value": 2, "name": "vessel", "color": (0.0, 0.5, 1.0)}])
    seg = slicerio.read_segmentation(str(tmp_path / "lab.seg.nrrd"))
    names = {s["name"]: s for s in seg["segments"]}
    assert set(names) == {"lesion", "vessel"}
    assert names["lesion"]["labelValue"] == 1 and names["vessel"]["labelValue"] == 2
    np.testing.assert_allclose(names["vessel"]["color"], [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(names["vessel"]["extent"], [15, 19, 2, 5, 2, 2])
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ aff
    np.testing.assert_allclose(seg["ijkToLPS"], lps, atol=1e-12)
    voxels = seg["voxels"]
    assert voxels.shape == cine_label.shape and np.array_equal(voxels, cine_label)


def test_seg_nrrd_2d_label_has_three_dims(tmp_path):
    label = np.zeros((10, 8), np.uint8)
    label[2:5, 3:6] = 1
    write_seg_nrrd(tmp_path / "one.seg.nrrd", label, np.diag([0.2, 0.2, 1.0, 1.0]))
    header = nrrd.read_header(str(tmp_path / "one.seg.nrrd"))
    assert header["dimension"] == 3 and list(header["sizes"]) == [10, 8, 1]
    assert header["Segment0_LabelValue"] == "1" and header["Segment0_Layer"] == "0"
    assert header["Segment0_Extent"] == "2 4 3 5 0 0"
    arr, meta = load_image(tmp_path / "one.seg.nrrd")
    assert meta["one_slice"] and np.array_equal(arr, label)


def test_nifti_roundtrip_from_nifti_input_is_exact(tmp_path, cine_label):
    aff = _rotated_affine().astype(np.float32).astype(np.float64)  # what a NIfTI input's affine looks like
    nib.save(nib.Nifti1Image(np.zeros(cine_label.shape, np.int16), aff), tmp_path / "image.nii.gz")
    _, meta = load_image(tmp_path / "image.nii.gz")
    write_label(tmp_path / "label.nii.gz", cine_label, meta)
    arr, out_meta = load_image(tmp_path / "label.nii.gz")
    np.testing.assert_array_equal(arr, cine_label)
    np.testing.assert_array_equal(out_meta["affine"], meta["affine"])
    assert arr.dtype == np.uint8


def test_nifti_float64_affine_kept_to_float32_precision(tmp_path, cine_label):
    aff = _rotated_affine()
    write_nifti(tmp_path / "label.nii.gz", cine_label, aff)
    _, meta = load_image(tmp_path / "label.nii.gz")
    np.testing.assert_array_equal(meta["affine"], aff.astype(np.float32).astype(np.float64))


def test_one_slice_slicer_nifti_written_back_as_x_y_1(tmp_path):
    aff = np.array([[-0.5, 0, 0, 30.0], [0, -0.25, 0, 12.0], [0, 0, 1.0, -4.0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(np.zeros((16, 12, 1), np.uint8), aff), tmp_path / "slicer.nii.gz")
    image, meta = load_image(tmp_path / "slicer.nii.gz")
    assert image.shape == (16, 12) and meta["one_slice"]
    label = np.zeros(image.shape, np.uint8)
    label[4:9, 2:7] = 1
    write_label(tmp_path / "result.nii.gz", label, meta)
    written = nib.load(tmp_path / "result.nii.gz")
    assert written.shape == (16, 12, 1)
    np.testing.assert_array_equal(written.affine, aff)
    np.testing.assert_array_equal(np.asarray(written.dataobj)[:, :, 0], label)
    write_label(tmp_path / "result.seg.nrrd", label, meta)
    arr, nrrd_meta = load_image(tmp_path / "result.seg.nrrd")
    np.testing.assert_array_equal(nrrd_meta["affine"], aff)
    np.testing.assert_array_equal(arr, label)


def test_dicom_geometry_to_label_volume(tmp_path, us_dicom_dir):
    _, meta = read_dicom(us_dicom_dir / "examples_ybr_color.dcm", grayscale=True)
    label = np.zeros((320, 240, 30), np.uint8)
    label[100:150, 80:120, :] = 1
    write_label(tmp_path / "clip.seg.nrrd", label, meta)
    arr, out = load_image(tmp_path / "clip.seg.nrrd")
    np.testing.assert_array_equal(arr, label)
    np.testing.assert_array_equal(out["affine"], meta["affine"])
    np.testing.assert_array_equal(out["spacing"], meta["spacing"])


def test_png_modes(tmp_path):
    label = np.zeros((20, 14), np.uint8)  # (X, Y)
    label[3:8, 2:6] = 1
    label[10:12, 9:13] = 3
    binary, _ = load_image(write_png(tmp_path / "b.png", label))
    np.testing.assert_array_equal(binary, np.where(label > 0, 255, 0))
    values, meta = load_image(write_png(tmp_path / "v.png", label[:, :, None], mode="labels"))
    np.testing.assert_array_equal(values, label)
    assert (meta["rows"], meta["columns"]) == (14, 20)
    np.testing.assert_array_equal(load_image(write_label(tmp_path / "w.png", label, {}))[0], binary)


@pytest.mark.parametrize(
    "call",
    [
        lambda p: write_png(p / "x.png", np.full((4, 4), 300)),
        lambda p: write_png(p / "x.png", np.zeros((4, 4, 3))),
        lambda p: write_png(p / "x.png", np.zeros((4, 4)), mode="rgb"),
        lambda p: write_nifti(p / "x.nii.gz", np.full((4, 4), 0.5), np.eye(4)),
        lambda p: write_nifti(p / "x.nii.gz", np.zeros((4, 4)), np.eye(5)),
        lambda p: write_seg_nrrd(p / "x.seg.nrrd", np.ones((4, 4)), np.eye(4), segments=[{"label_value": 0}]),
        lambda p: write_label(p / "x.mha", np.zeros((4, 4)), {}),
    ],
)
def test_writer_argument_errors(tmp_path, call):
    with pytest.raises(ValueError):
        call(tmp_path)
