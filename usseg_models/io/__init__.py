"""Ultrasound image I/O: validated DICOM/PNG/JPEG/NIfTI/NRRD reading as MONAI readers/transforms, label writers.

See ``docs/DESIGN.md`` for the array layout and metadata keys, :mod:`usseg_models.io.dicom` for the colour rule and
:mod:`usseg_models.io.validate` for the checks every file passes before any native decoder sees it.
"""

from usseg_models.io.dicom import UltrasoundDicomReader, bt601_luma, dicom_metadata, read_dicom
from usseg_models.io.image import (
    LoadUltrasound,
    LoadUltrasoundD,
    LoadUltrasoundd,
    LoadUltrasoundDict,
    UltrasoundImageReader,
    load_image,
)
from usseg_models.io.validate import sniff_format, validate_dicom
from usseg_models.io.writers import write_label, write_nifti, write_png, write_seg_nrrd

__all__ = [
    "UltrasoundDicomReader",
    "UltrasoundImageReader",
    "LoadUltrasound",
    "LoadUltrasoundd",
    "LoadUltrasoundD",
    "LoadUltrasoundDict",
    "bt601_luma",
    "dicom_metadata",
    "load_image",
    "read_dicom",
    "sniff_format",
    "validate_dicom",
    "write_label",
    "write_nifti",
    "write_png",
    "write_seg_nrrd",
]
