"""USSegClipLib: everything the USSegClip Slicer module does that does not need Slicer.

Server communication (MONAI Label REST client, inference, training status) and data conversion (clip geometry,
NIfTI/NRRD/PNG volumes, ``.seg.nrrd`` segmentations, label values). This package never imports ``slicer``, ``qt``,
``ctk`` or ``vtk``, so it runs and is tested with plain Python; it needs ``requests``, ``numpy``, ``nibabel``,
``pynrrd`` and ``slicerio``.
"""

from .client import InferResult, MonaiLabelClient
from .errors import (
    ClipGeometryError,
    LabelFileError,
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
    compose_labelmap,
    fit_label_to_clip,
    model_labels,
    models_of_dimension,
    rename_labels,
    split_labelmap,
)
from .multipart import MultipartPart, parse_multipart
from .segfile import read_seg_nrrd, write_seg_nrrd
from .training import TrainingMonitor, TrainingState
from .volumeio import read_volume, write_nifti, write_nrrd

__all__ = [
    "Clip",
    "ClipGeometryError",
    "InferResult",
    "LabelFileError",
    "MonaiLabelClient",
    "MultipartPart",
    "ServerError",
    "ServerResponseError",
    "ServerTimeoutError",
    "ServerUnavailableError",
    "TrainingMonitor",
    "TrainingState",
    "USSegClipError",
    "compose_labelmap",
    "compose_matrix",
    "fit_label_to_clip",
    "frame_chunks",
    "frame_index_from_ras",
    "ijk_to_kji",
    "infer_clip",
    "infer_frame",
    "infer_image",
    "kji_to_ijk",
    "matrix_from_text",
    "matrix_to_text",
    "model_labels",
    "models_of_dimension",
    "parse_multipart",
    "ras_of_frame",
    "ras_to_ijk",
    "read_seg_nrrd",
    "read_volume",
    "rename_labels",
    "split_labelmap",
    "split_matrix",
    "stack_frames",
    "to_grey",
    "write_nifti",
    "write_nrrd",
    "write_seg_nrrd",
]
