"""Dataset discovery for every supported layout, label binarisation, and consistent clip augmentation."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from usseg_models.data.datasets import ClipWindowDataset, ImageSegDataset
from usseg_models.data.discovery import discover_clips, discover_images
from usseg_models.data.records import DataLayoutError, binarize_label, subject_of


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)  # PIL takes (rows, cols) = (Y, X)


def _square(x0, size=32, value=255):
    a = np.zeros((size, size), np.uint8)
    a[4:14, x0:x0 + 6] = value  # asymmetric (10 rows x 6 cols), position varies with x0
    return a


@pytest.fixture(scope="module")
def sample_set(tmp_path_factory):
    from usseg_models.data.sample_set import generate_sample_set

    out = tmp_path_factory.mktemp("sample_set")
    generate_sample_set(out, frames=5, cines=2, images=2, dicom_images=1, size=64, unlabeled=0)
    return out


def test_monai_label_layout_clips_and_images(sample_set):
    clips = discover_clips(sample_set)
    assert [c.id for c in clips] == ["cine_000", "cine_001"]
    assert clips[0].label == sample_set / "labels" / "final" / "cine_000.nii.gz"
    images = discover_images(sample_set)  # PNG + PNG label, DICOM image + NIfTI label; cines excluded
    assert [r.id for r in images] == ["image_000", "image_001", "imagedcm_000"]
    ds = ClipWindowDataset(clips, spatial_size=32)
    assert len(ds) == 10  # 2 clips x 5 frames
    item = ds[1]
    assert item["image"].shape == (3, 3, 32, 32) and item["label"].shape == (3, 1, 32, 32)
    assert item["frame"] == 1 and 0 < float(item["label"].mean()) < 1
    img = ImageSegDataset(images, spatial_size=32)[2]
    assert img["image"].shape == (3, 32, 32) and set(img["label"].unique().tolist()) == {0.0, 1.0}


def test_busi_layout_merges_masks(tmp_path):
    _png(tmp_path / "benign" / "benign (1).png", _square(2))
    _png(tmp_path / "benign" / "benign (1)_mask.png", _square(2))
    _png(tmp_path / "benign" / "benign (1)_mask_1.png", _square(20))
    _png(tmp_path / "normal" / "normal (1).png", _square(5))  # no mask: skipped
    recs = discover_images(tmp_path)
    assert len(recs) == 1 and recs[0].split is None  # class folders are not splits
    assert [p.name for p in recs[0].label] == ["benign (1)_mask.png", "benign (1)_mask_1.png"]
    lab = ImageSegDataset(recs, spatial_size=32)[0]["label"]
    assert float(lab.sum()) == 2 * 60  # union of both 10x6 masks


def test_images_masks_folders_with_splits(tmp_path):
    for split in ("train", "val"):
        for i in range(2):
            _png(tmp_path / split / "images" / f"patient000{i}_2CH_ED.png", _square(3 + i))
            _png(tmp_path / split / "labels_clean" / f"patient000{i}_2CH_ED.png", (_square(3 + i) > 0).astype(np.uint8))
    recs = discover_images(tmp_path)
    assert len(recs) == 4 and {r.split for r in recs} == {"train", "val"}
    assert recs[0].subject == "patient0000"
    assert len(discover_images(tmp_path, split="val")) == 2
    with pytest.raises(DataLayoutError, match="no image/mask pairs"):
        discover_images(tmp_path, split="test")


def test_frame_folder_layout_natural_order_and_consistent_flips(tmp_path):
    # ASTR/VTUS layout; frames show exactly their mask (bright square moving right), jpg frames with png masks
    for t in range(12):
        frame = _square(2 + 2 * t)
        _png(tmp_path / "train" / "image" / "vid1" / f"{t}.png", frame)
        _png(tmp_path / "train" / "mask" / "vid1" / f"{t}.png", frame)
    clips = discover_clips(tmp_path)
    assert len(clips) == 1 and clips[0].split == "train" and clips[0].id == "train/vid1"
    assert [p.stem for p in clips[0].image] == [str(t) for t in range(12)]  # 2 before 10
    ds = ClipWindowDataset(clips, spatial_size=32, augment=True, seed=0)
    flipped = 0
    for i in range(len(ds)):
        item = ds[i]
        fg = item["image"][:, 0] > 0  # ImageNet-normalised: background < 0, the square > 0
        assert torch.equal(fg, item["label"][:, 0] > 0.5)  # same flips for frames and masks
        if not torch.equal(item["label"][0, 0], ClipWindowDataset(clips, 32)[i]["label"][0, 0]):
            flipped += 1
    assert flipped > 0  # augmentation did something


def test_nifti_cine_with_mask_beside(tmp_path):
    cine = np.random.default_rng(0).integers(0, 255, (40, 30, 4), dtype=np.uint8)
    lab = np.zeros((40, 30, 4), np.uint8)
    lab[10:20, 5:15] = 1
    nib.save(nib.Nifti1Image(cine, np.eye(4)), tmp_path / "clipA.nii.gz")
    nib.save(nib.Nifti1Image(lab, np.eye(4)), tmp_path / "clipA_mask.nii.gz")
    clips = discover_clips(tmp_path)
    assert len(clips) == 1 and clips[0].label.name == "clipA_mask.nii.gz"
    ds = ClipWindowDataset(clips, spatial_size=32)
    assert len(ds) == 4 and float(ds[0]["label"].mean()) == pytest.approx(100 / 1200, abs=0.02)


def test_mismatched_clip_is_refused(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((40, 30, 4), np.uint8), np.eye(4)), tmp_path / "c.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((40, 30, 3), np.uint8), np.eye(4)), tmp_path / "c_mask.nii.gz")
    with pytest.raises(DataLayoutError, match="differ"):
        ClipWindowDataset(discover_clips(tmp_path), spatial_size=32)


def test_missing_folder_and_empty_folder(tmp_path):
    with pytest.raises(DataLayoutError, match="not found"):
        discover_images(tmp_path / "nope")
    with pytest.raises(DataLayoutError, match="no clips"):
        discover_clips(tmp_path)


def test_binarize_and_subjects():
    assert binarize_label(np.array([0, 1, 2, 3]), 1).tolist() == [0, 1, 0, 0]
    assert binarize_label(np.array([0, 1, 2, 3])).tolist() == [0, 1, 1, 1]
    assert binarize_label(np.array([0, 3, 130, 255], np.uint8)).tolist() == [0, 0, 1, 1]  # 0/255 with JPEG noise
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = 255
    assert binarize_label(rgb).tolist() == [[1, 0], [0, 0]]
    assert subject_of("019_2HC") == subject_of("019_HC") == "019"
    assert subject_of("patient0042_4CH_ES") == "patient0042"
    assert subject_of("benign (3)") == "benign (3)"
    assert subject_of("case-7-a", r"case-(\d+)") == "7"


def test_real_data_layouts(shared_data):
    camus = discover_images(shared_data / "camus_edes")
    assert {r.split for r in camus} == {"train", "val", "test"} and len(camus) == 2000
    assert len({r.subject for r in camus if r.split == "val"}) == 50
    hc = discover_images(shared_data / "hc18")
    assert len(hc) == 240 and len({r.subject for r in hc}) < 240  # several images per subject
    ds = ImageSegDataset(camus[:2], spatial_size=32, label_value=1)
    frac = float(ds[0]["label"].mean())
    assert 0.01 < frac < 0.3  # LV cavity fraction range from the CAMUS manifest
