"""Files ↔ nodes for the USSegClip Logic: an image file (NIfTI, NRRD, multi-frame DICOM) read into a volume node,
a ``.seg.nrrd`` read into a segmentation node through Slicer's storage nodes, and the DICOM file a clip came from.
"""

from __future__ import annotations

import os
import re

import slicer
import vtk
from USSegClipLib import USSegClipError

__all__ = ["dicom_file", "load_segmentation_file", "load_volume_file"]


def load_volume_file(scene, path: str, name: str | None = None):
    """Load an image file (NIfTI, NRRD, a multi-frame DICOM: frames on k) as a scalar or colour volume node."""
    name = name or re.sub(r"(\.nii\.gz|\.[^.]+)$", "", os.path.basename(path))
    for node_class in ("vtkMRMLScalarVolumeNode", "vtkMRMLVectorVolumeNode"):
        storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
        storage.SetFileName(path)
        storage.SetSingleFile(1)
        volume = scene.AddNewNodeByClass(node_class, name)
        shown = vtk.vtkObject.GetGlobalWarningDisplay()
        if node_class == "vtkMRMLScalarVolumeNode":
            vtk.vtkObject.GlobalWarningDisplayOff()  # a colour file fails here first: expected, not an error
        try:
            read = storage.ReadData(volume)
        finally:
            vtk.vtkObject.SetGlobalWarningDisplay(shown)
        if read:
            volume.SetAndObserveStorageNodeID(storage.GetID())
            volume.CreateDefaultDisplayNodes()
            return volume
        scene.RemoveNode(volume)
        scene.RemoveNode(storage)
    raise USSegClipError(f"Slicer could not read {path} as a volume")


def load_segmentation_file(scene, path: str, name: str | None = None):
    """Load a ``.seg.nrrd`` through Slicer's segmentation storage node (segment names, colours and extent as the
    file holds them)."""
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(path)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name or os.path.basename(path).split(".")[0])
    if not storage.ReadData(segmentation):
        scene.RemoveNode(segmentation)
        scene.RemoveNode(storage)
        raise USSegClipError(f"Slicer could not read the segmentation file {path}")
    segmentation.SetAndObserveStorageNodeID(storage.GetID())
    segmentation.CreateDefaultDisplayNodes()
    return segmentation


def dicom_file(volume) -> str | None:
    """The DICOM file a clip was loaded from (DICOM database instance, or a ``.dcm`` storage file), or None."""
    uids = (volume.GetAttribute("DICOM.instanceUIDs") or "").split()
    database = getattr(slicer, "dicomDatabase", None)
    if len(uids) == 1 and database is not None:
        path = database.fileForInstance(uids[0])
        if path and os.path.isfile(path):
            return path
    storage = volume.GetStorageNode()
    path = storage.GetFileName() if storage is not None else None
    if path and path.lower().endswith(".dcm") and os.path.isfile(path):
        return path
    return None
