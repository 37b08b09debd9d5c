"""Several structures per mask in the data layer: label values kept, class indices through the datasets, sparse
frames as before, label checks, the manifest's label map and the layered synthetic cine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from usseg_models.data.datasets import (
    ClipWindowDataset,
    ImageSegDataset,
    load_clip_arrays,
    load_image_arrays,
    mask_values,
)
from usseg_models.data.manifest import read_manifest, read_manifest_labels, write_manifest
from usseg_models.data.records import ClipRecord, DataLayoutError, ImageRecord, MaskLabelError
from usseg_models.data.synthetic_layered import LAYERED_LABELS, layered_mask, simulate_layered_cine
from usseg_models.errors import UssegError
from usseg_models.io.writers import write_nifti, write_png
from usseg_models.labels import LabelSet, LabelSetError, parse_labels

CAMUS = parse_labels("1:LV,2:MYO,3:LA")


def _frame_clip(root: Path, cine, label, missing=()) -> ClipRecord:
    frames, masks = [], []
    for t in range(cine.shape[-1]):
        frames.append(write_png(root / "frames" / f"{t:03d}.png", cine[..., t], mode="labels"))
        masks.append(None if t in missing else write_png(root / "masks" / f"{t:03d}.png", label[..., t],
                                                         mode="labels"))
    labelled = tuple(t for t in range(cine.shape[-1]) if t not in missing) if missing else None
    return ClipRecord(root.name, tuple(frames), tuple(masks), root.name, labelled=labelled)


@pytest.fixture(scope="module")
def layered():
    return simulate_layered_cine(num_frames=6, size=64, seed=3)


def test_layered_cine_has_three_moving_structures(layered):
    assert layered.image.shape == layered.label.shape == (64, 64, 6)
    assert layered.image.dtype == layered.label.dtype == np.uint8
    assert layered.labels == LAYERED_LABELS
    for t in range(6):
        assert set(np.unique(layered.label[..., t]).tolist()) == {0, 1, 2, 3}
    areas = [(layered.label[..., t] == 1).sum() for t in range(6)]
    assert max(areas) > 1.1 * min(areas), areas  # the cavity beats
    for v in range(4):  # brightness order: myocardium > tissue > atrium > cavity (the structures are told apart)
        assert layered.image[layered.label == v].std() > 0
    means = [layered.image[layered.label == v].mean() for v in range(4)]
    assert means[2] > means[0] > means[3] > means[1], means
    again = simulate_layered_cine(num_frames=6, size=64, seed=3)
    assert np.array_equal(again.image, layered.image) and np.array_equal(again.label, layered.label)
    assert not np.array_equal(simulate_layered_cine(6, 64, seed=4).label, layered.label)


def test_layered_mask_layers():
    m = layered_mask(64, (32, 20), (6, 8), 3, (6, 4))
    assert m[32, 20] == 1 and m[32 + 7, 20] == 2  # centre cavity, ring just outside it
    assert m[32, 20 + 8 + 3 + 4] == 3  # atrium below the ring
    assert m[0, 0] == 0


def test_clip_arrays_keep_values_as_class_indices(tmp_path, layered):
    rec = _frame_clip(tmp_path / "clip", layered.image, layered.label)
    _, binary = load_clip_arrays(rec)
    assert set(np.unique(binary).tolist()) == {0, 1}  # no label set: any non-zero, as before
    _, idx = load_clip_arrays(rec, labels=CAMUS)
    assert np.array_equal(idx, layered.label)  # values 1, 2, 3 are classes 1, 2, 3
    shuffled = LabelSet((2, 3, 1), ("MYO", "LA", "LV"))  # sorted by value: the same classes
    assert np.array_equal(load_clip_arrays(rec, labels=shuffled)[1], layered.label)
    sparse_set = parse_labels("1:LV,3:LA,2:MYO")
    assert sparse_set.values == (1, 2, 3)


def test_values_outside_the_label_set_are_a_clear_error(tmp_path, layered):
    rec = _frame_clip(tmp_path / "clip", layered.image, layered.label)
    with pytest.raises(MaskLabelError, match=r"label values \[3\] are not in the label set 1:LV,2:MYO") as err:
        load_clip_arrays(rec, labels=parse_labels("1:LV,2:MYO"))
    assert isinstance(err.value, (UssegError, LabelSetError, DataLayoutError))
    assert "000.png" in str(err.value)  # names the file
    with pytest.raises(ValueError, match="not both"):
        load_clip_arrays(rec, label_value=1, labels=CAMUS)


def test_nifti_volume_and_image_labels(tmp_path, layered):
    vol = tmp_path / "clip_gt.nii.gz"
    write_nifti(vol, layered.label, np.eye(4))
    img = tmp_path / "img.png"
    write_png(img, layered.image[..., 0], mode="labels")
    lab = tmp_path / "img_gt.png"
    write_png(lab, layered.label[..., 0], mode="labels")
    image, label = load_image_arrays(ImageRecord("img", img, (lab,)), labels=CAMUS)
    assert np.array_equal(label, layered.label[..., 0])
    assert np.array_equal(load_image_arrays(ImageRecord("img", img, (lab,)), label_value=2)[1],
                          (layered.label[..., 0] == 2).astype(np.uint8))  # --label-value still picks one class
    assert mask_values([ImageRecord("img", img, (lab,))]) == [1, 2, 3]
    from usseg_models.data.datasets import _load_label

    assert np.array_equal(_load_label(vol, None, CAMUS), layered.label)


def test_datasets_give_class_indices_after_the_pipeline(tmp_path, layered):
    rec = _frame_clip(tmp_path / "clip", layered.image, layered.label)
    ds = ClipWindowDataset([rec], 64, augment=True, labels=CAMUS, seed=0)
    item = ds[2]
    assert item["image"].shape == (3, 3, 64, 64) and item["label"].shape == (3, 1, 64, 64)
    assert set(item["label"].unique().tolist()) == {0.0, 1.0, 2.0, 3.0}
    plain = ClipWindowDataset([rec], 64, augment=False, labels=CAMUS)
    assert np.array_equal(plain[2]["label"][0, 0].numpy().astype(np.uint8), layered.label[..., 2])
    # at another size each class is resized with nearest neighbour: the classes stay whole values
    small = ClipWindowDataset([rec], 32, labels=CAMUS)
    assert set(small[0]["label"].unique().tolist()) <= {0.0, 1.0, 2.0, 3.0}
    assert len(set(small[0]["label"].unique().tolist())) == 4
    img = tmp_path / "img.png"
    write_png(img, layered.image[..., 0], mode="labels")
    lab = tmp_path / "img_gt.png"
    write_png(lab, layered.label[..., 0], mode="labels")
    ids = ImageSegDataset([ImageRecord("img", img, (lab,))], 64, labels=CAMUS)
    assert np.array_equal(ids[0]["label"][0].numpy().astype(np.uint8), layered.label[..., 0])


def test_sparse_frames_stay_unlabelled(tmp_path, layered):
    rec = _frame_clip(tmp_path / "clip", layered.image, layered.label, missing=(1, 3, 4))
    _, idx = load_clip_arrays(rec, labels=CAMUS)
    assert np.array_equal(idx[..., 0], layered.label[..., 0]) and not idx[..., 1].any()
    ds = ClipWindowDataset([rec], 64, labels=CAMUS)
    assert sorted(item["frame"] for item in ds) == [0, 2, 5]  # targets: labelled frames only
    for item in ds:
        frames = [item["frame"]]
        assert item["valid"][0] == 1.0, frames
    by_frame = {item["frame"]: item for item in ds}
    from usseg_models.transforms.clip import window_indices

    for t, item in by_frame.items():
        expect = [1.0 if i in (0, 2, 5) else 0.0 for i in window_indices(6, t)]
        assert item["valid"].tolist() == expect


def test_manifest_label_map(tmp_path, layered):
    rec = _frame_clip(tmp_path / "clip", layered.image, layered.label)
    path = write_manifest([{"image": rec.image[0].parent, "mask": rec.label[0].parent}], tmp_path / "m.csv",
                          labels=CAMUS)
    assert path.read_text().splitlines()[0] == "# labels: 1:LV,2:MYO,3:LA"
    assert read_manifest_labels(path) == CAMUS
    records = read_manifest(path, "clips")
    assert len(records) == 1 and len(records[0].image) == 6
    plain = write_manifest([{"image": rec.image[0].parent, "mask": rec.label[0].parent}], tmp_path / "p.csv")
    assert read_manifest_labels(plain) is None
    bad = tmp_path / "bad.csv"
    bad.write_text("# labels: 1:LV,1:MYO\n" + plain.read_text())
    with pytest.raises(DataLayoutError, match="labels line"):
        read_manifest_labels(bad)
