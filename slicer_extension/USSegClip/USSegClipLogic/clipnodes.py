"""Build clip nodes from arrays, as Slicer's loaders leave them: a volume with frames along k, or a sequence of
2-D frames with a browser and a proxy (how the DICOM module loads a cine as a Sequence). Used by the self-tests
and handy in scripts.
"""

from __future__ import annotations

import numpy as np
import slicer

from .mrml import set_ijk_to_ras

__all__ = ["add_sequence_clip", "add_volume_clip"]


def _node_class(array: np.ndarray, frame_dims: int) -> str:
    colour = array.ndim == frame_dims + 1 and array.shape[-1] in (3, 4)
    return "vtkMRMLVectorVolumeNode" if colour else "vtkMRMLScalarVolumeNode"


def add_volume_clip(scene, voxels_kji: np.ndarray, ijk_to_ras, name: str = "clip"):
    """A volume node from a (k, j, i) grey or (k, j, i, 3) colour array (frames along k) with ``ijk_to_ras``."""
    voxels = np.asarray(voxels_kji)
    volume = scene.AddNewNodeByClass(_node_class(voxels, 3), name)
    slicer.util.updateVolumeFromArray(volume, np.ascontiguousarray(voxels))
    set_ijk_to_ras(volume, ijk_to_ras)
    volume.CreateDefaultDisplayNodes()
    return volume


def add_sequence_clip(scene, sequences_logic, frames_ji, frame_ijk_to_ras, name: str = "cine",
                      index_unit: str = "s", frame_time: float = 1.0):
    """A sequence of one-slice volumes from (T, j, i) grey or (T, j, i, 3) colour frames, with a browser.

    Args:
        scene: the MRML scene.
        sequences_logic: a ``vtkSlicerSequencesLogic`` on ``scene`` (it creates and moves the proxy).
        frames_ji: the frames, first axis = time.
        frame_ijk_to_ras: IJK→RAS of every frame (k = 0 is the frame plane).
        name: the sequence's name (the proxy volume gets it too).
        index_unit: unit of the index values (``frame_time`` × item number).
        frame_time: time between frames.

    Returns:
        ``(browser, proxy)``.
    """
    frames = np.asarray(frames_ji)
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    sequence.SetIndexName("time")
    sequence.SetIndexUnit(index_unit)
    node_class = _node_class(frames, 3)
    for t in range(frames.shape[0]):
        node = scene.AddNewNodeByClass(node_class, f"{name} frame {t}")
        slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(frames[t][None]))
        set_ijk_to_ras(node, frame_ijk_to_ras)
        sequence.SetDataNodeAtValue(node, f"{t * frame_time:g}")
        scene.RemoveNode(node)
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{name} browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    sequences_logic.UpdateProxyNodesFromSequences(browser)
    proxy = browser.GetProxyNode(sequence)
    if proxy.GetDisplayNode() is None:
        proxy.CreateDefaultDisplayNodes()
    return browser, proxy
