"""USSegClipLib label handling: ``.seg.nrrd`` round trip read back by ``slicerio``, label tables, labelmaps."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "slicer_extension" / "USSegClip"))

from USSegClipLib import (  # noqa: E402
    Clip,
    LabelFileError,
    TrainingState,
    compose_labelmap,
    compose_matrix,
    fit_label_to_clip,
    labels_summary,
    model_labels,
    read_seg_nrrd,
    read_volume,
    split_labelmap,
    write_seg_nrrd,
)
from USSegClipLib.errors import ClipGeometryError  # noqa: E402

slicerio = pytest.importorskip("slicerio")

ROTATED = np.array([[0.0, -1.0, 0.0], [0.6, 0.0, -0.8], [0.8, 0.0, 0.6]])  # orthonormal, det +1
LABELS = {"left ventricle": 1, "myocardium": 2, "left atrium": 3}


def _labelmap(shape=(12, 10, 5), seed=0):
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.uint8)
    for t in range(shape[2]):  # a different blob per frame so frames cannot be confused
        cx, cy = rng.integers(2, shape[0] - 3), rng.integers(2, shape[1] - 3)
        lab[cx - 2 : cx + 2, cy - 2 : cy + 1, t] = 1
        lab[cx - 2 : cx + 2, cy + 1 : cy + 3, t] = 2
    return lab


def test_seg_nrrd_roundtrip_read_by_slicerio(tmp_path):
    m = compose_matrix([0.31, 0.27, 1.0], [-12.0, 40.5, 3.0], ROTATED)
    lab = _labelmap()
    path = write_seg_nrrd(tmp_path / "clip.seg.nrrd", Clip(lab, m), LABELS)

    seg = slicerio.read_segmentation(path)
    names = {s["name"]: s for s in seg["segments"]}
    assert set(names) == set(LABELS)  # empty "left atrium" is still a segment
    for name, value in LABELS.items():
        np.testing.assert_array_equal(slicerio.segment_mask(seg, name), lab == value)
        assert len(names[name]["color"]) == 3
    assert seg["voxels"].shape == lab.shape
    lps = np.diag([-1.0, -1, 1, 1]) @ m
    np.testing.assert_allclose(seg["ijkToLPS"], lps, atol=1e-12)
    header_text = Path(path).read_bytes()[:4000].decode("latin-1")
    for key in ("Segment0_ID:=", "Segment0_Name:=", "Segment0_LabelValue:=", "Segment0_Layer:=", "Segment0_Color:="):
        assert key in header_text

    geometry, masks = read_seg_nrrd(path)
    np.testing.assert_allclose(geometry.ijk_to_ras, m, atol=1e-12)
    assert set(masks) == set(LABELS)
    np.testing.assert_array_equal(compose_labelmap(masks, LABELS), lab)


def test_seg_nrrd_single_frame_keeps_three_axes(tmp_path):
    lab = _labelmap((8, 6, 1))
    m = compose_matrix([0.5, 0.5, 1.0], [0, 0, 7.0], np.diag([-1.0, 1.0, -1.0]))
    path = write_seg_nrrd(tmp_path / "one.seg.nrrd", Clip(lab, m), {"lv": 1, "myo": 2})
    seg = slicerio.read_segmentation(path)
    assert seg["voxels"].shape == (8, 6, 1)
    back = read_volume(path)
    np.testing.assert_array_equal(back.voxels, lab)
    np.testing.assert_allclose(back.ijk_to_ras, m, atol=1e-12)


def test_seg_nrrd_refuses_unknown_values_and_bad_names(tmp_path):
    lab = _labelmap()
    lab[0, 0, 0] = 9
    with pytest.raises(LabelFileError, match=r"\[9\]"):
        write_seg_nrrd(tmp_path / "x.seg.nrrd", Clip(lab, np.eye(4)), LABELS)
    with pytest.raises(LabelFileError, match="seg.nrrd"):
        write_seg_nrrd(tmp_path / "x.nrrd", Clip(_labelmap(), np.eye(4)), LABELS)
    with pytest.raises(LabelFileError, match="not found"):
        read_seg_nrrd(tmp_path / "missing.seg.nrrd")


def test_model_labels_from_info_dict_and_list():
    info = {
        "labels": ["lv", "myo"],
        "models": {"dsanet": {"labels": {"background": 0, "lv": 1, "myo": 2}}, "intrasense": {"labels": ["lesion"]}},
    }
    assert model_labels(info, "dsanet") == {"lv": 1, "myo": 2}
    assert model_labels(info, "intrasense") == {"lesion": 1}
    assert model_labels(info) == {"lv": 1, "myo": 2}
    with pytest.raises(LabelFileError, match="no model 'unet'.*dsanet, intrasense"):
        model_labels(info, "unet")
    with pytest.raises(LabelFileError, match="no labels"):
        model_labels({"models": {"m": {}}}, "m")


def test_panel_summaries_of_labels_and_weights():
    info = {"models": {"dsanet": {"labels": {"background": 0, "lesion": 1}}, "m": {}}}
    assert labels_summary(info, "dsanet") == "lesion (1)"
    assert labels_summary(None, "dsanet") == labels_summary(info, "") == "-"
    assert labels_summary(info, "m") == "the server lists no labels for m"
    assert TrainingState(checksum="0123456789abcdef").weights_summary() == "weights 0123456789ab"
    assert TrainingState(new_model_live=True).weights_summary() == "weights none — NEW MODEL LIVE"


def test_compose_and_split_labelmap():
    lab = _labelmap()
    masks = split_labelmap(lab, LABELS)
    np.testing.assert_array_equal(compose_labelmap(masks, LABELS), lab)
    with pytest.raises(LabelFileError, match="'Segment_1'.*not server labels"):
        compose_labelmap({"Segment_1": lab == 1}, LABELS)
    with pytest.raises(LabelFileError, match="overlaps"):
        compose_labelmap({"left ventricle": lab > 0, "myocardium": lab == 2}, LABELS)
    with pytest.raises(LabelFileError, match="no segments"):
        compose_labelmap({}, LABELS)


def test_fit_label_to_clip():
    m = compose_matrix([0.3, 0.3, 1.0], [1, 2, 3], ROTATED)
    clip = Clip(np.zeros((8, 6, 4), np.uint8), m)
    label = Clip(_labelmap((8, 6, 4)), np.eye(4))  # server used other spacing: voxels still correspond
    fitted = fit_label_to_clip(label, clip)
    np.testing.assert_array_equal(fitted.voxels, label.voxels)
    np.testing.assert_array_equal(fitted.ijk_to_ras, m)
    one = fit_label_to_clip(Clip(np.ones((8, 6, 1), np.uint8), np.eye(4)), Clip(np.zeros((8, 6, 1)), m))
    assert one.voxels.shape == (8, 6, 1)
    with pytest.raises(ClipGeometryError, match="does not match"):
        fit_label_to_clip(Clip(np.zeros((6, 8, 4)), np.eye(4)), clip)


def test_models_of_dimension():
    from USSegClipLib import models_of_dimension

    info = {"models": {"unet": {"dimension": 3}, "dsanet": {"dimension": 3}, "intrasense": {"dimension": 2}}}
    assert models_of_dimension(info, 3, "dsanet") == ["dsanet", "unet"]
    assert models_of_dimension(info, 3) == ["dsanet", "unet"]
    assert models_of_dimension(info, 2, "intrasense") == ["intrasense"]
    assert models_of_dimension({}, 2) == []


def test_rename_labels_between_models():
    from USSegClipLib import rename_labels

    lab = np.array([[0, 1], [1, 0]], np.uint8)
    np.testing.assert_array_equal(rename_labels(lab, {"tumor": 1}, {"lesion": 1}), lab)
    np.testing.assert_array_equal(rename_labels(lab, {"tumor": 1}, {"lesion": 2}), lab * 2)
    two = np.array([[1, 2], [0, 2]], np.uint8)
    np.testing.assert_array_equal(rename_labels(two, {"a": 1, "b": 2}, {"b": 1, "a": 2}), [[2, 1], [0, 1]])
    with pytest.raises(LabelFileError, match="no counterpart"):
        rename_labels(two, {"a": 1, "b": 2}, {"a": 1, "c": 2})
