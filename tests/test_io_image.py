"""PNG/JPEG/NIfTI/NRRD reading through load_image, the one-slice Slicer NIfTI, and the MONAI transform pair."""

from __future__ import annotations

import nibabel as nib
import nrrd
import numpy as np
import pytest
import torch
from monai.transforms import LoadImage
from PIL import Image

from usseg_models.io import LoadUltrasound, LoadUltrasoundd, UltrasoundImageReader, load_image


@pytest.fixture
def rng():
    return np.random.default_rng(3)


def test_png_grey_rgb_rgba_palette_16bit(tmp_path, rng):
    grey = rng.integers(0, 256, size=(30, 40), dtype=np.uint8)  # rows=30, columns=40
    Image.fromarray(grey).save(tmp_path / "g.png")
    arr, meta = load_image(tmp_path / "g.png")
    assert arr.shape == (40, 30) and meta["original_channel_dim"] == "no_channel" and meta["format"] == "png"
    np.testing.assert_array_equal(arr, grey.T)
    assert (meta["rows"], meta["columns"]) == (30, 40) and meta["num_frames"] is None
    np.testing.assert_array_equal(meta["spacing"], [1.0, 1.0])

    rgb = rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    arr, meta = load_image(tmp_path / "c.png")
    assert arr.shape == (40, 30, 3) and meta["original_channel_dim"] == -1
    np.testing.assert_array_equal(arr, rgb.transpose(1, 0, 2))
    grey_arr, grey_meta = load_image(tmp_path / "c.png", grayscale=True)
    f = rgb.astype(np.float64)
    luma = np.rint(0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]).astype(np.uint8)
    np.testing.assert_array_equal(grey_arr, luma.T)
    assert grey_meta["original_channel_dim"] == "no_channel"

    rgba = np.concatenate([rgb, np.full((30, 40, 1), 7, np.uint8)], axis=-1)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_image(tmp_path / "a.png")[0], rgb.transpose(1, 0, 2))

    pal = Image.fromarray(grey).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.save(tmp_path / "p.png")
    expected = np.asarray(pal.convert("RGB")).transpose(1, 0, 2)
    np.testing.assert_array_equal(load_image(tmp_path / "p.png")[0], expected)

    deep = rng.integers(0, 65536, size=(30, 40)).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.png")
    arr, meta = load_image(tmp_path / "d.png")
    assert arr.dtype == np.uint16 and meta["bits_allocated"] == 16
    np.testing.assert_array_equal(arr, deep.T)


def test_jpeg(tmp_path):
    yy, xx = np.mgrid[0:32, 0:48]
    img = np.stack([xx * 5, yy * 7, np.full_like(xx, 90)], axis=-1).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "c.jpg", quality=95)
    arr, meta = load_image(tmp_path / "c.jpg")
    assert arr.shape == (48, 32, 3) and meta["format"] == "jpeg"
    assert np.abs(arr.astype(int) - img.transpose(1, 0, 2)).mean() < 3  # lossy, but the same picture


def test_real_png_datasets(shared_data):
    hc = sorted((shared_data / "hc18" / "images").glob("*.png"))[0]
    arr, meta = load_image(hc)
    with Image.open(hc) as im:
        width, height = im.size
    assert arr.shape[:2] == (width, height) and (meta["rows"], meta["columns"]) == (height, width)
    camus = sorted((shared_data / "camus_edes" / "test" / "images").glob("*.png"))[0]
    arr, _ = load_image(camus, grayscale=True)
    assert arr.ndim == 2 and arr.dtype == np.uint8


def _affine(spacing=(0.25, 0.5, 1.0), origin=(10.0, -20.0, 3.0)):
    aff = np.diag([*spacing, 1.0])
    aff[:3, 3] = origin
    return aff


def test_nifti_cine_and_one_slice(tmp_path, rng):
    cine = rng.integers(0, 255, size=(20, 16, 5)).astype(np.uint8)
    nib.save(nib.Nifti1Image(cine, _affine()), tmp_path / "cine.nii.gz")
    arr, meta = load_image(tmp_path / "cine.nii.gz")
    np.testing.assert_array_equal(arr, cine)
    assert meta["num_frames"] == 5 and not meta["one_slice"] and meta["format"] == "nifti"
    np.testing.assert_allclose(meta["affine"], _affine())
    np.testing.assert_allclose(meta["spacing"], [0.25, 0.5, 1.0])

    one = rng.random((20, 16, 1)).astype(np.float32)
    nib.save(nib.Nifti1Image(one, _affine()), tmp_path / "slice.nii.gz")
    arr, meta = load_image(tmp_path / "slice.nii.gz")
    assert arr.shape == (20, 16) and meta["one_slice"] is True and meta["num_frames"] is None
    np.testing.assert_array_equal(arr, one[:, :, 0])
    np.testing.assert_allclose(meta["affine"], _affine())
    np.testing.assert_allclose(meta["spacing"], [0.25, 0.5])


def test_nifti_rgb24_one_slice(tmp_path, rng):
    rgb = rng.integers(0, 256, size=(6, 5, 1, 3), dtype=np.uint8)
    structured = np.zeros((6, 5, 1), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    for i, c in enumerate("RGB"):
        structured[c] = rgb[..., i]
    nib.save(nib.Nifti1Image(structured, np.eye(4)), tmp_path / "rgb.nii")
    arr, meta = load_image(tmp_path / "rgb.nii")
    assert arr.shape == (6, 5, 3) and meta["one_slice"] and meta["original_channel_dim"] == -1
    np.testing.assert_array_equal(arr, rgb[:, :, 0])


def test_nrrd_lps_to_ras(tmp_path, rng):
    data = rng.integers(0, 4, size=(7, 9, 1)).astype(np.uint8)
    directions = np.array([[0.3, 0.0, 0.0], [0.0, 0.4, 0.0], [0.0, 0.0, 2.0]])
    header = {"space": "left-posterior-superior", "space directions": directions, "space origin": [1.0, 2.0, 3.0],
              "kinds": ["domain"] * 3}
    nrrd.write(str(tmp_path / "lab.seg.nrrd"), data, header)
    arr, meta = load_image(tmp_path / "lab.seg.nrrd")
    assert arr.shape == (7, 9) and meta["one_slice"] and meta["format"] == "nrrd"
    np.testing.assert_array_equal(arr, data[:, :, 0])
    expected = np.diag([-0.3, -0.4, 2.0, 1.0])
    expected[:3, 3] = [-1.0, -2.0, 3.0]
    np.testing.assert_allclose(meta["affine"], expected)


def test_nrrd_rgb_colour_axis_first(tmp_path, rng):
    data = rng.integers(0, 256, size=(3, 5, 4, 2), dtype=np.uint8)
    header = {"kinds": ["RGB-color", "domain", "domain", "domain"], "space": "right-anterior-superior",
              "space directions": [[np.nan] * 3, [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]}
    nrrd.write(str(tmp_path / "c.nrrd"), data, header)
    arr, meta = load_image(tmp_path / "c.nrrd")
    assert arr.shape == (5, 4, 2, 3) and meta["num_frames"] == 2 and meta["original_channel_dim"] == -1
    np.testing.assert_array_equal(arr, np.moveaxis(data, 0, -1))


def test_load_ultrasound_transforms(tmp_path, rng, us_dicom_dir):
    one = rng.integers(0, 255, size=(12, 10, 1)).astype(np.uint8)
    nib.save(nib.Nifti1Image(one, _affine()), tmp_path / "slice.nii.gz")
    img = LoadUltrasound(ensure_channel_first=True)(tmp_path / "slice.nii.gz")
    assert tuple(img.shape) == (1, 12, 10) and img.dtype == torch.float32
    assert img.meta["one_slice"] and torch.allclose(img.affine.double(), torch.as_tensor(_affine()))

    data = LoadUltrasoundd(["image", "label"], grayscale=True, dtype=None, image_only=False)(
        {"image": us_dicom_dir / "examples_ybr_color.dcm", "label": tmp_path / "slice.nii.gz", "other": 1}
    )
    assert tuple(data["image"].shape) == (320, 240, 30) and data["image"].dtype == torch.uint8
    assert data["image_meta_dict"]["frame_time_ms"] == pytest.approx(33.333)
    assert data["other"] == 1 and tuple(data["label"].shape) == (12, 10)

    img, meta = LoadUltrasound(image_only=False, dtype=None)(us_dicom_dir / "gdcm-US-ALOKA-16.dcm")
    assert img.dtype == torch.int32 and meta["original_channel_dim"] == -1  # uint16 palette RGB, values kept
    with pytest.raises(ValueError):
        LoadUltrasound(grayscale=1)


def test_image_reader_with_monai_load_image(tmp_path, rng):
    grey = rng.integers(0, 256, size=(8, 6), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    reader = UltrasoundImageReader()
    assert reader.verify_suffix(str(tmp_path / "g.png")) and not reader.verify_suffix("x.mha")
    img = LoadImage(reader=reader, ensure_channel_first=True)(str(tmp_path / "g.png"))
    assert tuple(img.shape) == (1, 6, 8)
    np.testing.assert_array_equal(img[0].numpy(), grey.T)


def test_load_ultrasoundd_batches_through_dataloader(tmp_path):
    from monai.data import DataLoader, Dataset

    for i in range(2):
        Image.fromarray(np.full((8, 6), i * 10, np.uint8)).save(tmp_path / f"c{i}.png")
    items = [{"image": str(tmp_path / f"c{i}.png")} for i in range(2)]
    loader = DataLoader(Dataset(items, transform=LoadUltrasoundd("image", ensure_channel_first=True, fill_none="none")),
                        batch_size=2, num_workers=0)
    batch = next(iter(loader))
    assert tuple(batch["image"].shape) == (2, 1, 6, 8)
    assert list(batch["image"].meta["num_frames"]) == ["none", "none"]
    assert batch["image"][1].max() == 10
