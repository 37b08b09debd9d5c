"""Self-checks of the Logic on a real MRML scene, shared by the module's in-Slicer self-test ("Reload and Test")
and CI (tests/test_slicer_mrml.py runs them on slicer-core), so both exercise the same steps.

Each check takes ``(scene, sequences_logic)`` and raises ``AssertionError`` on failure. The geometry checks compare
where Slicer draws a segment (its stored labelmap through its own image-to-world matrix) with where the label's
voxels lie through the clip's IJK→RAS: a wrong frame axis, a transposed frame or a dropped direction fails them.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np
from USSegClipLib import FALLBACK_COLORS, Clip, SegmentStyle, compose_matrix, read_volume, write_seg_nrrd

from .clipnodes import add_sequence_clip, add_volume_clip
from .logic import USSegClipLogic
from .mrml import read_segment_mask, segment_world_points, write_segment_mask

__all__ = ["CHECKS", "assert_covers", "check_seg_nrrd_storage", "check_sequence_clip", "check_server_flow",
           "check_several_structures", "check_volume_clip", "layered_label", "oblique_matrix", "moving_label"]

PALETTE = [SegmentStyle("lesion", 1, (1.0, 0.2, 0.2))]
# Three structures as an echo server names them (CAMUS values); LA without a colour gets the fallback colour.
STRUCTURES = [SegmentStyle("LV", 1, (1.0, 0.2, 0.2)), SegmentStyle("MYO", 2, (0.2, 0.8, 0.2)), SegmentStyle("LA", 3)]


def oblique_matrix(spacing, origin=(12.0, -7.0, 30.0), degrees: float = 30.0) -> np.ndarray:
    """IJK→RAS rotated about A by ``degrees`` and flipped on j, with ``spacing``."""
    a = np.deg2rad(degrees)
    direction = [[np.cos(a), 0, np.sin(a)], [0, -1, 0], [np.sin(a), 0, -np.cos(a)]]
    return compose_matrix(spacing, origin, direction)


def moving_label(shape) -> np.ndarray:
    """A (i, j, t) label whose target moves and changes size with t (no two frames alike, not symmetric)."""
    label = np.zeros(shape, np.uint8)
    for t in range(shape[2]):
        label[2 + t : 8 + t, 3 : 9 + t % 3, t] = 1
    return label


def layered_label(shape) -> np.ndarray:
    """A (i, j, t) label of three structures (1 cavity, 2 a wall around it, 3 a chamber below) moving with t."""
    label = np.zeros(shape, np.uint8)
    for t in range(shape[2]):
        label[1 + t % 2 : 9 + t % 2, 1:8, t] = 2
        label[3 + t % 2 : 7 + t % 2, 3:6, t] = 1
        label[2 : shape[0] - 2, 9 : 9 + 2 + t % 3, t] = 3
    return label


def assert_covers(segmentation, segment_name: str, label_ijk: np.ndarray, ijk_to_ras) -> None:
    """Slicer draws ``segment_name`` exactly on the voxels of ``label_ijk`` placed by ``ijk_to_ras``: every drawn
    voxel centre maps back (RAS→IJK) onto a whole voxel of the label's grid (within 1e-3), and those voxels are
    the label's non-zero ones."""
    segment_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName(segment_name)
    assert segment_id, f"no segment {segment_name!r} in {segmentation.GetName()!r}"
    m = np.asarray(ijk_to_ras, dtype=np.float64)
    points = segment_world_points(segmentation, segment_id)
    ijk = (points - m[:3, 3]) @ np.linalg.inv(m[:3, :3]).T
    index = np.rint(ijk).astype(int)
    off_grid = float(np.abs(ijk - index).max()) if len(ijk) else 0.0
    assert off_grid < 1e-3, f"segment {segment_name!r} lies {off_grid:.3f} voxel off the label's grid"
    shape = np.shape(label_ijk)
    inside = np.all((index >= 0) & (index < np.array(shape)), axis=1)
    assert inside.all(), f"{int((~inside).sum())} voxels of {segment_name!r} lie outside the label's grid {shape}"
    drawn = np.zeros(shape, bool)
    drawn[tuple(index.T)] = True
    expected = np.asarray(label_ijk) > 0
    wrong = int(np.count_nonzero(drawn != expected))
    assert wrong == 0, (f"segment {segment_name!r} differs from the label in {wrong} voxels "
                        f"({int(drawn.sum())} drawn, {int(expected.sum())} labelled)")


def check_volume_clip(scene, sequences_logic=None) -> None:
    """Volume clip (frames on k, oblique flipped IJK→RAS): label written, drawn where it belongs, read back; an
    edit of frame 4 and a mark on frame 1 are the reviewed frames."""
    logic = USSegClipLogic(scene, sequencesLogic=sequences_logic)
    matrix = oblique_matrix([0.3, 0.4, 1.0])
    volume = add_volume_clip(scene, np.random.default_rng(0).integers(0, 255, (6, 20, 24), np.uint8), matrix)
    clip = logic.clipFromVolume(volume)
    assert clip.voxels.shape == (24, 20, 6) and np.allclose(clip.ijk_to_ras, matrix)
    label = moving_label((24, 20, 6))
    seg = logic.writeLabel(volume, None, Clip(label, matrix, 2), PALETTE)
    logic._setBaseline(volume, seg)
    np.testing.assert_array_equal(logic.readLabel(volume, seg, {"lesion": 1}), label)
    assert_covers(seg, "lesion", label, matrix)
    mask = read_segment_mask(seg, "lesion", volume)
    mask[:, :, 4] = False
    mask[0:3, 0:3, 4] = True
    write_segment_mask(seg, "lesion", volume, mask)  # what a Segment Editor stroke does
    assert logic.reviewedFrames(volume, seg) == [4], logic.reviewedFrames(volume, seg)
    assert logic.markFrameReviewed(volume, seg, 1) == [1, 4]
    assert logic.reviewSummary(volume, seg) == "2 of 6 frames reviewed"


def check_sequence_clip(scene, sequences_logic) -> None:
    """Sequence of 2-D frames with a browser: one segmentation per frame, synchronized; frame t drawn on frame t;
    an edit of the shown frame is found."""
    logic = USSegClipLogic(scene, sequencesLogic=sequences_logic)
    matrix = oblique_matrix([0.2, 0.25, 1.0])
    frames = np.random.default_rng(1).integers(0, 255, (5, 12, 16), np.uint8)
    browser, proxy = add_sequence_clip(scene, sequences_logic, frames, matrix)
    clip = logic.clipFromVolume(proxy)
    np.testing.assert_array_equal(clip.voxels, frames.transpose(2, 1, 0))
    label = moving_label((16, 12, 5))
    seg = logic.writeLabel(proxy, None, Clip(label, clip.ijk_to_ras, 2), PALETTE)
    logic._setBaseline(proxy, seg)
    sequence = browser.GetSequenceNode(seg)
    assert sequence is not None and sequence.GetNumberOfDataNodes() == 5
    for t in range(5):
        logic.showFrame(proxy, t)
        assert logic.currentFrame(proxy) == t
        assert_covers(browser.GetProxyNode(sequence), "lesion", label[:, :, t : t + 1], matrix)
    logic.showFrame(proxy, 2)
    shown = browser.GetProxyNode(sequence)
    write_segment_mask(shown, "lesion", proxy, np.zeros((16, 12, 1), bool))  # the user erases frame 2
    assert logic.editedFrames(proxy, shown) == [2], logic.editedFrames(proxy, shown)
    expected = label.copy()
    expected[:, :, 2] = 0
    np.testing.assert_array_equal(logic.readLabel(proxy, shown, {"lesion": 1}), expected)


def check_seg_nrrd_storage(scene, sequences_logic=None) -> None:
    """A ``.seg.nrrd`` from USSegClipLib loads through Slicer's segmentation storage node: name, colour, extent."""
    logic = USSegClipLogic(scene, sequencesLogic=sequences_logic)
    matrix = oblique_matrix([0.3, 0.4, 1.0])
    label = moving_label((24, 20, 6))
    path = write_seg_nrrd(os.path.join(tempfile.mkdtemp(), "clip.seg.nrrd"), Clip(label, matrix, 2),
                          {"lesion": 1}, {"lesion": (1.0, 0.2, 0.2)})
    seg = logic.loadSegmentationFile(path)
    segment = seg.GetSegmentation().GetSegment(seg.GetSegmentation().GetSegmentIdBySegmentName("lesion"))
    np.testing.assert_allclose(segment.GetColor(), (1.0, 0.2, 0.2), atol=1e-3)
    assert_covers(seg, "lesion", label, matrix)


def check_server_flow(scene, sequences_logic, url: str, strategy: str | None = None) -> None:
    """Against a running usseg server: next clip → segment (drawn where the server's label is) → edit a frame →
    submit (stored label = edits, ``reviewed_frames`` stored) → refine from the edit when the server offers it."""
    logic = USSegClipLogic(scene, sequencesLogic=sequences_logic)
    info = logic.connect(url)
    model = logic.clipModels(info)[0]
    volume = logic.loadNextSample(strategy or sorted(info["strategies"])[0])
    seg = logic.segmentClip(volume, model, params={"allow_untrained": True})
    name = logic.palette(model)[0].name
    value = logic.palette(model)[0].value
    label = logic.readLabel(volume, seg, logic.labelValues(model))
    assert_covers(seg, name, label == value, logic.ijkToRas(volume))
    mask = read_segment_mask(seg, name, volume)
    frame = logic.numberOfFrames(volume) // 2
    mask[:, :, frame] = False
    mask[: mask.shape[0] // 3, : mask.shape[1] // 3, frame] = True
    write_segment_mask(seg, name, volume, mask)
    for other in logic.palette(model)[1:]:  # several structures: the new voxels belong to the first one only
        other_mask = read_segment_mask(seg, other.name, volume)
        if np.any(other_mask & mask):
            other_mask[mask] = False
            write_segment_mask(seg, other.name, volume, other_mask)
    assert logic.reviewedFrames(volume, seg) == [frame]
    result = logic.submitLabel(volume, seg, model)
    stored = read_volume(logic.client.download_label(result["label"], "final", tempfile.mkdtemp()))
    np.testing.assert_array_equal(stored.voxels == value, mask)
    record = logic.client.datastore("all")["objects"][result["image"]]["labels"]["final"]["info"]
    assert record.get("reviewed_frames") == [frame], json.dumps(record)
    if f"{model}_refine" in info["models"]:
        seg = logic.refineClip(volume, seg, model, params={"max_steps": 2})
        np.testing.assert_array_equal(read_segment_mask(seg, name, volume)[:, :, frame], mask[:, :, frame])
        assert logic.reviewedFrames(volume, seg) == [frame]


def check_several_structures(scene, sequences_logic) -> None:
    """Cine sequence with three structures: one segment per structure (server names, colours, fallback colour where
    the server gives none), drawn where its value lies; an edit of LV on the shown frame leaves MYO and LA as they
    were, is that frame's review, and the exported label keeps every structure's value."""
    logic = USSegClipLogic(scene, sequencesLogic=sequences_logic)
    matrix = oblique_matrix([0.2, 0.25, 1.0])
    browser, proxy = add_sequence_clip(scene, sequences_logic, np.zeros((4, 14, 16), np.uint8), matrix)
    label = layered_label((16, 14, 4))
    seg = logic.writeLabel(proxy, None, Clip(label, matrix, 2), STRUCTURES)
    logic._setBaseline(proxy, seg)
    values = {s.name: s.value for s in STRUCTURES}
    sequence = browser.GetSequenceNode(seg)
    for t in range(4):
        logic.showFrame(proxy, t)
        shown = browser.GetProxyNode(sequence).GetSegmentation()
        names = [shown.GetNthSegment(i).GetName() for i in range(shown.GetNumberOfSegments())]
        assert names == ["LV", "MYO", "LA"], names
        for style, color in zip(STRUCTURES, [(1.0, 0.2, 0.2), (0.2, 0.8, 0.2), FALLBACK_COLORS[2]]):
            np.testing.assert_allclose(shown.GetSegment(style.name).GetColor(), color, atol=1e-6)
            assert_covers(browser.GetProxyNode(sequence), style.name, label[:, :, t : t + 1] == style.value, matrix)
    np.testing.assert_array_equal(logic.readLabel(proxy, seg, values), label)
    logic.showFrame(proxy, 1)
    shown = browser.GetProxyNode(sequence)
    lv = read_segment_mask(shown, "LV", proxy)
    lv[4:6, 3:6, 0] = False  # the user shrinks the cavity on frame 1 (the freed voxels become background)
    write_segment_mask(shown, "LV", proxy, lv)
    assert logic.editedFrames(proxy, shown) == [1], logic.editedFrames(proxy, shown)
    expected = label.copy()
    expected[4:6, 3:6, 1] = 0
    exported = logic.readLabel(proxy, shown, values)
    np.testing.assert_array_equal(exported, expected)
    for name in ("MYO", "LA"):
        np.testing.assert_array_equal(exported == values[name], label == values[name])


CHECKS = [
    ("volume clip: frame t of the segmentation covers frame t in RAS; edits are reviewed frames", check_volume_clip),
    ("sequence clip: one segmentation per frame, synchronized with the browser", check_sequence_clip),
    (".seg.nrrd from USSegClipLib through Slicer's segmentation storage node", check_seg_nrrd_storage),
    ("several structures: one named, coloured segment each; editing one leaves the others", check_several_structures),
]
