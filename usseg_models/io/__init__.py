"""Ultrasound image I/O: validated DICOM/PNG/JPEG/NIfTI/NRRD/video reading as MONAI readers/transforms, label writers.

See ``docs/DESIGN.md`` for the array layout and metadata keys, :mod:`usseg_models.io.dicom_pixels` for the colour
rule and :mod:`usseg_models.io.validate` for the checks every file passes before any native decoder sees it.

Modules: ``formats`` (the format registry: every format's entry, ``sniff_format``, ``load_image``,
``probe_header``), ``format`` (what an entry holds), ``validate`` (DICOM checks), ``dicom_pixels`` (pydicom
decoding + metadata), ``raster`` (PNG/JPEG/...),
``volume`` (NIfTI/NRRD; squeezes a one-slice volume), ``video`` (MP4/MOV/AVI cines decoded with PyAV),
``video_probe`` (MP4/MOV/AVI container checks from the header), ``header`` (header-only probers), ``loaders``
(MONAI ``ImageReader``s over the registry, ``LoadUltrasound``/``LoadUltrasoundd``), ``dicom``
(``UltrasoundDicomReader``), ``conventions`` (LPS↔RAS, BT.601), ``layout`` (reader array/metadata helpers),
``writers`` (NIfTI, ``.seg.nrrd``, PNG labels; restores a one-slice input's axis).
Names are imported on first access, so ``import usseg_models.io`` does not import MONAI.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "UltrasoundDicomReader": "dicom",
    "UltrasoundImageReader": "loaders",
    "UltrasoundVideoReader": "loaders",
    "read_video": "video",
    "probe_video": "video_probe",
    "write_video": "video",
    "LoadUltrasound": "loaders",
    "LoadUltrasoundd": "loaders",
    "LoadUltrasoundD": "loaders",
    "LoadUltrasoundDict": "loaders",
    "bt601_luma": "conventions",
    "LPS_TO_RAS": "conventions",
    "decode_dicom": "dicom_pixels",
    "dicom_metadata": "dicom_pixels",
    "read_dicom": "dicom_pixels",
    "load_image": "formats",
    "probe_header": "formats",
    "FORMATS": "formats",
    "RegistryReader": "loaders",
    "sniff_format": "formats",
    "validate_dicom": "validate",
    "write_label": "writers",
    "write_nifti": "writers",
    "write_png": "writers",
    "write_seg_nrrd": "writers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"usseg_models.io.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
