"""A clip's frames in MRML: the browser of a cine loaded as a Sequence, its frame nodes, the :class:`Clip` array of
a volume (frames along k) or of a sequence of 2-D frames, the frame the views show and bringing a frame into view.

A clip is a volume node, or the proxy node of a sequence of 2-D frames; ``sequences_logic`` (a
``vtkSlicerSequencesLogic``) tells which, by finding the browser whose proxy the node is.
"""

from __future__ import annotations

import numpy as np
import slicer
from USSegClipLib import (
    Clip,
    USSegClipError,
    frame_index_from_ras,
    kji_to_ijk,
    ras_of_frame,
    stack_frames,
    to_grey,
)

from .mrml import ijk_to_ras

__all__ = [
    "browser_for_volume",
    "clip_from_sequence",
    "clip_from_volume",
    "current_frame",
    "frame_nodes",
    "number_of_frames",
    "show_frame",
]


def browser_for_volume(sequences_logic, volume):
    """The sequence browser whose proxy is ``volume`` (a cine loaded as a Sequence), or None."""
    if volume is None:
        return None
    return sequences_logic.GetFirstBrowserNodeForProxyNode(volume)


def frame_nodes(browser, sequence) -> list:
    """The data nodes of ``sequence`` in the browser's item order (no browsing: the views do not move)."""
    master = browser.GetMasterSequenceNode()
    nodes = []
    for item in range(browser.GetNumberOfItems()):
        node = sequence.GetDataNodeAtValue(master.GetNthIndexValue(item))
        if node is None:
            raise USSegClipError(f"sequence {sequence.GetName()!r} has no item {item} of the clip's browser")
        nodes.append(node)
    return nodes


def clip_from_volume(sequences_logic, volume) -> Clip:
    """:class:`Clip` of a volume node (frames along k) or of the sequence whose proxy is ``volume``."""
    if volume is None or volume.GetImageData() is None:
        raise USSegClipError("select a clip (a volume with voxels) first")
    browser = browser_for_volume(sequences_logic, volume)
    if browser is not None:
        return clip_from_sequence(browser, volume)
    voxels = kji_to_ijk(to_grey(slicer.util.arrayFromVolume(volume)))
    return Clip(np.array(voxels), ijk_to_ras(volume), 2)


def clip_from_sequence(browser, proxy) -> Clip:
    """Stack a sequence of 2-D frames into (i, j, t); the frame step is 1 along the frame plane's normal."""
    frames, matrix = [], None
    for item, node in enumerate(frame_nodes(browser, browser.GetSequenceNode(proxy))):
        array = to_grey(slicer.util.arrayFromVolume(node))
        if array.shape[0] != 1:
            raise USSegClipError(f"sequence item {item} is not a 2-D frame (shape {array.shape})")
        frames.append(np.array(kji_to_ijk(array))[:, :, 0])
        if matrix is None:
            matrix = ijk_to_ras(node)
    return stack_frames(frames, matrix)


def number_of_frames(sequences_logic, volume) -> int:
    """The clip's frame count: the browser's items, or the volume's extent along k."""
    browser = browser_for_volume(sequences_logic, volume)
    if browser is not None:
        return browser.GetNumberOfItems()
    return volume.GetImageData().GetDimensions()[2]


def current_frame(sequences_logic, volume, slice_node=None) -> int | None:
    """Frame shown now: the browser's item, or RAS→IJK of the slice view's centre (never its slice offset)."""
    browser = browser_for_volume(sequences_logic, volume)
    if browser is not None:
        return browser.GetSelectedItemNumber()
    if slice_node is None:
        return None
    centre = slicer.util.arrayFromVTKMatrix(slice_node.GetSliceToRAS())[:3, 3]
    try:
        return frame_index_from_ras(ijk_to_ras(volume), centre, 2, volume.GetImageData().GetDimensions()[2])
    except USSegClipError:
        return None


def show_frame(scene, sequences_logic, volume, frame: int) -> None:
    """Bring ``frame`` into the views: select it in the browser, or centre every slice view of ``scene`` on it."""
    browser = browser_for_volume(sequences_logic, volume)
    if browser is not None:
        browser.SetSelectedItemNumber(int(frame))
        return
    ras = ras_of_frame(ijk_to_ras(volume), volume.GetImageData().GetDimensions(), int(frame), 2)
    slicer.vtkMRMLSliceNode.JumpAllSlices(scene, float(ras[0]), float(ras[1]), float(ras[2]),
                                          slicer.vtkMRMLSliceNode.CenteredJumpSlice)
