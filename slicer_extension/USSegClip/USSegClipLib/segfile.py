"""``.seg.nrrd`` (3D Slicer segmentation) files with segment metadata, through ``slicerio``.

A clip segmentation is written as one labelmap on the clip's voxel grid (3 spatial axes, as Slicer requires even
for one frame) with one segment per server label: ``SegmentN_ID``, ``_Name`` (the server's label name),
``_LabelValue`` (the server's value), ``_Layer`` and ``_Color``. Slicer opens it directly (drag and drop) and
``slicerio.read_segmentation`` reads it back.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from .errors import LabelFileError
from .geometry import Clip
from .labels import FALLBACK_COLORS, fallback_color, split_labelmap
from .volumeio import LPS_TO_RAS

__all__ = ["DEFAULT_COLORS", "read_seg_nrrd", "write_seg_nrrd"]

# Colours (RGB 0..1) of segments the caller gives none, in label-value order (the Lib's one copy of the fallback
# colours, kept under its old name here).
DEFAULT_COLORS: tuple[tuple[float, float, float], ...] = FALLBACK_COLORS


def write_seg_nrrd(
    path: str | os.PathLike,
    labelmap: Clip,
    label_values: Mapping[str, int],
    colors: Mapping[str, Sequence[float]] | None = None,
) -> str:
    """Write a labelmap clip as a Slicer segmentation file.

    Args:
        path: output file, must end in ``.seg.nrrd``.
        labelmap: label voxels (IJK order) with the clip's IJK→RAS.
        label_values: segment name → label value (the server's labels); every name becomes a segment, even empty.
        colors: optional name → RGB (0..1); defaults to :data:`DEFAULT_COLORS`.

    Raises:
        LabelFileError: wrong suffix, or label values in the voxels that no name maps to.

    Examples::

        write_seg_nrrd("clip.seg.nrrd", Clip(label, ijk_to_ras), {"left ventricle": 1})
    """
    import slicerio

    path = os.fspath(path)
    if not path.lower().endswith(".seg.nrrd"):
        raise LabelFileError(f"segmentation file name must end in .seg.nrrd: {path}")
    masks = split_labelmap(labelmap.voxels, label_values)
    segmentation = slicerio.create_segmentation(labelmap.voxels.shape, LPS_TO_RAS @ labelmap.ijk_to_ras)
    for index, (name, value) in enumerate(sorted(label_values.items(), key=lambda kv: kv[1])):
        color = (colors or {}).get(name, fallback_color(index))
        segment = {"id": f"Segment_{value}", "name": name, "color": [float(c) for c in color]}
        slicerio.add_segment(segmentation, masks[name], segment)
    segmentation["containedRepresentationNames"] = ["Binary labelmap"]
    segmentation["masterRepresentation"] = "Binary labelmap"
    slicerio.write_segmentation(path, segmentation)
    return path


def read_seg_nrrd(path: str | os.PathLike, frame_axis: int = 2) -> tuple[Clip, dict[str, np.ndarray]]:
    """Read a ``.seg.nrrd`` file.

    Args:
        path: the file.
        frame_axis: voxel axis counting frames (stored on the returned clip).

    Returns:
        ``(geometry, masks)``: a :class:`Clip` whose voxels are the first layer (shape and IJK→RAS of the grid), and
        segment name → boolean mask (shape of the grid) for every segment.

    Raises:
        LabelFileError: the file cannot be read or holds no voxels.
    """
    import slicerio

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise LabelFileError(f"file not found: {path}")
    try:
        segmentation = slicerio.read_segmentation(path)
    except Exception as e:
        raise LabelFileError(f"cannot read segmentation {path}: {e}") from e
    voxels = segmentation.get("voxels")
    if voxels is None:
        raise LabelFileError(f"{path} holds no voxels")
    ijk_to_ras = LPS_TO_RAS @ np.asarray(segmentation["ijkToLPS"], dtype=np.float64)
    grid = voxels[0] if voxels.ndim == 4 else voxels
    masks = {seg["name"]: slicerio.segment_mask(segmentation, seg["id"]) for seg in segmentation.get("segments", [])}
    return Clip(grid, ijk_to_ras, frame_axis), masks
