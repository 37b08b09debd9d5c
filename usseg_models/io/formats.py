"""The format registry: every file format this project reads, in the order files are sniffed.

Each format module exports its entry (:class:`~usseg_models.io.format.Format`: how to recognise it from its first
bytes, its reader, its header-only prober, its file name endings, whether it is always an image or a cine):
:data:`usseg_models.io.dicom_pixels.FORMAT`, :data:`usseg_models.io.raster.FORMATS` (PNG, JPEG, GIF, BMP, TIFF),
:data:`usseg_models.io.volume.NIFTI` / :data:`~usseg_models.io.volume.NRRD` and
:data:`usseg_models.io.video.FORMAT`. Everything that needs to know the formats reads :data:`FORMATS`:
:func:`sniff_format`, :func:`load_image`, :func:`probe_header`, the MONAI readers (:mod:`usseg_models.io.loaders`),
``usseg predict``'s file discovery (:mod:`usseg_models.inference.files`), the server's datastore extensions
(:data:`DATASTORE_PATTERNS`) and its image/cine decision (``monailabel_app/lib/inputs.py``). Adding a format is
one entry in its module and one line here.

:func:`load_image` identifies the format from the file's bytes, once, and hands the file to the entry's reader,
which validates it in Python and returns ``(array, meta)`` in MONAI's spatial-first layout (``docs/DESIGN.md``).
:func:`probe_header` answers "is this a cine, how many frames, how big once decoded" from the header alone.

Examples::

    >>> from usseg_models.io.formats import load_image, probe_header
    >>> array, meta = load_image("frame.png", grayscale=True)              # doctest: +SKIP
    >>> array.shape, meta["spacing"]                                        # doctest: +SKIP
    ((640, 480), array([1., 1.]))
    >>> probe_header("clip.mp4").frames                                     # doctest: +SKIP
    24
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from usseg_models.errors import UltrasoundIOError
from usseg_models.io import dicom_pixels, raster, video, volume
from usseg_models.io.format import Format, read_head
from usseg_models.io.header import ImageHeader

__all__ = ["FORMATS", "SUFFIXES", "DATASTORE_PATTERNS", "sniff_format", "load_image", "probe_header",
           "suffixes_of", "kind_from_name", "has_readable_name"]

#: name → entry, in sniffing order (the DICOM prefix sits at byte 128, so it is checked first; NIfTI last: a gzip
#: stream is opened to look inside)
FORMATS: dict[str, Format] = {f.name: f for f in (
    dicom_pixels.FORMAT, *raster.FORMATS, volume.NRRD, video.FORMAT, volume.NIFTI)}

#: every file name ending some reader uses (a DICOM file may also have none)
SUFFIXES: tuple[str, ...] = tuple(s for f in FORMATS.values() for s in f.suffixes)

#: ``MONAI_LABEL_DATASTORE_FILE_EXT`` patterns of the server's local datastore: every format's endings (not NRRD's
#: detached ``.nhdr`` header, whose pixels live in another file the datastore would not copy)
DATASTORE_PATTERNS: tuple[str, ...] = tuple(f"*{s}" for s in SUFFIXES if s not in (".nhdr", ".seg.nrrd"))


def _supported() -> str:
    return ", ".join(dict.fromkeys(f.label or f.name for f in FORMATS.values()))


def sniff_format(path: str | os.PathLike) -> str:
    """The name of a file's format (a key of :data:`FORMATS`), from its content, never from its name alone.

    Raises:
        FileNotFoundError: the file does not exist.
        UltrasoundIOError: the file is empty, a directory, or of no supported format.
    """
    head = read_head(path)
    name = os.fspath(path)
    for fmt in FORMATS.values():
        if fmt.sniff(head, name):
            return fmt.name
    if name.lower().endswith(FORMATS["dicom"].suffixes):
        raise UltrasoundIOError(f"{name}: not a DICOM file (no 'DICM' prefix at byte 128)")
    raise UltrasoundIOError(f"{name}: unsupported or unrecognised file format (expected {_supported()})")


def load_image(path: str | os.PathLike, grayscale: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Validate and read an image or cine file of any supported format (see the module docstring).

    Args:
        path: DICOM, PNG, JPEG (GIF, BMP, TIFF), NIfTI (``.nii``/``.nii.gz``), NRRD (``.nrrd``/``.seg.nrrd``) or
            video (MP4/MOV/AVI) file.
        grayscale: convert colour to grey by ITU-R BT.601 luma.

    Returns:
        ``(array, meta)``: ``array`` is ``(X, Y[, T][, 3])``; ``meta`` has the keys of ``docs/DESIGN.md`` plus
        ``format`` and ``one_slice``.

    Raises:
        FileNotFoundError: no such file.
        UltrasoundIOError: unsupported format, or a corrupt/inconsistent file (message names the problem).
        MissingDecoderError: a DICOM transfer syntax whose decoder package is not installed.
    """
    return FORMATS[sniff_format(path)].read(os.fspath(path), grayscale)


def probe_header(path: str | os.PathLike) -> ImageHeader:
    """The decoded shape and size of an image/cine/label file from its header only (see :mod:`.header`).

    Raises:
        FileNotFoundError: no such file.
        HeaderTooLarge: the header parser itself refused the declared size.
        UltrasoundIOError: unsupported format or an unreadable header (the message names the file).
    """
    path = os.fspath(path)
    return FORMATS[sniff_format(path)].probe(path)


def suffixes_of(kind: str | None = None, names: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """File name endings of the formats that are always ``kind`` (``"image"``/``"cine"``; ``None``: whose header
    decides), or of the formats ``names``."""
    chosen = [f for f in FORMATS.values() if (f.name in names if names is not None else f.kind == kind)]
    return tuple(s for f in chosen for s in f.suffixes)


def kind_from_name(path: str | os.PathLike) -> str | None:
    """``"image"`` or ``"cine"`` when the file's name ends like a format that is always one; else ``None``."""
    name = os.fspath(path).lower()
    return next((f.kind for f in FORMATS.values() if f.kind and name.endswith(f.suffixes)), None)


def has_readable_name(path: str | os.PathLike) -> bool:
    """Whether a file's name ends like a readable format (``usseg predict`` collects those from folders)."""
    return Path(path).name.lower().endswith(SUFFIXES)
