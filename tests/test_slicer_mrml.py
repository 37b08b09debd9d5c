"""USSegClipLogic on real MRML (Kitware's ``slicer-core`` wheel: Slicer's MRML, Segmentations and Sequences
libraries without Qt), no server: the module's own self-checks, palettes, reviewed frames, file loading.

The server round trips (segment, edit, submit, refine, ``.seg.nrrd``) are in ``test_slicer_mrml_server.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mrml_support import require_slicer_core

slicer = require_slicer_core()

from USSegClipLib import Clip, SegmentStyle, USSegClipError, label_palette  # noqa: E402
from USSegClipLogic import (  # noqa: E402
    REVIEWED_ATTRIBUTE,
    USSegClipLogic,
    add_sequence_clip,
    add_volume_clip,
    read_segment_mask,
    segmentation_edited_event,
    selftest,
    write_segment_mask,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("check", [c for _, c in selftest.CHECKS], ids=lambda c: c.__name__)
def test_in_slicer_self_checks_pass_on_slicer_core(scene, check):
    """The steps the module's "Reload and Test" runs inside Slicer, here on slicer-core."""
    check(*scene)


def test_self_checks_catch_a_transposed_frame(scene, monkeypatch):
    """The self-check's geometry assertion is not vacuous: a label painted transposed is caught."""
    mrml_scene, sequences = scene
    logic = USSegClipLogic(mrml_scene, sequencesLogic=sequences)
    matrix = selftest.oblique_matrix([0.3, 0.3, 1.0])
    volume = add_volume_clip(mrml_scene, np.zeros((4, 16, 16), np.uint8), matrix)
    label = selftest.moving_label((16, 16, 4))
    seg = logic.writeLabel(volume, None, Clip(label.transpose(1, 0, 2).copy(), matrix, 2), selftest.PALETTE)
    with pytest.raises(AssertionError, match="differs from the label"):
        selftest.assert_covers(seg, "lesion", label, matrix)


def test_palette_names_and_colours_come_from_the_server(scene):
    mrml_scene, sequences = scene
    info = {"models": {"dsanet": {"labels": {"lesion": 1}, "dimension": 3},
                       "dsanet_refine": {"labels": {"lesion": 1}, "dimension": 3}}}
    answer = {"label_names": {"cyst": 2, "nodule": 1}, "label_colors": {"nodule": [0.1, 0.2, 0.3]}}
    palette = label_palette(answer)
    assert palette == [SegmentStyle("nodule", 1, (0.1, 0.2, 0.3)), SegmentStyle("cyst", 2, None)]
    assert label_palette(None, info, "dsanet") == [SegmentStyle("lesion", 1, None)]
    logic = USSegClipLogic(mrml_scene, sequencesLogic=sequences)
    logic.info = info
    assert logic.clipModels(info) == ["dsanet"]  # the refinement task is not a model to pick
    volume = add_volume_clip(mrml_scene, np.zeros((3, 8, 8), np.uint8), np.eye(4))
    label = np.zeros((8, 8, 3), np.uint8)
    label[1:3, 1:3, :] = 1
    label[5:7, 5:7, :] = 2
    seg = logic.writeLabel(volume, None, Clip(label, np.eye(4), 2), palette)
    segmentation = seg.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert names == ["nodule", "cyst"]
    np.testing.assert_allclose(segmentation.GetSegment("nodule").GetColor(), (0.1, 0.2, 0.3))
    np.testing.assert_array_equal(logic.readLabel(volume, seg, {"nodule": 1, "cyst": 2}), label)


def _erase_and_paint(segmentation, volume, frame, mask):
    """What a Segment Editor erase + paint does to one frame of a volume clip (merge modes, slice extent)."""
    import vtk
    from vtk.util import numpy_support

    logic = slicer.vtkSlicerSegmentationsModuleLogic
    dims = volume.GetImageData().GetDimensions()
    extent = [0, dims[0] - 1, 0, dims[1] - 1, frame, frame]
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    segment_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName("lesion")
    for mode, values in ((logic.MODE_MERGE_MIN, np.zeros_like(mask)), (logic.MODE_MERGE_MAX, mask)):
        image = slicer.vtkOrientedImageData()
        image.SetExtent(extent)
        image.SetImageToWorldMatrix(matrix)
        image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
        numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[:] = values.T.ravel()
        assert logic.SetBinaryLabelmapToSegment(image, segmentation, segment_id, mode, extent)


def test_reviewed_frames_follow_edits_marks_and_model_output(scene):
    mrml_scene, sequences = scene
    logic = USSegClipLogic(mrml_scene, sequencesLogic=sequences)
    matrix = selftest.oblique_matrix([0.4, 0.4, 2.0])
    volume = add_volume_clip(mrml_scene, np.zeros((8, 12, 14), np.uint8), matrix)
    label = selftest.moving_label((14, 12, 8))
    seg = logic.writeLabel(volume, None, Clip(label, matrix, 2), selftest.PALETTE)
    assert logic.reviewedFrames(volume, seg) == []  # nothing known about edits yet
    logic._setBaseline(volume, seg)
    mask = np.zeros((14, 12), np.uint8)
    mask[0:4, 0:4] = 1
    _erase_and_paint(seg, volume, 6, mask)
    _erase_and_paint(seg, volume, 2, label[:, :, 2])  # repainted identically: not an edit
    assert logic.editedFrames(volume, seg) == [6]
    assert logic.markFrameReviewed(volume, seg, 0) == [0, 6]
    assert logic.markFrameReviewed(volume, seg, 6, reviewed=False) == [0, 6]  # an edit stays a review
    assert logic.markFrameReviewed(volume, seg, 0, reviewed=False) == [6]
    assert logic.reviewSummary(volume, seg) == "1 of 8 frames reviewed"
    with pytest.raises(USSegClipError, match="out of range"):
        logic.markFrameReviewed(volume, seg, 8)
    assert logic.markAllFramesReviewed(volume, seg) == list(range(8))
    assert seg.GetAttribute(REVIEWED_ATTRIBUTE) == "0 1 2 3 4 5 6 7"  # saved with the scene
    edited = logic.readLabel(volume, seg, {"lesion": 1})
    np.testing.assert_array_equal(edited[:, :, 6], mask)
    np.testing.assert_array_equal(np.delete(edited, 6, axis=2), np.delete(label, 6, axis=2))


def test_sequence_edits_are_found_on_any_frame(scene):
    """Edits made on the shown frame of a cine sequence are found after the browser moved on."""
    mrml_scene, sequences = scene
    logic = USSegClipLogic(mrml_scene, sequencesLogic=sequences)
    matrix = selftest.oblique_matrix([0.2, 0.3, 1.0])
    browser, proxy = add_sequence_clip(mrml_scene, sequences, np.zeros((6, 10, 12, 3), np.uint8), matrix)
    assert proxy.IsA("vtkMRMLVectorVolumeNode")  # colour frames, as a colour DICOM cine loads
    label = selftest.moving_label((12, 10, 6))
    seg = logic.writeLabel(proxy, None, Clip(label, logic.clipFromVolume(proxy).ijk_to_ras, 2), selftest.PALETTE)
    logic._setBaseline(proxy, seg)
    sequence = browser.GetSequenceNode(seg)
    assert browser.IsSynchronizedSequenceNodeID(sequence.GetID()) and sequence.GetNumberOfDataNodes() == 6
    for frame in (1, 4):
        browser.SetSelectedItemNumber(frame)
        shown = browser.GetProxyNode(sequence)
        mask = read_segment_mask(shown, "lesion", proxy)
        mask[:, :, 0] = ~mask[:, :, 0]
        write_segment_mask(shown, "lesion", proxy, mask)
    browser.SetSelectedItemNumber(0)
    assert logic.reviewedFrames(proxy, seg) == [1, 4]
    assert logic.reviewSummary(proxy, seg) == "2 of 6 frames reviewed"


def test_real_multiframe_dicom_loads_with_frames_on_k(scene, us_dicom_dir):
    """Slicer's own reader (what "Add data" uses) loads a colour US cine as a colour volume, frames along k."""
    path = us_dicom_dir / "examples_ybr_color.dcm"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    mrml_scene, sequences = scene
    logic = USSegClipLogic(mrml_scene, sequencesLogic=sequences)
    volume = logic.loadVolumeFile(str(path))
    assert volume.IsA("vtkMRMLVectorVolumeNode") and volume.GetImageData().GetDimensions() == (320, 240, 30)
    assert logic.dicomFile(volume) == str(path)
    clip = logic.clipFromVolume(volume)
    assert clip.voxels.shape == (320, 240, 30) and clip.num_frames == 30
    with pytest.raises(USSegClipError, match="could not read"):
        logic.loadVolumeFile(str(REPO / "README.md"))


def test_voxel_edits_fire_the_event_the_panel_recounts_on(scene):
    """The panel recounts reviewed frames on ``vtkSegmentation.SourceRepresentationModified`` of the segmentation
    node (USSegClip.py, observeSegmentation, through ``segmentation_edited_event``): a voxel edit fires it
    (``SegmentModified`` is for names/colours)."""
    mrml_scene, sequences = scene
    source = (REPO / "slicer_extension" / "USSegClip" / "USSegClip.py").read_text()
    assert "edited = segmentation_edited_event()" in source
    assert segmentation_edited_event() == slicer.vtkSegmentation.SourceRepresentationModified
    logic = USSegClipLogic(mrml_scene, sequencesLogic=sequences)
    volume = add_volume_clip(mrml_scene, np.zeros((3, 8, 8), np.uint8), np.eye(4))
    seg = logic.writeLabel(volume, None, Clip(np.zeros((8, 8, 3), np.uint8), np.eye(4), 2), selftest.PALETTE)
    fired = []
    seg.AddObserver(segmentation_edited_event(), lambda caller, event: fired.append(event))
    mask = np.zeros((8, 8, 3), bool)
    mask[2:4, 2:4, 1] = True
    write_segment_mask(seg, "lesion", volume, mask)
    assert fired
