"""Write ultrasound frames as DICOM: US Multi-frame Image Storage (cines) and US Image Storage (single frames).

Files are Explicit VR Little Endian, 8-bit ``MONOCHROME2``, with a valid file meta group, and carry what
ultrasound readers rely on (``docs/DESIGN.md``):

* multi-frame: ``NumberOfFrames``, ``FrameTime`` (ms), ``FrameIncrementPointer`` -> ``FrameTime`` (0018,1063),
  ``CineRate`` and ``RecommendedDisplayFrameRate`` (frames/s);
* ``SequenceOfUltrasoundRegions`` with one 2D tissue region: ``RegionLocationMinX0/MinY0/MaxX1/MaxY1`` (the fan's
  bounding box, pixels), ``PhysicalUnitsX/YDirection = 3`` (cm) and ``PhysicalDeltaX/Y`` (cm per pixel);
* identity from :class:`DicomIdentity`; :func:`synthetic_identity` derives every UID deterministically with
  ``pydicom.uid.generate_uid(entropy_srcs=[...])`` (pydicom's root ``1.2.826.0.1.3680043.8.498.`` followed by
  digits of the SHA-512 of the entropy string) from a seed and an item id, so regenerating a data set reproduces
  the same UIDs. (``prefix=None`` would ignore the entropy and return a random ``2.25.`` UUID.)

Pixel arrays are given in DICOM order: ``(T, rows, cols)`` for a cine, ``(rows, cols)`` for an image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

__all__ = [
    "US_MULTIFRAME_IMAGE_STORAGE",
    "US_IMAGE_STORAGE",
    "DicomIdentity",
    "synthetic_identity",
    "write_us_cine",
    "write_us_image",
]

US_MULTIFRAME_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.3.1"
US_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"
_FRAME_TIME_TAG = 0x00181063


@dataclass(frozen=True)
class DicomIdentity:
    """Patient, study, series and instance identity of one object (all written verbatim)."""

    patient_name: str
    patient_id: str
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    patient_birth_date: str = "19700101"
    patient_sex: str = "O"
    study_date: str = "20260101"
    study_time: str = "120000"
    study_id: str = "1"
    accession_number: str = ""
    study_description: str = "Synthetic ultrasound"
    series_description: str = "Synthetic B-mode"
    series_number: int = 1
    instance_number: int = 1
    body_part: str = ""
    image_type_3: str = "ABDOMINAL"


def synthetic_identity(
    seed: int, item_id: str, description: str = "Synthetic B-mode", cardiac: bool = False
) -> DicomIdentity:
    """Deterministic synthetic identity for item ``item_id`` of the data set generated with ``seed``.

    Each item is its own patient and study; UIDs are ``generate_uid(entropy_srcs=["usseg-synthetic|seed|id|level"])``.
    ``cardiac`` selects body part ``HEART`` and image type ``DERIVED\\PRIMARY`` (no defined exam-type term for
    transthoracic echo), else ``ABDOMEN`` and ``DERIVED\\PRIMARY\\ABDOMINAL\\0001``.

    Examples::

        >>> a, b = synthetic_identity(0, "cine_000"), synthetic_identity(0, "cine_000")
        >>> a.sop_instance_uid == b.sop_instance_uid, a.sop_instance_uid.startswith(pydicom.uid.PYDICOM_ROOT_UID)
        (True, True)
    """

    def uid(level: str) -> str:
        return generate_uid(entropy_srcs=[f"usseg-synthetic|{seed}|{item_id}|{level}"])

    return DicomIdentity(
        patient_name=f"Synthetic^{item_id}",
        patient_id=f"SYN{seed:04d}-{item_id}",
        study_instance_uid=uid("study"),
        series_instance_uid=uid("series"),
        sop_instance_uid=uid("instance"),
        study_id=item_id[:16],
        accession_number=f"S{seed}{item_id.upper().replace('_', '')}"[:16],
        series_description=description,
        body_part="HEART" if cardiac else "ABDOMEN",
        image_type_3="" if cardiac else "ABDOMINAL",
    )


def _base_dataset(path: Path, sop_class: str, identity: DicomIdentity) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = identity.sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"PYDICOM {pydicom.__version__}"[:16]
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = identity.sop_instance_uid
    # patient / study / series / equipment
    ds.PatientName = identity.patient_name
    ds.PatientID = identity.patient_id
    ds.PatientBirthDate = identity.patient_birth_date
    ds.PatientSex = identity.patient_sex
    ds.StudyInstanceUID = identity.study_instance_uid
    ds.StudyDate = ds.ContentDate = ds.SeriesDate = identity.study_date
    ds.StudyTime = ds.ContentTime = ds.SeriesTime = identity.study_time
    ds.StudyID = identity.study_id
    ds.AccessionNumber = identity.accession_number
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = identity.study_description
    ds.Modality = "US"
    ds.SeriesInstanceUID = identity.series_instance_uid
    ds.SeriesNumber = identity.series_number
    ds.SeriesDescription = identity.series_description
    if identity.body_part:
        ds.BodyPartExamined = identity.body_part
    ds.Manufacturer = "usseg"
    ds.ManufacturerModelName = "usseg synthetic B-mode simulator"
    ds.InstanceNumber = identity.instance_number
    ds.PatientOrientation = ""
    # value 3: exam type (defined terms of PS3.3 C.8.5.6.1.1), value 4: 0001 = 2D imaging; both optional
    ds.ImageType = ["DERIVED", "PRIMARY"] + ([identity.image_type_3, "0001"] if identity.image_type_3 else [])
    ds.ImageComments = "Synthetic image: simulated B-mode, not patient data"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    return ds


def _set_pixels(ds: FileDataset, pixels: np.ndarray) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(pixels.shape[-2]), int(pixels.shape[-1])
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    ds["PixelData"].VR = "OB"


def _region(pixel_mm: float, box: tuple[int, int, int, int], frequency_khz: int | None) -> Sequence:
    item = pydicom.Dataset()
    item.RegionSpatialFormat = 1  # 2D
    item.RegionDataType = 1  # tissue
    item.RegionFlags = 0
    item.RegionLocationMinX0, item.RegionLocationMinY0, item.RegionLocationMaxX1, item.RegionLocationMaxY1 = (
        int(v) for v in box
    )
    item.PhysicalUnitsXDirection = 3  # cm
    item.PhysicalUnitsYDirection = 3
    item.PhysicalDeltaX = float(pixel_mm) / 10.0
    item.PhysicalDeltaY = float(pixel_mm) / 10.0
    if frequency_khz:
        item.TransducerFrequency = int(frequency_khz)
    return Sequence([item])


def _check(pixels: np.ndarray, ndim: int, pixel_mm: float, what: str) -> np.ndarray:
    pixels = np.asarray(pixels)
    if pixels.ndim != ndim or min(pixels.shape) < 1:
        raise ValueError(f"{what} pixels must be a non-empty {ndim}D array, got shape {pixels.shape}")
    if pixels.dtype != np.uint8:
        raise ValueError(f"{what} pixels must be uint8, got {pixels.dtype}")
    if not pixel_mm > 0:
        raise ValueError(f"pixel_mm must be > 0, got {pixel_mm}")
    return pixels


def _box(pixels: np.ndarray, region_box: tuple[int, int, int, int] | None) -> tuple[int, int, int, int]:
    if region_box is not None:
        return region_box
    return 0, 0, pixels.shape[-1] - 1, pixels.shape[-2] - 1


def _dataset(
    path: Path,
    sop_class: str,
    identity: DicomIdentity,
    pixels: np.ndarray,
    pixel_mm: float,
    region_box: tuple[int, int, int, int] | None,
    transducer_frequency_khz: int | None,
) -> FileDataset:
    """The object of ``sop_class`` with its identity, pixels and one ultrasound region (not yet saved)."""
    ds = _base_dataset(path, sop_class, identity)
    _set_pixels(ds, pixels)
    ds.SequenceOfUltrasoundRegions = _region(pixel_mm, _box(pixels, region_box), transducer_frequency_khz)
    return ds


def _save(ds: FileDataset, path: Path) -> Path:
    """Save ``ds`` to ``path`` (parent folders created) with its file meta group; return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), write_like_original=False)
    return path


def write_us_cine(
    path: str | Path,
    frames: np.ndarray,
    pixel_mm: float,
    frame_time_ms: float,
    identity: DicomIdentity,
    region_box: tuple[int, int, int, int] | None = None,
    transducer_frequency_khz: int | None = None,
) -> Path:
    """Write a cine as DICOM Ultrasound Multi-frame Image Storage.

    Args:
        path: output file.
        frames: ``(T, rows, cols)`` uint8 grey frames.
        pixel_mm: isotropic pixel spacing (mm); written as ``PhysicalDeltaX/Y`` in cm.
        frame_time_ms: ``FrameTime``; ``CineRate = round(1000 / frame_time_ms)``.
        identity: patient/study/series/instance identity.
        region_box: ``(min_x, min_y, max_x, max_y)`` pixel box of the imaged region (default: whole frame).
        transducer_frequency_khz: written in the region item when given.

    Returns:
        The written path.

    Raises:
        ValueError: for a wrong shape or dtype, or non-positive spacing / frame time.
    """
    frames = _check(frames, 3, pixel_mm, "cine")
    if not frame_time_ms > 0:
        raise ValueError(f"frame_time_ms must be > 0, got {frame_time_ms}")
    path = Path(path)
    ds = _dataset(
        path, US_MULTIFRAME_IMAGE_STORAGE, identity, frames, pixel_mm, region_box, transducer_frequency_khz
    )
    ds.NumberOfFrames = int(frames.shape[0])
    ds.FrameIncrementPointer = _FRAME_TIME_TAG
    ds.FrameTime = f"{frame_time_ms:.4f}"
    rate = int(round(1000.0 / frame_time_ms))
    ds.CineRate = rate
    ds.RecommendedDisplayFrameRate = rate
    ds.PreferredPlaybackSequencing = 0  # looping
    return _save(ds, path)


def write_us_image(
    path: str | Path,
    image: np.ndarray,
    pixel_mm: float,
    identity: DicomIdentity,
    region_box: tuple[int, int, int, int] | None = None,
    transducer_frequency_khz: int | None = None,
) -> Path:
    """Write one frame as DICOM Ultrasound Image Storage (no ``NumberOfFrames``).

    Args:
        path: output file.
        image: ``(rows, cols)`` uint8 grey image.
        pixel_mm: isotropic pixel spacing (mm).
        identity: patient/study/series/instance identity.
        region_box: ``(min_x, min_y, max_x, max_y)`` pixel box of the imaged region (default: whole image).
        transducer_frequency_khz: written in the region item when given.

    Returns:
        The written path.
    """
    image = _check(image, 2, pixel_mm, "image")
    path = Path(path)
    ds = _dataset(path, US_IMAGE_STORAGE, identity, image, pixel_mm, region_box, transducer_frequency_khz)
    return _save(ds, path)
