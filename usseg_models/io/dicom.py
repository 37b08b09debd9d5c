"""Ultrasound DICOM reader (single and multi-frame) as a MONAI :class:`~monai.data.ImageReader`, built on pydicom.

Decoding, the colour rule and the metadata keys are documented in :mod:`usseg_models.io.dicom_pixels`:
spatial-first ``(X, Y[, T][, 3])`` arrays, YBR -> RGB, PALETTE COLOR -> RGB through the LUT, MONOCHROME1 inverted,
optional BT.601 luma grey, ``affine = diag(sx, sy, 1, 1)`` from the ultrasound regions calibration.
Every file is validated (:func:`usseg_models.io.validate.validate_dicom`) before pydicom decodes it; the reader is
the registry's DICOM entry (:class:`usseg_models.io.loaders.RegistryReader`).

Examples::

    >>> from monai.transforms import LoadImage
    >>> from usseg_models.io.dicom import UltrasoundDicomReader
    >>> from usseg_models.io.dicom_pixels import read_dicom
    >>> clip = LoadImage(reader=UltrasoundDicomReader())("echo.dcm")   # doctest: +SKIP
    >>> clip.shape                                                      # doctest: +SKIP
    torch.Size([320, 240, 30, 3])
    >>> array, meta = read_dicom("echo.dcm", grayscale=True)           # doctest: +SKIP
    >>> array.shape, meta["frame_time_ms"]                              # doctest: +SKIP
    ((320, 240, 30), 33.333)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from monai.utils import ensure_tuple

from usseg_models.io.dicom_pixels import FORMAT as DICOM_FORMAT
from usseg_models.io.loaders import RegistryReader
from usseg_models.io.validate import file_is_dicom

__all__ = ["UltrasoundDicomReader"]

logger = logging.getLogger(__name__)



class UltrasoundDicomReader(RegistryReader):
    """MONAI image reader for ultrasound DICOM (see the module docstring for layout, colour rule and metadata).

    Note:
        ``LoadImage(reader=UltrasoundDicomReader())`` falls back to MONAI's other readers (ITK, ...) when this reader
        raises, so an invalid file would still reach a native decoder. For untrusted files use
        :class:`usseg_models.io.loaders.LoadUltrasound` / ``LoadUltrasoundd``, which raise
        :class:`~usseg_models.errors.UltrasoundIOError` instead.

    Args:
        grayscale: convert colour (RGB, YBR, palette) to grey by BT.601 luma.

    Examples::

        >>> from monai.transforms import LoadImaged
        >>> load = LoadImaged("image", reader=UltrasoundDicomReader(grayscale=True))  # doctest: +SKIP
        >>> load({"image": "echo.dcm"})["image"].shape                                 # doctest: +SKIP
        torch.Size([320, 240, 30])
    """

    formats = ("dicom",)

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        """True when every file has a DICOM suffix or, for existing files, the ``DICM`` prefix."""
        for name in ensure_tuple(filename):
            p = Path(name)
            if p.suffix.lower() not in DICOM_FORMAT.suffixes and not file_is_dicom(p):
                return False
        return True
