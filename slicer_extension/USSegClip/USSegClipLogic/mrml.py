"""MRML helpers of the USSegClip Logic: node geometry, segment masks on a volume's voxel grid, sequences.

Everything here goes through MRML classes and the modules' logic classes (``vtkSlicerSegmentationsModuleLogic``
static methods, ``vtkOrientedImageData``, ``vtkSlicerSequencesLogic``), never through ``slicer.modules``,
``slicer.mrmlScene`` or Qt, so it runs in 3D Slicer and on the ``slicer-core`` wheel alike.

Masks are numpy arrays in IJK order ``(i, j, k)`` (usseg's ``(X, Y, T)``); Slicer's voxel arrays are ``(k, j, i)``.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

__all__ = [
    "ensure_segmentation_converters",
    "ijk_to_ras",
    "read_segment_mask",
    "reference_geometry",
    "segment_masks",
    "segment_world_points",
    "segmentation_edited_event",
    "set_ijk_to_ras",
    "vtk_matrix",
    "write_segment_mask",
]

BINARY_LABELMAP = "Binary labelmap"
CLOSED_SURFACE = "Closed surface"


def segmentation_edited_event() -> int:
    """The event a segmentation fires when its voxels are edited: its source representation's (named Master…
    before Slicer 5.4)."""
    event = getattr(slicer.vtkSegmentation, "SourceRepresentationModified", None)
    return event if event is not None else slicer.vtkSegmentation.MasterRepresentationModified


def ensure_segmentation_converters() -> None:
    """Register the segmentation conversion rules when nobody has (3D Slicer's Segmentations module does it at
    start-up; a plain ``slicer-core`` process has none, and segments then cannot hold a binary labelmap)."""
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    have = {(r.GetSourceRepresentationName(), r.GetTargetRepresentationName()) for r in factory.GetConverterRules()}
    if (BINARY_LABELMAP, CLOSED_SURFACE) in have:
        return
    for rule in (
        slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule,
        slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule,
        slicer.vtkClosedSurfaceToFractionalLabelmapConversionRule,
        slicer.vtkFractionalLabelmapToClosedSurfaceConversionRule,
    ):
        factory.RegisterConverterRule(rule())


def vtk_matrix(matrix) -> vtk.vtkMatrix4x4:
    """A ``vtkMatrix4x4`` holding the 4×4 numpy ``matrix``."""
    m = np.asarray(matrix, dtype=np.float64)
    out = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            out.SetElement(r, c, float(m[r, c]))
    return out


def ijk_to_ras(node) -> np.ndarray:
    """A volume node's IJK→RAS matrix as a 4×4 numpy array."""
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return slicer.util.arrayFromVTKMatrix(m)


def set_ijk_to_ras(node, matrix) -> None:
    """Set a volume node's IJK→RAS matrix from a 4×4 numpy array."""
    node.SetIJKToRASMatrix(vtk_matrix(matrix))


def reference_geometry(volume) -> slicer.vtkOrientedImageData:
    """An empty oriented image with ``volume``'s voxel grid (extent, spacing, origin, directions)."""
    image = volume.GetImageData()
    if image is None:
        raise ValueError(f"volume {volume.GetName()!r} holds no voxels")
    geometry = slicer.vtkOrientedImageData()
    geometry.SetExtent(image.GetExtent())
    geometry.SetImageToWorldMatrix(vtk_matrix(ijk_to_ras(volume)))
    return geometry


def _grid_shape(geometry) -> tuple[int, int, int]:
    e = geometry.GetExtent()
    return (e[1] - e[0] + 1, e[3] - e[2] + 1, e[5] - e[4] + 1)


def write_segment_mask(segmentation, segment_id: str, volume, mask: np.ndarray) -> None:
    """Replace a segment's voxels by ``mask`` (boolean, (i, j, k), ``volume``'s grid).

    Goes through ``vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment`` as the Segment Editor does, so
    shared labelmap layers and the segmentation's own geometry are handled by Slicer.
    """
    geometry = reference_geometry(volume)
    shape = _grid_shape(geometry)
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise ValueError(f"mask shaped {mask.shape} does not fit the volume's grid {shape}")
    image = slicer.vtkOrientedImageData()
    image.DeepCopy(geometry)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    voxels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(shape[::-1])
    voxels[:] = np.ascontiguousarray(mask.transpose(2, 1, 0) > 0)
    image.Modified()
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    if not logic.SetBinaryLabelmapToSegment(image, segmentation, segment_id, logic.MODE_REPLACE):
        raise RuntimeError(f"Slicer could not write segment {segment_id!r} of {segmentation.GetName()!r}")


def _is_empty(image) -> bool:
    """No voxel (an inverted extent) or no scalars: Slicer's form of an empty labelmap."""
    e = image.GetExtent()
    return e[0] > e[1] or e[2] > e[3] or e[4] > e[5] or image.GetPointData().GetScalars() is None


def _stored_labelmap(segmentation, segment_id: str):
    """The segment's own binary labelmap (not resampled), or ``None`` when it is empty."""
    labelmap = slicer.vtkOrientedImageData()
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    if not logic.GetSegmentBinaryLabelmapRepresentation(segmentation, segment_id, labelmap, False):
        raise RuntimeError(f"Slicer could not read segment {segment_id!r} of {segmentation.GetName()!r}")
    return None if _is_empty(labelmap) else labelmap


def read_segment_mask(segmentation, segment_id: str, volume) -> np.ndarray:
    """A segment's voxels on ``volume``'s grid as a boolean (i, j, k) array (all False for an empty segment)."""
    geometry = reference_geometry(volume)
    shape = _grid_shape(geometry)
    out = np.zeros(shape[::-1], dtype=bool)  # (k, j, i)
    labelmap = _stored_labelmap(segmentation, segment_id)
    if labelmap is None:
        return out.transpose(2, 1, 0)
    resampled = slicer.vtkOrientedImageData()
    slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
        labelmap, geometry, resampled, False, True
    )
    r = resampled.GetExtent()
    if _is_empty(resampled):
        return out.transpose(2, 1, 0)
    values = numpy_support.vtk_to_numpy(resampled.GetPointData().GetScalars())
    values = values.reshape(r[5] - r[4] + 1, r[3] - r[2] + 1, r[1] - r[0] + 1)
    g = geometry.GetExtent()
    lo = [max(r[2 * a], g[2 * a]) for a in range(3)]  # overlap of the resampled extent with the grid
    hi = [min(r[2 * a + 1], g[2 * a + 1]) for a in range(3)]
    if any(lo[a] > hi[a] for a in range(3)):
        return out.transpose(2, 1, 0)
    src = values[lo[2] - r[4] : hi[2] - r[4] + 1, lo[1] - r[2] : hi[1] - r[2] + 1, lo[0] - r[0] : hi[0] - r[0] + 1]
    # segments may share one labelmap layer, each with its own label value
    value = segmentation.GetSegmentation().GetSegment(segment_id).GetLabelValue()
    target = (slice(lo[2] - g[4], hi[2] - g[4] + 1), slice(lo[1] - g[2], hi[1] - g[2] + 1),
              slice(lo[0] - g[0], hi[0] - g[0] + 1))
    out[target] = src == value
    return out.transpose(2, 1, 0)


def segment_masks(segmentation, volume) -> dict[str, np.ndarray]:
    """Segment name → boolean (i, j, k) mask on ``volume``'s grid, for every segment."""
    seg = segmentation.GetSegmentation()
    masks = {}
    for index in range(seg.GetNumberOfSegments()):
        segment_id = seg.GetNthSegmentID(index)
        masks[seg.GetSegment(segment_id).GetName()] = read_segment_mask(segmentation, segment_id, volume)
    return masks


def segment_world_points(segmentation, segment_id: str) -> np.ndarray:
    """RAS positions (N, 3) of the voxel centres inside a segment, from the segment's own stored labelmap and its
    image-to-world matrix (not resampled onto any volume): where Slicer draws the segment."""
    labelmap = _stored_labelmap(segmentation, segment_id)
    if labelmap is None:
        return np.zeros((0, 3))
    e = labelmap.GetExtent()
    values = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars())
    values = values.reshape(e[5] - e[4] + 1, e[3] - e[2] + 1, e[1] - e[0] + 1)
    value = segmentation.GetSegmentation().GetSegment(segment_id).GetLabelValue()
    ijk = np.argwhere(values == value)[:, ::-1] + np.array([e[0], e[2], e[4]])
    matrix = vtk.vtkMatrix4x4()
    labelmap.GetImageToWorldMatrix(matrix)
    m = slicer.util.arrayFromVTKMatrix(matrix)
    return ijk @ m[:3, :3].T + m[:3, 3]
