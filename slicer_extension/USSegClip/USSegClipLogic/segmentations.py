"""Label clips ↔ segmentation nodes: a label (IJK order, values = the server's labels) painted into one segment per
server label (structure), and read back as masks over every frame.

Each structure is its own segment, named and coloured as the server says (a value the server does not name becomes
``Segment_<value>``; a structure without a server colour gets the fallback colour of its position, see
:func:`USSegClipLib.palette_for_label`). Writing a label replaces every structure's voxels on the frames written and
leaves other frames alone; reading gives every segment's mask, so an edit of one segment leaves the others as they are.

A volume clip's label is one segmentation on the volume's grid. A cine sequence's label is one segmentation per
frame, in a segmentation sequence synchronized with the clip's browser; the caller then holds its proxy node, and the
shown frame's proxy may hold edits not yet saved into the sequence.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import slicer
from USSegClipLib import Clip, SegmentStyle, USSegClipError, palette_for_label

from .frames import browser_for_volume, frame_nodes
from .mrml import segment_masks, write_segment_mask

__all__ = ["ensure_segmentation", "label_node", "read_masks", "write_label"]


def ensure_segmentation(scene, volume, segmentation, palette: list[SegmentStyle]):
    """A segmentation on ``volume``'s grid holding one segment per server label (names and colours from the
    server; the fallback colour of its position where the server gives none); a new node in ``scene`` when
    ``segmentation`` is None. Segments already there keep their colour (the user may have changed it)."""
    if segmentation is None:
        segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{volume.GetName()} label")
    if segmentation.GetScene() is not None and segmentation.GetDisplayNode() is None:
        segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    seg = segmentation.GetSegmentation()
    for style in palette_for_label(palette):
        if not seg.GetSegmentIdBySegmentName(style.name):
            segment_id = seg.AddEmptySegment(style.name, style.name)
            seg.GetSegment(segment_id).SetColor(*style.color)
    return segmentation


def _segmentation_sequence(scene, sequences_logic, browser, proxy, segmentation):
    """The segmentation sequence synchronized with ``browser`` (created with one empty segmentation per item)."""
    if segmentation is not None:
        sequence = browser.GetSequenceNode(segmentation)
        if sequence is not None:
            return sequence
    volumes = browser.GetSequenceNode(proxy)
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", f"{proxy.GetName()} label")
    sequence.SetIndexName(volumes.GetIndexName())
    sequence.SetIndexUnit(volumes.GetIndexUnit())
    sequence.SetIndexType(volumes.GetIndexType())  # browsing requires matching index types
    for item in range(volumes.GetNumberOfDataNodes()):
        sequence.SetDataNodeAtValue(slicer.vtkMRMLSegmentationNode(), volumes.GetNthIndexValue(item))
    browser.AddSynchronizedSequenceNode(sequence)
    browser.SetSaveChanges(sequence, True)  # edits of the shown frame go back into the sequence
    sequences_logic.UpdateProxyNodesFromSequences(browser)
    return sequence


def label_node(sequences_logic, volume, segmentation):
    """The node that stands for a clip's whole label: the segmentation sequence of a cine sequence, else the
    segmentation itself (where the label's review state is kept)."""
    browser = browser_for_volume(sequences_logic, volume)
    if browser is not None and segmentation is not None:
        sequence = browser.GetSequenceNode(segmentation)
        if sequence is not None:
            return sequence
    return segmentation


def write_label(scene, sequences_logic, volume, segmentation, label: Clip, palette: list[SegmentStyle],
                frames: Iterable[int] | None = None):
    """Paint a label clip (IJK order, values = server labels) into the segments, one per structure; only ``frames``
    when given (every structure of those frames is replaced; other frames keep what they hold).

    Returns the segmentation (for a cine sequence: the proxy of its per-frame segmentation sequence).
    """
    frames = list(range(label.num_frames)) if frames is None else sorted({int(f) for f in frames})
    palette = palette_for_label(palette, label.voxels)
    browser = browser_for_volume(sequences_logic, volume)
    if browser is not None:
        return _write_sequence_label(scene, sequences_logic, browser, volume, segmentation, label, palette, frames)
    segmentation = ensure_segmentation(scene, volume, segmentation, palette)
    current = segment_masks(segmentation, volume)
    seg = segmentation.GetSegmentation()
    for style in palette:
        mask = current.get(style.name, np.zeros(label.voxels.shape, bool)).copy()
        for t in frames:
            mask[:, :, t] = label.voxels[:, :, t] == style.value
        write_segment_mask(segmentation, seg.GetSegmentIdBySegmentName(style.name), volume, mask)
    return segmentation


def _write_sequence_label(scene, sequences_logic, browser, proxy, segmentation, label, palette, frames):
    """Per-frame segmentations in the sequence synchronized with the browser; returns its proxy segmentation."""
    sequence = _segmentation_sequence(scene, sequences_logic, browser, proxy, segmentation)
    frame_volumes = frame_nodes(browser, browser.GetSequenceNode(proxy))
    frame_segs = frame_nodes(browser, sequence)
    for t in frames:
        frame_seg = ensure_segmentation(scene, frame_volumes[t], frame_segs[t], palette)
        seg = frame_seg.GetSegmentation()
        for style in palette:
            mask = label.voxels[:, :, t : t + 1] == style.value
            write_segment_mask(frame_seg, seg.GetSegmentIdBySegmentName(style.name), frame_volumes[t], mask)
    sequences_logic.UpdateProxyNodesFromSequences(browser)  # the shown frame's proxy gets the new label
    shown = browser.GetProxyNode(sequence)
    if shown.GetDisplayNode() is None:
        shown.CreateDefaultDisplayNodes()
    return shown


def read_masks(sequences_logic, volume, segmentation) -> dict[str, np.ndarray]:
    """Segment name → boolean (i, j, t) mask over every frame of the clip."""
    browser = browser_for_volume(sequences_logic, volume)
    if browser is None:
        return segment_masks(segmentation, volume)
    sequence = browser.GetSequenceNode(segmentation)
    if sequence is None:
        raise USSegClipError("the segmentation is not part of the clip's sequence browser")
    frame_volumes = frame_nodes(browser, browser.GetSequenceNode(volume))
    frame_segs = frame_nodes(browser, sequence)
    shown = browser.GetSelectedItemNumber()
    per_frame = []
    for t, (frame_volume, frame_seg) in enumerate(zip(frame_volumes, frame_segs)):
        source = segmentation if t == shown else frame_seg  # the shown frame may hold unsaved edits
        per_frame.append(segment_masks(source, frame_volume))
    names = sorted({name for masks in per_frame for name in masks})
    shape = frame_volumes[0].GetImageData().GetDimensions()[:2]
    empty = np.zeros(shape, bool)
    return {name: np.stack([m.get(name, empty[:, :, None])[:, :, 0] for m in per_frame], axis=2)
            for name in names}
