"""Input resolution for the app: which file to read for a datastore item, and what kind of item it is.

:func:`resolve_input_file` picks the file of a DICOM series folder (:func:`resolve_request_file` answers an empty
one with HTTP 422), :func:`spatial_ndim` counts the reader array's spatial axes. :func:`item_kind` tells a cine from
an image from the header only — no pixel is decoded.

Used on every label save (auto-retrain counting), at start-up (bootstrap training) and by the trainer, so it
must be cheap: the library's header-only prober (:func:`usseg_models.io.formats.probe_header`: DICOM
``NumberOfFrames`` before the pixel data, the NIfTI/NRRD header shape) and the file type for PNG/JPEG (images) and
video files (cines). A file whose header cannot be read has no kind
(``None``) and is skipped with a warning by its callers.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from usseg_models.io.formats import kind_from_name, probe_header
from usseg_models.io.layout import spatial_ndim

__all__ = ["item_kind", "resolve_input_file", "resolve_request_file", "spatial_ndim"]

logger = logging.getLogger(__name__)


def resolve_input_file(path: str) -> str:
    """The file to read for ``path``: the file itself, or the largest instance of a DICOM series folder.

    A DICOMweb datastore hands over a folder holding the series' instances; an ultrasound cine is one multi-frame
    instance (the largest file), an image one single-frame instance.

    Raises:
        FileNotFoundError: an empty series folder.
    """
    if not os.path.isdir(path):
        return path
    files = sorted(p for p in Path(path).iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"series folder {Path(path).name} holds no DICOM instance")
    if len(files) > 1:
        files.sort(key=lambda p: p.stat().st_size, reverse=True)
        logger.info("series %s has %d instances; using %s", Path(path).name, len(files), files[0].name)
    return str(files[0])


def resolve_request_file(path: str) -> str:
    """:func:`resolve_input_file` for a request: an empty series folder is answered HTTP 422."""
    from monailabel_app.lib.http import unprocessable

    try:
        return resolve_input_file(path)
    except FileNotFoundError as exc:
        raise unprocessable(str(exc)) from exc


def item_kind(path: str) -> str | None:
    """``"cine"`` for a clip of more than one frame, ``"image"`` for a 2D image, ``None`` when unreadable."""
    try:
        path = resolve_input_file(path)
        # a video is always a cine and a PNG/JPEG/... always an image (the format registry says which); a DICOM,
        # NIfTI or NRRD file is told by its header
        return kind_from_name(path) or ("cine" if probe_header(path).is_cine else "image")
    except Exception as exc:  # noqa: BLE001 - any unreadable header means "no kind"; callers skip the file
        logger.warning("cannot tell the kind of %s: %s", path, exc)
        return None
