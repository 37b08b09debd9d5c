"""USSegClipLogic: the USSegClip module's Logic, importable without Qt.

It imports only ``slicer`` (MRML nodes, ``slicer.util`` array helpers, module logic classes), ``vtk``, numpy and
``USSegClipLib``, so the same code runs inside 3D Slicer and on Kitware's ``slicer-core`` wheel, where
``tests/test_slicer_mrml*.py`` drive it against a real MRML scene and a real MONAI Label server.
"""

from . import selftest
from .clipnodes import add_sequence_clip, add_volume_clip
from .logic import MODULE_NAME, USSegClipLogic
from .mrml import (
    ensure_segmentation_converters,
    ijk_to_ras,
    read_segment_mask,
    reference_geometry,
    segment_masks,
    segment_world_points,
    segmentation_edited_event,
    set_ijk_to_ras,
    vtk_matrix,
    write_segment_mask,
)
from .reviewstate import REVIEWED_ATTRIBUTE
from .roundtrips import IMAGE_ID_ATTRIBUTE, SERVER_MATRIX_ATTRIBUTE

__all__ = [
    "IMAGE_ID_ATTRIBUTE",
    "MODULE_NAME",
    "REVIEWED_ATTRIBUTE",
    "SERVER_MATRIX_ATTRIBUTE",
    "USSegClipLogic",
    "add_sequence_clip",
    "add_volume_clip",
    "ensure_segmentation_converters",
    "ijk_to_ras",
    "read_segment_mask",
    "reference_geometry",
    "segment_masks",
    "segment_world_points",
    "segmentation_edited_event",
    "selftest",
    "set_ijk_to_ras",
    "vtk_matrix",
    "write_segment_mask",
]
