"""USSegClipLogic with several structures per clip (issue 20), on real MRML (the ``slicer-core`` wheel): an infer
answer with ``label_names`` {"LV": 1, "MYO": 2, "LA": 3} and ``label_colors`` becomes one segment per structure with
the server's names and colours, and back to the same label map; an edit of one segment leaves the others' voxels
as they were on export; the reviewed frame is the frame as a whole and the submitted label carries every structure.

The server is a stub answering like the usseg app (a label file plus result parameters), so these tests need no
model; the real round trip with the app is in ``test_slicer_mrml_server.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mrml_support import require_slicer_core

slicer = require_slicer_core()

from USSegClipLib import FALLBACK_COLORS, Clip, InferResult, read_volume, write_nifti  # noqa: E402
from USSegClipLogic import (  # noqa: E402
    USSegClipLogic,
    add_sequence_clip,
    add_volume_clip,
    read_segment_mask,
    roundtrips,
    selftest,
    write_segment_mask,
)

NAMES = {"LV": 1, "MYO": 2, "LA": 3}
COLORS = {"LV": [1.0, 0.1, 0.1], "MYO": [0.1, 0.7, 0.2], "LA": [0.2, 0.3, 0.95]}
SHAPE = (16, 14, 5)  # (i, j, t)


class StubServer:
    """A MonaiLabelClient stand-in answering ``/infer`` with ``label`` and ``params`` as the usseg app does, and
    keeping what ``save_label`` was given."""

    def __init__(self, label: np.ndarray, params: dict, tmp: Path):
        self.label, self.params, self.tmp = label, params, tmp
        self.saved: list[tuple[str, Clip, dict]] = []

    def info(self):
        model = {"labels": NAMES, "label_colors": COLORS, "dimension": 3}
        return {"models": {"echo": model, "echo_refine": dict(model)}}

    def infer(self, model, image_id=None, file=None, params=None):
        sent = read_volume(str(file), 2)
        assert sent.voxels.shape == self.label.shape
        path = write_nifti(Clip(self.label, sent.ijk_to_ras, 2), str(self.tmp / "answer.nii.gz"))
        return InferResult(dict(self.params), Path(path).read_bytes(), "label.nii.gz")

    def upload_image(self, path, image_id=None):
        return "clip1"

    def save_label(self, image_id, label_file, tag="final", params=None):
        self.saved.append((image_id, read_volume(str(label_file), 2), dict(params or {})))
        return {"image": image_id, "label": image_id}


def _clip(scene, kind: str):
    """A volume clip or a cine sequence (one 2-D volume per frame) of SHAPE, oblique; returns the clip's node."""
    mrml_scene, sequences = scene
    matrix = selftest.oblique_matrix([0.3, 0.25, 1.0])
    frames = np.random.default_rng(3).integers(0, 255, SHAPE[::-1], np.uint8)  # (t, j, i)
    if kind == "volume":
        return add_volume_clip(mrml_scene, frames, matrix)
    _, proxy = add_sequence_clip(mrml_scene, sequences, frames, matrix)
    return proxy


def _segment(scene, kind, tmp_path, label=None, params=None):
    mrml_scene, sequences = scene
    label = selftest.layered_label(SHAPE) if label is None else label
    server = StubServer(label, params or {"label_names": NAMES, "label_colors": COLORS}, tmp_path)
    logic = USSegClipLogic(mrml_scene, client=server, sequencesLogic=sequences)
    volume = _clip(scene, kind)
    seg = logic.segmentClip(volume, "echo")
    return logic, server, volume, seg, label


def _segments(seg):
    s = seg.GetSegmentation()
    return {s.GetNthSegment(i).GetName(): s.GetNthSegment(i) for i in range(s.GetNumberOfSegments())}


@pytest.mark.parametrize("kind", ["volume", "sequence"])
def test_infer_answer_becomes_one_named_coloured_segment_per_structure_and_back(scene, kind, tmp_path):
    logic, _, volume, seg, label = _segment(scene, kind, tmp_path)
    assert len(np.unique(label)) == 4
    segments = _segments(seg)
    assert list(segments) == ["LV", "MYO", "LA"]
    for name, color in COLORS.items():
        np.testing.assert_allclose(segments[name].GetColor(), color, atol=1e-6)
    masks = logic.readMasks(volume, seg)
    for name, value in NAMES.items():
        np.testing.assert_array_equal(masks[name], label == value)
    np.testing.assert_array_equal(logic.readLabel(volume, seg, NAMES), label)
    assert logic.reviewedFrames(volume, seg) == []  # model output: nothing reviewed


def test_label_file_of_three_values_and_a_server_without_colours(scene, tmp_path):
    """A 3-value label volume loaded onto a clip: three segments named from /info/, fallback colours by position;
    a value the server does not name is its own segment and is refused on export unless erased."""
    mrml_scene, sequences = scene
    logic = USSegClipLogic(mrml_scene, sequencesLogic=sequences)
    logic.info = {"models": {"echo": {"labels": NAMES, "dimension": 3}}}
    volume = _clip(scene, "volume")
    label = selftest.layered_label(SHAPE)
    label[0, 0, 4] = 7
    path = write_nifti(Clip(label, logic.ijkToRas(volume), 2), str(tmp_path / "label.nii.gz"))
    seg = logic.loadLabelFile(path, volume, "echo")
    segments = _segments(seg)
    assert list(segments) == ["LV", "MYO", "LA", "Segment_7"]
    for index, segment in enumerate(segments.values()):
        np.testing.assert_allclose(segment.GetColor(), FALLBACK_COLORS[index], atol=1e-6)
    with pytest.raises(Exception, match="Segment_7"):
        logic.readLabel(volume, seg, NAMES)
    write_segment_mask(seg, "Segment_7", volume, np.zeros(SHAPE, bool))  # the user erases the stray value
    expected = label.copy()
    expected[0, 0, 4] = 0
    np.testing.assert_array_equal(logic.readLabel(volume, seg, NAMES), expected)


def _editor_stroke(segmentation, volume, segment_name, frame, mask_ij):
    """What a Segment Editor erase + paint of one segment does to one frame of a volume clip: merge modes limited
    to that frame's extent, the other segments not touched."""
    import vtk
    from vtk.util import numpy_support

    logic = slicer.vtkSlicerSegmentationsModuleLogic
    dims = volume.GetImageData().GetDimensions()
    extent = [0, dims[0] - 1, 0, dims[1] - 1, frame, frame]
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    segment_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName(segment_name)
    for mode, values in ((logic.MODE_MERGE_MIN, np.zeros_like(mask_ij)), (logic.MODE_MERGE_MAX, mask_ij)):
        image = slicer.vtkOrientedImageData()
        image.SetExtent(extent)
        image.SetImageToWorldMatrix(matrix)
        image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
        numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[:] = values.astype(np.uint8).T.ravel()
        assert logic.SetBinaryLabelmapToSegment(image, segmentation, segment_id, mode, extent)


@pytest.mark.parametrize("kind", ["volume", "sequence"])
def test_editing_one_structure_leaves_the_others_and_submits_all(scene, kind, tmp_path):
    logic, server, volume, seg, label = _segment(scene, kind, tmp_path)
    frame = 2
    if kind == "sequence":
        logic.showFrame(volume, frame)
        seg = logic.browserForVolume(volume).GetProxyNode(logic.browserForVolume(volume).GetSequenceNode(seg))
        lv = read_segment_mask(seg, "LV", volume)  # the shown frame (i, j, 1)
        lv[:, :, 0] = False
        lv[4:6, 3:5, 0] = True  # a smaller cavity, inside where the cavity was
        write_segment_mask(seg, "LV", volume, lv)
        new_lv = lv[:, :, 0]
    else:
        new_lv = np.zeros(SHAPE[:2], bool)
        new_lv[4:6, 3:5] = True
        _editor_stroke(seg, volume, "LV", frame, new_lv)
    assert logic.reviewedFrames(volume, seg) == [frame]  # the frame as a whole, whichever structure was edited
    exported = logic.readLabel(volume, seg, NAMES)
    for name in ("MYO", "LA"):
        np.testing.assert_array_equal(exported == NAMES[name], label == NAMES[name], err_msg=name)
    np.testing.assert_array_equal(exported[:, :, frame] == 1, new_lv)
    others = [t for t in range(SHAPE[2]) if t != frame]
    np.testing.assert_array_equal(exported[:, :, others], label[:, :, others])

    logic.submitLabel(volume, seg, "echo")
    image_id, stored, params = server.saved[-1]
    assert image_id == "clip1"
    assert params == {"label_names": NAMES, "reviewed_frames": [frame]}
    np.testing.assert_array_equal(stored.voxels, exported)
    assert set(np.unique(stored.voxels)) == {0, 1, 2, 3}


def test_refinement_sends_every_structure_and_paints_each_back(scene, tmp_path, monkeypatch):
    """Several structures: the label sent holds all values (a reviewed frame counts as corrected as a whole); the
    answer's values go into their own segments on the frames not reviewed; the reviewed frame stays as drawn."""
    logic, _, volume, seg, label = _segment(scene, "volume", tmp_path)
    frame = 1
    new_lv = np.zeros(SHAPE[:2], bool)
    new_lv[4:6, 3:5] = True
    _editor_stroke(seg, volume, "LV", frame, new_lv)
    drawn = logic.readLabel(volume, seg, NAMES)
    refined = np.roll(label, 1, axis=0)  # what the server answers: every structure moved by one voxel
    sent = {}

    def fake_refine(client, task, sent_label, corrected, **kwargs):
        sent.update(task=task, label=sent_label.voxels.copy(), corrected=list(corrected))
        kwargs["on_propagated"](Clip(refined, sent_label.ijk_to_ras, 2))
        return Clip(refined, sent_label.ijk_to_ras, 2)

    monkeypatch.setattr(roundtrips, "refine_clip_in_phases", fake_refine)
    out = logic.refineClip(volume, seg, "echo")
    assert sent["task"] == "echo_refine" and sent["corrected"] == [frame]
    np.testing.assert_array_equal(sent["label"], drawn)
    result = logic.readLabel(volume, out, NAMES)
    np.testing.assert_array_equal(result[:, :, frame], drawn[:, :, frame])
    others = [t for t in range(SHAPE[2]) if t != frame]
    np.testing.assert_array_equal(result[:, :, others], refined[:, :, others])
    assert logic.reviewedFrames(volume, out) == [frame]
