"""Data sets as shipped, each as a miniature in the original's exact naming: VTUS/Vivim, CAMUS 2023 NIfTI,
EchoNet-Dynamic, BUSI; explicit --images/--masks pairing (GIF masks) and CSV manifests; the real VTUS clip."""

from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from usseg_models.data.datasets import ClipWindowDataset, load_clip_arrays, load_image_arrays
from usseg_models.data.discovery import discover_clips, discover_images
from usseg_models.data.echonet import rasterise_tracing
from usseg_models.data.manifest import read_manifest, write_manifest
from usseg_models.data.pairing import pair_folders
from usseg_models.data.records import DataLayoutError

pytestmark = pytest.mark.filterwarnings("ignore:.*carries no calibration:UserWarning")


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, np.uint8)).save(path)


def _frame_and_mask(t, rows=24, cols=32):
    mask = np.zeros((rows, cols), np.uint8)
    mask[4 + t % 8 : 14 + t % 8, 6:20] = 255
    img = (np.full((rows, cols), 40) + (mask > 0) * 150).astype(np.uint8)
    return img, mask


# ------------------------------------------------------------------------------------------------ VTUS / Vivim
def _vivim(root, clips):
    """``VTUS/Train/<clip>/NNNN.jpg`` + ``VTUS/Train_GT/<clip>/NNNN.png`` as in scott-yjyang/Vivim."""
    for split, clip, n, every in clips:
        for t in range(1, n + 1):
            img, mask = _frame_and_mask(t)
            _png(root / split / clip / f"{t:04d}.jpg", img)
            if (t - 1) % every == 0:
                _png(root / f"{split}_GT" / clip / f"{t:04d}.png", mask)


def test_vivim_vtus_as_shipped(tmp_path):
    root = tmp_path / "VTUS"
    _vivim(root, [("Train", "0002", 12, 1), ("Train", "0010", 9, 1), ("Test", "0005", 12, 4)])
    clips = discover_clips(root)
    assert [c.id for c in clips] == ["Test/0005", "Train/0002", "Train/0010"]
    by_id = {c.id: c for c in clips}
    train = by_id["Train/0002"]
    assert train.split == "Train" and train.subject == "0002" and train.labelled is None
    assert [p.name for p in train.image] == [f"{t:04d}.jpg" for t in range(1, 13)]
    assert all(m.parent.name == "0002" and m.parent.parent.name == "Train_GT" and m.stem == f.stem
               for f, m in zip(train.image, train.label))
    test = by_id["Test/0005"]  # masks on frames 1, 5, 9 only: a sparse-frame clip
    assert test.labelled == (0, 4, 8) and [m is None for m in test.label].count(False) == 3
    assert [c.id for c in discover_clips(root, split="test")] == ["Test/0005"]  # split names case-insensitive
    assert [c.id for c in discover_clips(root / "Train")] == ["Train/0002", "Train/0010"]  # Train_GT found beside
    cine, label = load_clip_arrays(train)
    assert cine.shape == (32, 24, 12) and label.shape == (32, 24, 12) and set(np.unique(label)) == {0, 1}
    cine, label = load_clip_arrays(test)
    assert label[..., 1].sum() == 0 and label[..., 4].sum() > 0
    ds = ClipWindowDataset([test], spatial_size=32)
    assert len(ds) == 3 and [ds[i]["frame"] for i in range(3)] == [0, 4, 8]


def test_astr_layout_of_real_vtus_clip_still_found(shared_data):
    folder = shared_data / "vtus_clip0002"
    if not folder.is_dir():
        pytest.skip("vtus_clip0002 not present")
    (clip,) = discover_clips(folder)
    assert clip.id == "0002" and len(clip.image) == 91 and clip.labelled is None
    assert clip.image[0].name == "0001.jpg" and clip.label[90].name == "0091.png"


# ------------------------------------------------------------------------------------------------------ CAMUS
def _camus(root, patients, split_files=True):
    """``CAMUS_public/database_nifti/patientNNNN/...`` + ``database_split/subgroup_*.txt`` (2023 release)."""
    nifti = root / "CAMUS_public" / "database_nifti"
    rng = np.random.default_rng(0)
    for p in patients:
        folder = nifti / p
        folder.mkdir(parents=True)
        for view in ("2CH", "4CH"):
            seq = rng.integers(0, 255, (20, 16, 5), dtype=np.uint8)
            gt = np.zeros((20, 16, 5), np.uint8)
            gt[5:12, 4:10] = 1  # LV cavity
            gt[3:14, 2:12][gt[3:14, 2:12] == 0] = 2  # myocardium around it
            gt[5:12, 12:15] = 3  # left atrium
            nib.save(nib.Nifti1Image(seq, np.eye(4)), str(folder / f"{p}_{view}_half_sequence.nii.gz"))
            nib.save(nib.Nifti1Image(gt, np.eye(4)), str(folder / f"{p}_{view}_half_sequence_gt.nii.gz"))
            for instant, t in (("ED", 0), ("ES", 4)):
                nib.save(nib.Nifti1Image(seq[..., t], np.eye(4)), str(folder / f"{p}_{view}_{instant}.nii.gz"))
                nib.save(nib.Nifti1Image(gt[..., t], np.eye(4)), str(folder / f"{p}_{view}_{instant}_gt.nii.gz"))
            (folder / f"Info_{view}.cfg").write_text("ED: 1\nES: 5\nNbFrame: 5\nSex: F\nAge: 50\n")
    if split_files:
        split = root / "CAMUS_public" / "database_split"
        split.mkdir(parents=True)
        (split / "subgroup_training.txt").write_text("\n".join(patients[:-2]) + "\n")
        (split / "subgroup_validation.txt").write_text(patients[-2] + "\n")
        (split / "subgroup_testing.txt").write_text(patients[-1] + "\n")


def test_camus_2023_nifti_with_official_split(tmp_path):
    patients = ["patient0001", "patient0002", "patient0003", "patient0004"]
    _camus(tmp_path, patients)
    clips = discover_clips(tmp_path / "CAMUS_public")
    assert len(clips) == 8  # 4 patients x 2 views, not found twice by the generic rule
    assert {c.split for c in clips} == {"train", "val", "test"}
    by_id = {c.id: c for c in clips}
    rec = by_id["val/patient0003_4CH_half_sequence"]
    assert rec.subject == "patient0003" and rec.label.name == "patient0003_4CH_half_sequence_gt.nii.gz"
    assert rec.labelled is None
    cine, lv = load_clip_arrays(rec, label_value=1)  # --label-value 1: LV cavity only
    assert cine.shape == (20, 16, 5) and lv.sum() == 7 * 6 * 5
    _, heart = load_clip_arrays(rec)  # default: any structure
    assert heart.sum() > lv.sum()
    images = discover_images(tmp_path / "CAMUS_public" / "database_nifti")  # split files found one level up
    assert len(images) == 16 and {i.split for i in images} == {"train", "val", "test"}
    ed = {i.id: i for i in images}["test/patient0004_2CH_ED"]
    assert ed.subject == "patient0004" and ed.label[0].name == "patient0004_2CH_ED_gt.nii.gz"
    image, label = load_image_arrays(ed, label_value=3)
    assert image.shape == (20, 16) and label.sum() == 7 * 3
    assert len(discover_images(tmp_path / "CAMUS_public", split="test")) == 4


def test_camus_without_split_files(tmp_path):
    _camus(tmp_path, ["patient0001", "patient0002"], split_files=False)
    clips = discover_clips(tmp_path)
    assert len(clips) == 4 and {c.split for c in clips} == {None}
    assert {c.subject for c in clips} == {"patient0001", "patient0002"}


# ---------------------------------------------------------------------------------------------------- EchoNet
def _chords(x0, x1, y0, y1, step=2):
    """EchoNet-Dynamic tracing of a rectangle: long axis first, then horizontal chords (X1 left, X2 right)."""
    rows = [((x0 + x1) / 2, y0, (x0 + x1) / 2, y1)]
    rows += [(x0, y, x1, y) for y in range(y0, y1 + 1, step)]
    return rows


def _echonet(root, n_frames=16, width=48, height=40):
    """``EchoNet-Dynamic/Videos/<name>.avi`` + ``VolumeTracings.csv`` + ``FileList.csv`` (public release)."""
    from usseg_models.io import write_video

    base = root / "EchoNet-Dynamic"
    frames = np.full((n_frames, height, width, 3), 60, np.uint8)
    names = {"0X1A2B3C4D5E6F7081": "TRAIN", "0X22AA33BB44CC55DD": "VAL", "0X9F8E7D6C5B4A3921": "TEST",
             "0X00000000DEADBEEF": "TRAIN"}  # the last one has no tracing
    for name in names:
        write_video(base / "Videos" / f"{name}.avi", frames, fps=50)
    with open(base / "FileList.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split"])
        for name, split in names.items():
            w.writerow([name, 55.0, 30.0, 70.0, height, width, 50, n_frames, split])
    traced = {"0X1A2B3C4D5E6F7081": {3: (5, 40, 10, 20), 11: (8, 30, 12, 18)},
              "0X22AA33BB44CC55DD": {0: (10, 20, 10, 30), 15: (12, 18, 12, 26)},
              "0X9F8E7D6C5B4A3921": {6: (5, 15, 5, 15), 40: (5, 15, 5, 15)}}  # frame 40 lies outside the clip
    with open(base / "VolumeTracings.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["FileName", "X1", "Y1", "X2", "Y2", "Frame"])
        for name, per_frame in traced.items():
            for t, box in per_frame.items():
                for row in _chords(*box):
                    w.writerow([f"{name}.avi", *[f"{v:.2f}" for v in row], t])
    return base, traced


def test_rasterise_tracing_is_spatial_first():
    mask = rasterise_tracing(np.array(_chords(5, 40, 10, 20)), width=48, height=40)
    assert mask.shape == (48, 40)  # (X, Y)
    xs, ys = np.nonzero(mask)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (5, 40, 10, 20)
    pts = np.array([(5, 10), (40, 10), (40, 20), (5, 20)])  # the EchoNet-Pediatric (X, Y) point form
    np.testing.assert_array_equal(rasterise_tracing(pts, 48, 40), mask)


def test_echonet_dynamic_sparse_ed_es_labels(tmp_path):
    base, traced = _echonet(tmp_path)
    cache = tmp_path / "cache"
    clips = discover_clips(tmp_path, cache_dir=cache)
    assert [c.id for c in clips] == ["test/0X9F8E7D6C5B4A3921", "train/0X1A2B3C4D5E6F7081",
                                     "val/0X22AA33BB44CC55DD"]  # untraced video skipped, splits from FileList
    by_name = {c.image.stem: c for c in clips}
    rec = by_name["0X1A2B3C4D5E6F7081"]
    assert rec.labelled == (3, 11) and rec.split == "train" and rec.subject == "0X1A2B3C4D5E6F7081"
    assert rec.label.parent == cache / "echonet"
    assert by_name["0X9F8E7D6C5B4A3921"].labelled == (6,)  # the out-of-range frame 40 dropped
    cine, label = load_clip_arrays(rec)
    assert cine.shape == (48, 40, 16) and label.shape == (48, 40, 16)
    assert [t for t in range(16) if label[..., t].any()] == [3, 11]
    xs, ys = np.nonzero(label[..., 3])
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (5, 40, 10, 20)
    mtime = rec.label.stat().st_mtime_ns
    again = discover_clips(tmp_path, cache_dir=cache, split="val")
    assert [c.id for c in again] == ["val/0X22AA33BB44CC55DD"]
    assert rec.label.stat().st_mtime_ns == mtime  # cached, not rewritten
    ds = ClipWindowDataset(clips, spatial_size=32)
    assert len(ds) == 5 and sorted(int(ds[i]["valid"][0]) for i in range(len(ds))) == [1] * 5


# ------------------------------------------------------------------------------------------------------- BUSI
def test_busi_as_distributed(tmp_path):
    root = tmp_path / "Dataset_BUSI_with_GT"
    rng = np.random.default_rng(2)
    for cls, n in (("benign", 2), ("malignant", 1), ("normal", 2)):
        for i in range(1, n + 1):
            name = f"{cls} ({i})"
            _png(root / cls / f"{name}.png", rng.integers(0, 255, (30, 36, 3)))
            mask = np.zeros((30, 36), np.uint8)
            if cls != "normal":
                mask[5:15, 6:16] = 255
            _png(root / cls / f"{name}_mask.png", mask)
    second = np.zeros((30, 36), np.uint8)
    second[20:25, 25:30] = 255
    _png(root / "benign" / "benign (2)_mask_1.png", second)  # a second lesion
    records = discover_images(root)
    assert [r.id for r in records] == ["benign (1)", "benign (2)", "malignant (1)", "normal (1)", "normal (2)"]
    by_id = {r.id: r for r in records}
    assert [p.name for p in by_id["benign (2)"].label] == ["benign (2)_mask.png", "benign (2)_mask_1.png"]
    assert len({r.subject for r in records}) == 5 and {r.split for r in records} == {None}
    image, label = load_image_arrays(by_id["benign (2)"])
    assert image.shape == (36, 30, 3) and label.sum() == 100 + 25  # both masks merged
    _, empty = load_image_arrays(by_id["normal (1)"])
    assert empty.shape == (36, 30) and empty.sum() == 0  # normal images kept, with empty masks


# ------------------------------------------------------------------------------------ explicit pairs, manifests
def test_images_masks_folders_with_gif_masks(tmp_path):
    """DDTI-style ``cropped/<n>.PNG`` + ``mask/<n>.gif``, and BUSI re-packed as ``images/`` + ``masks/0/``."""
    (tmp_path / "ddti" / "mask").mkdir(parents=True)
    for i in (1, 2, 3):
        img, mask = _frame_and_mask(i)
        _png(tmp_path / "ddti" / "cropped" / f"{i}.PNG", img)
        Image.fromarray(mask).convert("P").save(tmp_path / "ddti" / "mask" / f"{i}.gif")
        _png(tmp_path / "busi" / "images" / f"case_{i}.png", img)
        _png(tmp_path / "busi" / "masks" / "0" / f"case_{i}.png", mask)
    _png(tmp_path / "ddti" / "cropped" / "4.PNG", img)  # no mask: left out
    rows = pair_folders(tmp_path / "ddti" / "cropped", tmp_path / "ddti" / "mask", "images")
    assert [r["mask"][0].split("/")[-1] for r in rows] == ["1.gif", "2.gif", "3.gif"]
    manifest = write_manifest(rows, tmp_path / "pairs.csv")
    records = discover_images(manifest)
    assert [r.id for r in records] == ["1", "2", "3"]
    image, label = load_image_arrays(records[0])
    _, truth = _frame_and_mask(1)
    np.testing.assert_array_equal(label, (truth > 0).T.astype(np.uint8))
    busi = pair_folders(tmp_path / "busi" / "images", tmp_path / "busi" / "masks", "images")
    assert len(busi) == 3 and all("/masks/0/" in r["mask"][0] for r in busi)
    with pytest.raises(DataLayoutError, match="no file under"):
        pair_folders(tmp_path / "ddti" / "cropped", tmp_path / "busi" / "masks", "images")


def test_clip_pairs_and_csv_manifest_with_frames(tmp_path):
    from usseg_models.io import write_video
    from usseg_models.io.writers import write_nifti

    frames = np.stack([np.repeat(_frame_and_mask(t)[0][..., None], 3, -1) for t in range(10)])
    write_video(tmp_path / "videos" / "lung_a.mp4", frames, fps=10)
    label = np.stack([(_frame_and_mask(t)[1] > 0).T for t in range(10)], axis=-1).astype(np.uint8)
    write_nifti(tmp_path / "labels" / "lung_a.nii.gz", label, np.eye(4))
    for t in range(6):  # a frame folder whose masks exist on frames 0 and 3 only
        img, mask = _frame_and_mask(t)
        _png(tmp_path / "videos" / "clip_b" / f"f{t}.png", img)
        if t % 3 == 0:
            _png(tmp_path / "labels" / "clip_b" / f"f{t}.png", mask)
    rows = pair_folders(tmp_path / "videos", tmp_path / "labels", "clips")
    clips = discover_clips(write_manifest(rows, tmp_path / "pairs.csv"))
    assert [c.id for c in clips] == ["clip_b", "lung_a"]
    assert clips[0].labelled == (0, 3) and clips[1].labelled is None
    cine, lab = load_clip_arrays(clips[1])
    assert cine.shape == (32, 24, 10) and np.array_equal(lab, label)

    manifest = tmp_path / "study.csv"  # relative paths, subjects, splits and labelled frames given by the user
    manifest.write_text("image,mask,subject,split,frames\n"
                        "videos/lung_a.mp4,labels/lung_a.nii.gz,patient7,val,0 4 8\n"
                        "videos/clip_b,labels/clip_b,patient8,train,3\n")
    clips = discover_clips(manifest)
    assert [(c.id, c.subject, c.split, c.labelled) for c in clips] == [
        ("train/clip_b", "patient8", "train", (3,)), ("val/lung_a", "patient7", "val", (0, 4, 8))]
    assert clips[0].label[0] is None and clips[0].label[3].name == "f3.png"  # frame 0's mask left unread
    assert [c.id for c in discover_clips(manifest, split="VAL")] == ["val/lung_a"]
    bad = tmp_path / "bad.csv"
    bad.write_text("image,mask,frames\nvideos/clip_b,labels/clip_b,1\n")
    with pytest.raises(DataLayoutError, match=r"frames \[1\] have no mask"):
        read_manifest(bad, "clips")
    with pytest.raises(DataLayoutError, match="columns image,mask"):
        (tmp_path / "nocol.csv").write_text("file,label\na,b\n")
        read_manifest(tmp_path / "nocol.csv", "clips")


def test_train_and_evaluate_cli_take_images_masks_and_manifest(tmp_path, monkeypatch):
    import usseg_models.evaluation as evaluation
    import usseg_models.training as training
    from usseg_models.cli.main import main

    for i in range(3):
        img, mask = _frame_and_mask(i)
        _png(tmp_path / "imgs" / f"{i}.png", img)
        _png(tmp_path / "gts" / f"{i}_mask.png", mask)
    seen = {}

    def fake_train(data, out_dir, **kwargs):
        seen["train"] = (data, discover_images(data))
        return {"rank": 0, "initial_val_dice": 0.1, "best_dice": 0.5, "best_epoch": 1,
                "best_checkpoint": "b.pt", "last_checkpoint": "l.pt", "curves": "c.png"}

    def fake_eval(checkpoint, data, out, **kwargs):
        seen["eval"] = (data, kwargs["split"])
        return {"rows": {}, "report": "r.md"}

    monkeypatch.setattr(training, "train_intrasense", fake_train)
    monkeypatch.setattr(evaluation, "evaluate_image_model", fake_eval)
    out = tmp_path / "run"
    assert main(["train", "intrasense", "--images", str(tmp_path / "imgs"), "--masks", str(tmp_path / "gts"),
                 "--out", str(out), "--epochs", "1"]) == 0
    data, records = seen["train"]
    assert data == str(out / "pairs.csv") and [r.id for r in records] == ["0", "1", "2"]
    assert main(["evaluate", "intrasense", "--checkpoint", "x.pt", "--manifest", data, "--split", "test",
                 "--out", str(tmp_path / "ev")]) == 0
    assert seen["eval"] == (data, "test")
    assert main(["train", "intrasense", "--images", str(tmp_path / "imgs"), "--out", str(out)]) == 2
    assert main(["train", "intrasense", "--data", "a", "--manifest", "b", "--out", str(out)]) == 2


def test_video_cines_in_datastore_and_beside_layouts(tmp_path):
    """``<id>.mp4`` + ``labels/final/<id>.nii.gz`` (MONAI Label datastore) and ``<id>.avi`` + ``<id>_mask.nii.gz``."""
    from usseg_models.io import write_video
    from usseg_models.io.writers import write_nifti

    frames = np.stack([np.repeat(_frame_and_mask(t)[0][..., None], 3, -1) for t in range(8)])
    label = np.stack([(_frame_and_mask(t)[1] > 0).T for t in range(8)], axis=-1).astype(np.uint8)
    write_video(tmp_path / "studies" / "clip_1.mp4", frames)
    write_nifti(tmp_path / "studies" / "labels" / "final" / "clip_1.nii.gz", label, np.eye(4))
    write_video(tmp_path / "studies" / "clip_2.avi", frames)
    write_nifti(tmp_path / "studies" / "clip_2_mask.nii.gz", label, np.eye(4))
    clips = discover_clips(tmp_path / "studies")
    assert [(c.id, c.image.suffix, c.label.name) for c in clips] == [
        ("clip_1", ".mp4", "clip_1.nii.gz"), ("clip_2", ".avi", "clip_2_mask.nii.gz")]
    for clip in clips:
        cine, lab = load_clip_arrays(clip)
        assert cine.shape == (32, 24, 8) and np.array_equal(lab, label)
