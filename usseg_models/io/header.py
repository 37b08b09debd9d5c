"""Shape of an image, cine or label file read from its header only (no pixel is decoded or decompressed).

:func:`usseg_models.io.formats.probe_header` (the format registry picks the prober for the sniffed format)
answers "how big will this file be once decoded, and what is its (X, Y[, T]) shape?" for
every format :func:`usseg_models.io.load_image` reads, using each format's header parser:

* DICOM: pydicom with ``stop_before_pixels=True`` (``Columns``, ``Rows``, ``NumberOfFrames``,
  ``SamplesPerPixel``; ``PALETTE COLOR`` decodes to 3 channels);
* PNG / JPEG / GIF / BMP / TIFF: Pillow's lazy ``Image.open`` (reads the size from ``IHDR`` / ``SOF`` / ...);
* video (MP4/MOV/AVI): :func:`usseg_models.io.video_probe.probe_video` (pure-Python container walk; frames decode to
  RGB, so 3 channels);
* NIfTI (``.nii`` / ``.nii.gz``): nibabel's header (the gzip stream is decompressed only as far as the header);
* NRRD (``.nrrd`` / ``.seg.nrrd``): pynrrd's ``read_header``.

The layout follows ``load_image``: X = columns (width), Y = rows (height), T = frames; a third axis of one
(a one-slice volume, a one-frame DICOM) is a 2D image.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import nibabel as nib
import nrrd
import pydicom
from PIL import Image

from usseg_models.errors import UltrasoundIOError
from usseg_models.io.video_probe import probe_video

__all__ = [
    "ImageHeader", "HeaderTooLarge", "probe_dicom", "probe_raster", "probe_nifti", "probe_nrrd", "probe_video_header",
]

_NRRD_CHANNEL_KINDS = ("rgb-color", "vector", "3-vector", "covariant-vector", "normal", "3-color", "list")


class HeaderTooLarge(UltrasoundIOError):
    """The header declares an image so large that its own parser refused it (e.g. Pillow's decompression-bomb
    check); the message names the declared size."""


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says about the decoded array.

    Attributes:
        format: the format :func:`usseg_models.io.formats.sniff_format` names (``"dicom"``, ``"png"``,
            ``"nifti"``, ``"nrrd"``, ``"video"``, ...).
        xy: ``(X, Y)`` = (columns, rows).
        frames: number of frames of a cine (``T > 1``), else ``None`` (2D image or one-slice volume).
        channels: samples per pixel of the decoded array (1 grey, 3 colour, 4 with alpha).
        elements: decoded size, pixels x frames x channels (what the limit is checked against).
        extra_axes: axes beyond (X, Y, T) of a volume (e.g. the 4th axis of a 4D NIfTI), as declared.
        num_frames: what the reader will put in ``meta["num_frames"]``: the T length when the file has a T axis
            (a DICOM with ``NumberOfFrames`` or a video, even of one frame), else ``None``.
    """

    format: str
    xy: tuple[int, int]
    frames: int | None
    channels: int
    elements: int
    extra_axes: tuple[int, ...] = ()
    num_frames: int | None = None

    @property
    def is_cine(self) -> bool:
        return self.frames is not None

    def describe(self) -> str:
        """``"128x96 image"``, ``"128x96x24 cine"`` (with ``", 3 channels"`` for colour)."""
        x, y = self.xy
        text = f"{x}x{y}x{self.frames} cine" if self.is_cine else f"{x}x{y} image"
        if self.extra_axes:
            text += f" with extra axes {list(self.extra_axes)}"
        return text + (f", {self.channels} channels" if self.channels != 1 else "")


def _frames(n: int | None) -> int | None:
    return n if n is not None and n > 1 else None


def probe_dicom(path: str) -> ImageHeader:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on corrupt headers
        raise UltrasoundIOError(f"{path}: unreadable DICOM header ({type(exc).__name__}: {exc})") from exc
    if str(ds.get("PhotometricInterpretation", "")).strip() == "PALETTE COLOR":
        samples = 3
    if rows < 1 or cols < 1 or frames < 1 or samples < 1:
        raise UltrasoundIOError(
            f"{path}: DICOM header declares {cols}x{rows} pixels, {frames} frames, {samples} samples"
        )
    declared = frames if "NumberOfFrames" in ds else None
    return ImageHeader("dicom", (cols, rows), _frames(frames), samples, rows * cols * frames * samples, (), declared)


def probe_raster(path: str, fmt: str = "png") -> ImageHeader:
    try:
        with Image.open(path) as im:  # lazy: only the header is parsed
            width, height = im.size
            bands = len(im.getbands())
            if im.mode == "P":
                bands = 4 if "transparency" in im.info else 3
    except Image.DecompressionBombError as exc:
        raise HeaderTooLarge(f"{path}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError, ...
        raise UltrasoundIOError(f"{path}: unreadable {fmt.upper()} header ({type(exc).__name__}: {exc})") from exc
    return ImageHeader(fmt, (width, height), None, bands, width * height * bands)


def probe_nifti(path: str) -> ImageHeader:
    try:
        img = nib.load(path)  # the array proxy is lazy; only the header has been read
        shape = tuple(int(s) for s in img.header.get_data_shape())
        dtype = img.header.get_data_dtype()
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types on corrupt files
        raise UltrasoundIOError(f"{path}: unreadable NIfTI header ({type(exc).__name__}: {exc})") from exc
    channels = 3 if dtype.names and set("RGB").issubset(dtype.names) else 1
    if len(shape) == 5 and shape[3] == 1 and shape[4] == 3:  # (X, Y, Z, 1, 3) vector image
        shape, channels = shape[:3], 3
    return _volume("nifti", shape, channels)


def probe_nrrd(path: str) -> ImageHeader:
    try:
        header = nrrd.read_header(path)
        sizes = [int(s) for s in header["sizes"]]
    except Exception as exc:  # noqa: BLE001 - pynrrd raises NRRDError, ValueError, KeyError, ...
        raise UltrasoundIOError(f"{path}: unreadable NRRD header ({type(exc).__name__}: {exc})") from exc
    kinds = [str(k).lower() for k in header.get("kinds", ["domain"] * len(sizes))]
    channels = 1
    spatial = []
    for size, kind in zip(sizes, kinds + ["domain"] * (len(sizes) - len(kinds))):
        if kind in _NRRD_CHANNEL_KINDS:
            channels *= size
        else:
            spatial.append(size)
    return _volume("nrrd", tuple(spatial), channels)


def _volume(fmt: str, shape: tuple[int, ...], channels: int) -> ImageHeader:
    if len(shape) < 2 or any(s < 0 for s in shape):
        raise UltrasoundIOError(f"{fmt} header declares shape {shape}; expected (X, Y) or (X, Y, T)")
    frames = _frames(shape[2]) if len(shape) >= 3 else None
    return ImageHeader(fmt, (shape[0], shape[1]), frames, channels, math.prod(shape) * channels, tuple(shape[3:]),
                       frames)


def probe_video_header(path: str) -> ImageHeader:
    info = probe_video(path)  # validates the container; raises over its own limits
    frames = int(info.num_frames)
    return ImageHeader("video", (int(info.width), int(info.height)), _frames(frames), 3,
                       int(info.width) * int(info.height) * 3 * frames, (), frames)
