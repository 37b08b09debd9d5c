"""Validation of untrusted image files in pure Python, before any native reader sees them.

A stock MONAI Label server aborted inside ITK on a DICOM whose header said ``BitsAllocated = 7``
(``docs/paper-readings.md``, "Environment facts behind io/validate.py"). Every file that enters this project is
therefore checked here first, with pydicom (DICOM), nibabel (NIfTI), pynrrd (NRRD), Pillow's header parser
(PNG/JPEG/GIF/BMP/TIFF) and a pure-Python container walk for video files
(:func:`usseg_models.io.video_probe.probe_video`); formats are told apart by their bytes
(:func:`usseg_models.io.formats.sniff_format`);
a file that fails raises :class:`~usseg_models.errors.UltrasoundIOError` (or its subclass
:class:`~usseg_models.errors.MissingDecoderError`) with a message naming the file and the problem. That is the
one documented exception type for bad input.

DICOM checks (:func:`validate_dicom`):
    - the file is DICOM (``DICM`` prefix and a parseable data set), not truncated in its header;
    - it has *Pixel Data*, ``NumberOfFrames >= 1``, ``Rows``/``Columns >= 1``, and would decode to at most
      :data:`MAX_DECODED_BYTES` (4 GiB);
    - ``BitsAllocated`` in {1, 8, 16, 32}, ``1 <= BitsStored <= BitsAllocated``, ``PixelRepresentation`` in {0, 1};
    - ``SamplesPerPixel`` agrees with ``PhotometricInterpretation`` (a supported one, palette tables present);
    - native pixel data holds at least ``Rows x Columns x Samples x Frames x BitsAllocated / 8`` bytes,
      encapsulated pixel data holds one fragment group per frame;
    - the transfer syntax is one this project decodes, and a decoder for it is installed
      (otherwise :class:`~usseg_models.errors.MissingDecoderError` names the package to install);
    - a modality other than ``US`` is accepted with a warning.

Examples::

    >>> from usseg_models.io.validate import validate_dicom
    >>> ds = validate_dicom("clip.dcm")            # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import warnings

import pydicom
from pydicom import config as pydicom_config
from pydicom import uid as dcm_uid
from pydicom.encaps import generate_pixel_data_frame
from pydicom.errors import InvalidDicomError
from pydicom.pixel_data_handlers.util import get_expected_length

from usseg_models.errors import MissingDecoderError
from usseg_models.io.format import file_error, read_head

__all__ = [
    "SUPPORTED_TRANSFER_SYNTAXES",
    "DECODER_PACKAGES",
    "SUPPORTED_PHOTOMETRIC",
    "is_dicom",
    "file_is_dicom",
    "validate_dicom",
    "check_decoder_available",
    "MAX_DECODED_BYTES",
]

logger = logging.getLogger(__name__)

_NATIVE = (
    dcm_uid.ImplicitVRLittleEndian,
    dcm_uid.ExplicitVRLittleEndian,
    dcm_uid.DeflatedExplicitVRLittleEndian,
    dcm_uid.ExplicitVRBigEndian,
)

#: Transfer syntax UID -> packages (pip names) that can decode it through a pydicom pixel data handler.
DECODER_PACKAGES: dict[str, tuple[str, ...]] = {
    **{str(ts): ("numpy",) for ts in _NATIVE},
    str(dcm_uid.RLELossless): ("numpy",),
    str(dcm_uid.JPEGBaseline8Bit): ("pillow", "python-gdcm", "pylibjpeg + pylibjpeg-libjpeg"),
    str(dcm_uid.JPEGExtended12Bit): ("pillow", "python-gdcm", "pylibjpeg + pylibjpeg-libjpeg"),
    str(dcm_uid.JPEGLosslessP14): ("python-gdcm", "pylibjpeg + pylibjpeg-libjpeg"),
    str(dcm_uid.JPEGLosslessSV1): ("python-gdcm", "pylibjpeg + pylibjpeg-libjpeg"),
    str(dcm_uid.JPEGLSLossless): ("python-gdcm", "pylibjpeg + pylibjpeg-libjpeg", "CharPyLS"),
    str(dcm_uid.JPEGLSNearLossless): ("python-gdcm", "pylibjpeg + pylibjpeg-libjpeg", "CharPyLS"),
    str(dcm_uid.JPEG2000Lossless): ("pillow (with OpenJPEG)", "python-gdcm", "pylibjpeg + pylibjpeg-openjpeg"),
    str(dcm_uid.JPEG2000): ("pillow (with OpenJPEG)", "python-gdcm", "pylibjpeg + pylibjpeg-openjpeg"),
}

#: Transfer syntaxes this project reads (MPEG/HEVC video and JPIP are not supported).
SUPPORTED_TRANSFER_SYNTAXES: frozenset[str] = frozenset(DECODER_PACKAGES)

#: Photometric interpretation -> samples per pixel it requires.
SUPPORTED_PHOTOMETRIC: dict[str, int] = {
    "MONOCHROME1": 1,
    "MONOCHROME2": 1,
    "PALETTE COLOR": 1,
    "RGB": 3,
    "YBR_FULL": 3,
    "YBR_FULL_422": 3,
    "YBR_ICT": 3,
    "YBR_RCT": 3,
}

_ALLOWED_BITS_ALLOCATED = (1, 8, 16, 32)

#: Largest decoded pixel array accepted (bytes); a small compressed file can claim an enormous image.
MAX_DECODED_BYTES = 4 * 2**30



def is_dicom(head: bytes) -> bool:
    """Whether the first bytes of a file carry the DICOM ``DICM`` prefix (at byte 128)."""
    return len(head) >= 132 and head[128:132] == b"DICM"


def file_is_dicom(path: str | os.PathLike) -> bool:
    """Whether a file carries the DICOM ``DICM`` prefix; ``False`` when it cannot be read (a name-less DICOM test)."""
    try:
        with open(path, "rb") as fh:
            return is_dicom(fh.read(132))
    except OSError:
        return False


def check_decoder_available(transfer_syntax: str, path: str | os.PathLike = "<dataset>") -> None:
    """Raise unless an installed pydicom pixel data handler decodes ``transfer_syntax``.

    Args:
        transfer_syntax: Transfer Syntax UID.
        path: file name used in the message.

    Raises:
        UltrasoundIOError: the transfer syntax is not supported by this project.
        MissingDecoderError: supported, but no installed handler decodes it; the message names the package(s).
    """
    ts = dcm_uid.UID(str(transfer_syntax))
    if str(ts) not in SUPPORTED_TRANSFER_SYNTAXES:
        raise file_error(
            path, f"unsupported transfer syntax {ts} ({ts.name}); supported: native, RLE, JPEG, JPEG-LS, JPEG 2000"
        )
    handlers = [h for h in pydicom_config.pixel_data_handlers if h.supports_transfer_syntax(ts)]
    if not any(h.is_available() for h in handlers):
        packages = " or ".join(DECODER_PACKAGES[str(ts)])
        raise MissingDecoderError(
            f"{os.fspath(path)}: transfer syntax {ts.name} needs a decoder that is not installed: "
            f"pip install {packages}"
        )


def validate_dicom(path: str | os.PathLike, check_decoder: bool = True, sniffed: bool = False) -> pydicom.Dataset:
    """Read and check a DICOM file with pydicom; return the data set (pixel data not decoded).

    Args:
        path: DICOM file.
        check_decoder: also require an installed decoder for the transfer syntax.
        sniffed: the caller already identified the file as DICOM by its content (the prefix is not read again).

    Returns:
        the parsed :class:`pydicom.Dataset` (``filename`` set), safe to hand to a decoder.

    Raises:
        FileNotFoundError: the file does not exist.
        UltrasoundIOError: any problem listed in the module docstring (message names the file and the problem).
        MissingDecoderError: no installed decoder for its transfer syntax.
    """
    if not sniffed and not is_dicom(read_head(path)):
        raise file_error(path, "not a DICOM file (no 'DICM' prefix at byte 128)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about vendor quirks it tolerates
            ds = pydicom.dcmread(os.fspath(path), force=False)
    except InvalidDicomError as exc:
        raise file_error(path, f"not a valid DICOM file ({exc})") from exc
    except (EOFError, OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, NotImplementedError) as exc:
        raise file_error(path, f"truncated or corrupt DICOM header ({type(exc).__name__}: {exc})") from exc
    _check_dataset(ds, path, check_decoder)
    modality = str(ds.get("Modality", "") or "")
    if modality != "US":
        msg = f"{os.fspath(path)}: modality is {modality or 'missing'!r}, not 'US'; reading it as an ultrasound image"
        logger.warning(msg)
        warnings.warn(msg, UserWarning, stacklevel=2)
    return ds


def _int_element(ds: pydicom.Dataset, keyword: str, path, default: int | None = None) -> int:
    value = ds.get(keyword, default)
    if value is None or value == "":
        raise file_error(path, f"missing {keyword}")
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise file_error(path, f"{keyword} is not an integer ({value!r})") from exc


def _check_dataset(ds: pydicom.Dataset, path, check_decoder: bool) -> None:
    file_meta = getattr(ds, "file_meta", None)
    ts = getattr(file_meta, "TransferSyntaxUID", None) if file_meta is not None else None
    if not ts:
        raise file_error(path, "missing TransferSyntaxUID in the file meta information (truncated or corrupt header)")
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise file_error(path, "float pixel data is not supported")
        with open(path, "rb") as fh:
            raw = fh.read()
        if b"\xe0\x7f\x10\x00" in raw or b"\x7f\xe0\x00\x10" in raw:
            raise file_error(
                path, f"truncated DICOM file: PixelData element incomplete (file ends at {len(raw)} bytes)")
        raise file_error(path, "DICOM file has no pixel data (PixelData missing, or the file is truncated before it)")
    if str(ts) not in SUPPORTED_TRANSFER_SYNTAXES:
        raise file_error(path, f"unsupported transfer syntax {ts} ({dcm_uid.UID(str(ts)).name})")

    rows = _int_element(ds, "Rows", path)
    cols = _int_element(ds, "Columns", path)
    if rows < 1 or cols < 1:
        raise file_error(path, f"image size is {rows}x{cols} (Rows x Columns must be >= 1)")
    frames = _int_element(ds, "NumberOfFrames", path, default=1)
    if frames < 1:
        raise file_error(path, f"NumberOfFrames is {frames}: the file has zero frames")
    bits_alloc = _int_element(ds, "BitsAllocated", path)
    if bits_alloc not in _ALLOWED_BITS_ALLOCATED:
        allowed = ", ".join(map(str, _ALLOWED_BITS_ALLOCATED))
        raise file_error(path, f"invalid BitsAllocated {bits_alloc} (allowed: {allowed})")
    bits_stored = _int_element(ds, "BitsStored", path, default=bits_alloc)
    if not 1 <= bits_stored <= bits_alloc:
        raise file_error(path, f"BitsStored {bits_stored} is inconsistent with BitsAllocated {bits_alloc}")
    pixel_rep = _int_element(ds, "PixelRepresentation", path, default=0)
    if pixel_rep not in (0, 1):
        raise file_error(path, f"invalid PixelRepresentation {pixel_rep}")
    samples = _int_element(ds, "SamplesPerPixel", path, default=1)
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip()
    if photometric not in SUPPORTED_PHOTOMETRIC:
        raise file_error(path, f"unsupported PhotometricInterpretation {photometric or 'missing'!r}")
    if samples != SUPPORTED_PHOTOMETRIC[photometric]:
        raise file_error(
            path, f"SamplesPerPixel {samples} is inconsistent with PhotometricInterpretation {photometric}")
    if photometric == "PALETTE COLOR":
        needed = [f"{c}PaletteColorLookupTableDescriptor" for c in ("Red", "Green", "Blue")]
        if any(k not in ds for k in needed) or not (
            all(f"{c}PaletteColorLookupTableData" in ds for c in ("Red", "Green", "Blue"))
            or "SegmentedRedPaletteColorLookupTableData" in ds
        ):
            raise file_error(path, "PALETTE COLOR image without complete palette colour lookup tables")

    decoded = rows * cols * frames * samples * max(bits_alloc // 8, 1)
    if decoded > MAX_DECODED_BYTES:
        raise file_error(
            path, f"declared image of {rows}x{cols}x{frames} frames would decode to {decoded} bytes, more than"
            f" the {MAX_DECODED_BYTES}-byte limit (usseg_models.io.validate.MAX_DECODED_BYTES)")

    pixel_data = ds.PixelData
    if pixel_data is None or len(pixel_data) == 0:
        raise file_error(path, "PixelData element is empty")
    if str(ts) in {str(t) for t in _NATIVE}:
        try:
            expected = get_expected_length(ds, "bytes")
        except Exception as exc:  # noqa: BLE001 - pydicom raises various types on nonsense headers
            raise file_error(path, f"cannot compute the expected pixel data length ({exc})") from exc
        if len(pixel_data) < expected:
            raise file_error(
                path,
                f"pixel data has {len(pixel_data)} bytes but Rows {rows} x Columns {cols} x SamplesPerPixel {samples}"
                f" x NumberOfFrames {frames} x BitsAllocated {bits_alloc} needs {expected} (truncated file or wrong"
                " header)",
            )
    else:
        try:
            found = sum(1 for _ in generate_pixel_data_frame(pixel_data, frames))
        except Exception as exc:  # noqa: BLE001 - broken encapsulation raises ValueError/KeyError/struct.error
            raise file_error(path, f"corrupt or truncated encapsulated pixel data ({exc})") from exc
        if found < frames:
            raise file_error(path, f"encapsulated pixel data holds {found} frame(s), NumberOfFrames says {frames}")
    if check_decoder:
        check_decoder_available(str(ts), path)
