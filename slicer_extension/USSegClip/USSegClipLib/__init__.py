"""USSegClipLib: everything the USSegClip Slicer module does that does not need Slicer.

Server communication (MONAI Label REST client, inference, refinement from corrected frames, training status) and
data conversion (clip geometry, NIfTI/NRRD/PNG volumes, ``.seg.nrrd`` segmentations, label values and colours,
reviewed frames). This package never imports ``slicer``, ``qt``, ``ctk`` or ``vtk``, so it runs and is tested with
plain Python; it needs ``requests``, ``numpy``, ``nibabel``, ``pynrrd`` and ``slicerio``.
"""

from .client import InferResult, MonaiLabelClient
from .errors import (
    ClipGeometryError,
    LabelFileError,
    ModelNotTrainedError,
    ServerError,
    ServerResponseError,
    ServerTimeoutError,
    ServerUnavailableError,
    USSegClipError,
)
from .geometry import (
    Clip,
    compose_matrix,
    frame_index_from_ras,
    ijk_to_kji,
    kji_to_ijk,
    matrix_from_text,
    matrix_to_text,
    ras_of_frame,
    ras_to_ijk,
    split_matrix,
    stack_frames,
    to_grey,
)
from .inference import frame_chunks, infer_clip, infer_frame, infer_image
from .labels import (
    FALLBACK_COLORS,
    SegmentStyle,
    compose_labelmap,
    fallback_color,
    fit_label_to_clip,
    label_palette,
    label_segments,
    labels_summary,
    model_labels,
    models_of_dimension,
    palette_for_label,
    rename_labels,
    split_labelmap,
)
from .multipart import MultipartPart, parse_multipart
from .refine import (
    PHASE_PROPAGATE,
    PHASE_REFINE,
    refine_clip,
    refine_clip_in_phases,
    refine_model_name,
    refine_modes,
    refine_status,
)
from .review import changed_frames, format_frames, parse_frames, review_summary
from .segfile import read_seg_nrrd, write_seg_nrrd
from .training import TrainingMonitor, TrainingState
from .volumeio import read_volume, write_nifti, write_nrrd

__all__ = [
    "Clip",
    "ClipGeometryError",
    "InferResult",
    "LabelFileError",
    "ModelNotTrainedError",
    "MonaiLabelClient",
    "MultipartPart",
    "PHASE_PROPAGATE",
    "PHASE_REFINE",
    "FALLBACK_COLORS",
    "ServerError",
    "ServerResponseError",
    "ServerTimeoutError",
    "SegmentStyle",
    "ServerUnavailableError",
    "TrainingMonitor",
    "TrainingState",
    "USSegClipError",
    "changed_frames",
    "compose_labelmap",
    "compose_matrix",
    "fallback_color",
    "fit_label_to_clip",
    "format_frames",
    "frame_chunks",
    "frame_index_from_ras",
    "ijk_to_kji",
    "infer_clip",
    "infer_frame",
    "infer_image",
    "kji_to_ijk",
    "label_palette",
    "label_segments",
    "labels_summary",
    "matrix_from_text",
    "matrix_to_text",
    "model_labels",
    "models_of_dimension",
    "palette_for_label",
    "parse_frames",
    "parse_multipart",
    "ras_of_frame",
    "ras_to_ijk",
    "read_seg_nrrd",
    "read_volume",
    "refine_clip",
    "refine_clip_in_phases",
    "refine_model_name",
    "refine_modes",
    "refine_status",
    "rename_labels",
    "review_summary",
    "split_labelmap",
    "split_matrix",
    "stack_frames",
    "to_grey",
    "write_nifti",
    "write_nrrd",
    "write_seg_nrrd",
]
