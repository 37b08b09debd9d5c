"""Decoding and metadata of ultrasound DICOM (single and multi-frame) with pydicom and numpy only (no MONAI import,
so ``usseg info`` starts fast); :mod:`usseg_models.io.dicom` wraps it as a MONAI ``ImageReader``.

Every file is validated first (:func:`usseg_models.io.validate.validate_dicom`), then decoded by pydicom's pixel
data handlers (numpy for native and RLE; python-gdcm if installed, else Pillow, for JPEG baseline and JPEG 2000;
python-gdcm or pylibjpeg for JPEG lossless / JPEG-LS), so a corrupt header never reaches a native decoder unchecked.

Layout (``docs/DESIGN.md``): spatial-first, ``(X, Y)`` / ``(X, Y, 3)`` for a single-frame object and
``(X, Y, T)`` / ``(X, Y, T, 3)`` for a multi-frame object (any file carrying *NumberOfFrames*, even 1), with
X = columns, Y = rows, T = frame index in acquisition order.

Colour rule:
    - ``MONOCHROME1`` is inverted to the MONOCHROME2 convention: ``v' = (2**BitsStored - 1) - v``
      (``-1 - v`` for signed data).
    - ``YBR_FULL`` / ``YBR_FULL_422`` are converted to RGB by pydicom's ``convert_color_space``
      (ITU-R BT.601 full range, as PS3.3 C.7.6.3.1.2 defines them).
    - ``YBR_ICT`` / ``YBR_RCT`` (JPEG 2000) come out of the decoder already as RGB (the codec inverts its
      multiple-component transform).
    - ``PALETTE COLOR`` is mapped to RGB through the palette lookup tables (pydicom's ``apply_color_lut``); the
      values then have the LUT entries' dtype (``uint8`` or ``uint16`` as the LUT descriptor says).
    - With ``grayscale=True`` any colour result becomes grey by ITU-R BT.601 luma
      ``Y = 0.299 R + 0.587 G + 0.114 B``, rounded to the nearest integer and cast back to the colour dtype.
    - Big-endian data is returned in native byte order. Values otherwise keep the stored dtype.

Metadata keys: those listed in ``docs/DESIGN.md`` (``affine`` = ``diag(sx, sy, 1, 1)`` with the pixel size in mm
from *SequenceOfUltrasoundRegions* ``PhysicalDeltaX/Y`` (cm, units code 3) when present, else *PixelSpacing*,
else 1), plus ``spacing_source`` (``"ultrasound_regions"``, ``"pixel_spacing"`` or ``"default"``) and
``manufacturer``. ``frame_time_ms`` comes from *FrameTime*, else the mean step of *FrameTimeVector*, else
``1000 / CineRate``.

Examples::

    >>> from usseg_models.io.dicom_pixels import read_dicom
    >>> array, meta = read_dicom("echo.dcm", grayscale=True)           # doctest: +SKIP
    >>> array.shape, meta["frame_time_ms"]                              # doctest: +SKIP
    ((320, 240, 30), 33.333)
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

import numpy as np
import pydicom
from pydicom.multival import MultiValue
from pydicom.pixel_data_handlers.util import apply_color_lut, convert_color_space

from usseg_models.errors import MissingDecoderError, UltrasoundIOError
from usseg_models.io.conventions import bt601_luma
from usseg_models.io.format import Format
from usseg_models.io.header import probe_dicom
from usseg_models.io.validate import check_decoder_available, is_dicom, validate_dicom

__all__ = ["read_dicom", "dicom_metadata", "decode_dicom", "FORMAT"]

logger = logging.getLogger(__name__)

_CM_UNITS = 3  # PhysicalUnitsX/YDirection code for centimetres (PS3.3 C.8.5.5.1.15)


def _ultrasound_region_spacing(ds: pydicom.Dataset) -> tuple[float, float] | None:
    regions = ds.get("SequenceOfUltrasoundRegions")
    if not regions:
        return None
    candidates = []
    for region in regions:
        try:
            ux, uy = int(region.get("PhysicalUnitsXDirection", -1)), int(region.get("PhysicalUnitsYDirection", -1))
            dx, dy = abs(float(region.get("PhysicalDeltaX", 0))), abs(float(region.get("PhysicalDeltaY", 0)))
        except (TypeError, ValueError):
            continue
        if ux == _CM_UNITS and uy == _CM_UNITS and dx > 0 and dy > 0:
            is_2d = int(region.get("RegionSpatialFormat", 0) or 0) == 1
            candidates.append((not is_2d, dx * 10.0, dy * 10.0))  # prefer the 2D (tissue) region
    if not candidates:
        return None
    _, sx, sy = min(candidates, key=lambda c: c[0])
    return sx, sy


def _frame_time_ms(ds: pydicom.Dataset) -> float | None:
    try:
        if ds.get("FrameTime") not in (None, ""):
            return float(ds.FrameTime)
        vector = ds.get("FrameTimeVector")
        if vector not in (None, ""):
            values = list(vector) if isinstance(vector, (list, tuple, MultiValue)) else [vector]
            steps = [float(v) for v in values][1:]  # first entry is 0 (PS3.3 C.7.6.5.1.2)
            if steps:
                return float(np.mean(steps))
        if ds.get("CineRate") not in (None, "") and float(ds.CineRate) > 0:
            return 1000.0 / float(ds.CineRate)
    except (TypeError, ValueError):
        logger.warning("%s: unreadable frame timing elements ignored", getattr(ds, "filename", "<dataset>"))
    return None


def dicom_metadata(ds: pydicom.Dataset, filename: str | os.PathLike | None = None) -> dict[str, Any]:
    """Metadata dictionary (keys of ``docs/DESIGN.md``) of a validated DICOM data set, without decoding pixels.

    Args:
        ds: data set returned by :func:`~usseg_models.io.validate.validate_dicom`.
        filename: file name to record (default: ``ds.filename``).

    Returns:
        dict with ``spatial_shape`` ``(X, Y)`` or ``(X, Y, T)``, ``affine`` 4x4, ``spacing`` and the DICOM fields.
    """
    rows, cols = int(ds.Rows), int(ds.Columns)
    multi_frame = "NumberOfFrames" in ds
    num_frames = int(ds.NumberOfFrames) if multi_frame else None
    spacing_xy = _ultrasound_region_spacing(ds)
    source = "ultrasound_regions"
    if spacing_xy is None:
        spacing_xy, source = None, "default"
        pixel_spacing = ds.get("PixelSpacing")
        try:
            if pixel_spacing is not None and len(pixel_spacing) == 2 and min(map(float, pixel_spacing)) > 0:
                spacing_xy, source = (float(pixel_spacing[1]), float(pixel_spacing[0])), "pixel_spacing"
        except (TypeError, ValueError):
            pass
        if spacing_xy is None:
            spacing_xy = (1.0, 1.0)
    sx, sy = spacing_xy
    affine = np.diag([sx, sy, 1.0, 1.0])
    photometric = str(ds.PhotometricInterpretation).strip()
    colour = int(ds.get("SamplesPerPixel", 1)) == 3 or photometric == "PALETTE COLOR"
    meta: dict[str, Any] = {
        "filename_or_obj": os.fspath(filename if filename is not None else getattr(ds, "filename", "")),
        "spatial_shape": np.array((cols, rows, num_frames) if multi_frame else (cols, rows)),
        "original_channel_dim": -1 if colour else "no_channel",
        "affine": affine,
        "original_affine": affine.copy(),
        "spacing": np.array([sx, sy, 1.0] if multi_frame else [sx, sy]),
        "spacing_source": source,
        "num_frames": num_frames,
        "frame_time_ms": _frame_time_ms(ds),
        "photometric_interpretation": photometric,
        "transfer_syntax_uid": str(ds.file_meta.TransferSyntaxUID),
        "modality": str(ds.get("Modality", "") or ""),
        "manufacturer": str(ds.get("Manufacturer", "") or ""),
        "study_instance_uid": str(ds.get("StudyInstanceUID", "") or ""),
        "series_instance_uid": str(ds.get("SeriesInstanceUID", "") or ""),
        "sop_instance_uid": str(ds.get("SOPInstanceUID", "") or ""),
        "sop_class_uid": str(ds.get("SOPClassUID", "") or ""),
        "rows": rows,
        "columns": cols,
        "bits_allocated": int(ds.BitsAllocated),
    }
    return meta


def decode_dicom(ds: pydicom.Dataset, grayscale: bool = False) -> np.ndarray:
    """Decode a validated data set's pixels to the spatial-first layout, applying the module's colour rule.

    Args:
        ds: data set returned by :func:`~usseg_models.io.validate.validate_dicom`.
        grayscale: convert colour results to grey by BT.601 luma.

    Returns:
        ``(X, Y[, T][, 3])`` array (T present when the file carries *NumberOfFrames*).

    Raises:
        MissingDecoderError: no installed decoder for the transfer syntax.
        UltrasoundIOError: the decoder failed on the pixel data.
    """
    path = getattr(ds, "filename", "<dataset>")
    ts = str(ds.file_meta.TransferSyntaxUID)
    check_decoder_available(ts, path)
    photometric_in = str(ds.PhotometricInterpretation).strip()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
    except (NotImplementedError, RuntimeError) as exc:
        if "missing required dependencies" in str(exc) or "no pixel data handlers" in str(exc):
            raise MissingDecoderError(
                f"{path}: no installed decoder for {ds.file_meta.TransferSyntaxUID.name}: {exc}"
            ) from exc
        raise UltrasoundIOError(f"{path}: pixel data could not be decoded ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - decoders raise many types on corrupt streams
        raise UltrasoundIOError(f"{path}: pixel data could not be decoded ({type(exc).__name__}: {exc})") from exc
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    photometric = str(ds.PhotometricInterpretation).strip()  # a handler may have rewritten it
    if photometric != photometric_in:
        logger.debug("%s: decoder changed photometric interpretation %s -> %s", path, photometric_in, photometric)

    if photometric == "MONOCHROME1":
        if int(ds.get("PixelRepresentation", 0)) == 1:
            arr = (-1 - arr.astype(np.int64)).astype(arr.dtype)
        else:
            arr = ((1 << int(ds.get("BitsStored", ds.BitsAllocated))) - 1 - arr.astype(np.int64)).astype(arr.dtype)
    elif photometric in ("YBR_FULL", "YBR_FULL_422"):
        arr = convert_color_space(arr, photometric, "RGB")
    elif photometric == "PALETTE COLOR":
        try:
            arr = apply_color_lut(arr, ds)
        except Exception as exc:  # noqa: BLE001
            raise UltrasoundIOError(f"{path}: palette colour lookup table could not be applied ({exc})") from exc
    colour = arr.ndim >= 3 and arr.shape[-1] == 3 and (int(ds.SamplesPerPixel) == 3 or photometric == "PALETTE COLOR")
    if grayscale and colour:
        arr = bt601_luma(arr)
        colour = False

    multi_frame = "NumberOfFrames" in ds
    spatial_ndim = 3 if multi_frame else 2
    if multi_frame and arr.ndim == 2 + int(colour):  # pydicom drops the frame axis for NumberOfFrames == 1
        arr = arr[None]
    if arr.ndim != spatial_ndim + int(colour):
        raise UltrasoundIOError(f"{path}: decoded pixel array has unexpected shape {arr.shape}")
    order = tuple(reversed(range(spatial_ndim))) + ((spatial_ndim,) if colour else ())
    return np.ascontiguousarray(arr.transpose(order))


def read_dicom(
    path: str | os.PathLike, grayscale: bool = False, sniffed: bool = False
) -> tuple[np.ndarray, dict[str, Any]]:
    """Validate, decode and describe one ultrasound DICOM file.

    Args:
        path: DICOM file (single or multi-frame).
        grayscale: convert colour to grey by BT.601 luma (see module docstring).

    Returns:
        ``(array, meta)`` with ``array`` shaped ``(X, Y[, T][, 3])`` and ``meta`` as :func:`dicom_metadata`.

        sniffed: the caller (the reader registry) has already identified the file as DICOM by its content.

    Raises:
        UltrasoundIOError: invalid or undecodable file (message names the problem).
        MissingDecoderError: the transfer syntax needs a decoder package that is not installed.
    """
    ds = validate_dicom(path, sniffed=sniffed)
    arr = decode_dicom(ds, grayscale=grayscale)
    meta = dicom_metadata(ds, path)
    if grayscale:
        meta["original_channel_dim"] = "no_channel"
    if arr.shape[: len(meta["spatial_shape"])] != tuple(meta["spatial_shape"]):
        raise UltrasoundIOError(f"{os.fspath(path)}: decoded shape {arr.shape} disagrees with the header")
    return arr, meta


def _read_sniffed(path: str, grayscale: bool) -> tuple[np.ndarray, dict[str, Any]]:
    arr, meta = read_dicom(path, grayscale=grayscale, sniffed=True)
    meta.update(format="dicom", one_slice=False)
    return arr, meta


#: the registry entry (:mod:`usseg_models.io.formats`); a DICOM file may also have no suffix at all
FORMAT = Format("dicom", (".dcm", ".dicom", ".dic"), lambda head, path: is_dicom(head), _read_sniffed, probe_dicom,
                label="DICOM")
