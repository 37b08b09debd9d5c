"""PNG, JPEG, GIF, BMP and TIFF files (Pillow) as ``(X, Y)`` grey or ``(X, Y, 3)`` colour arrays.

Palette images become RGB, alpha channels are dropped, 1-bit images become ``uint8`` 0/255, 16-bit grey stays
``uint16``; an animated GIF or multi-page TIFF gives its first frame. Spacing 1, identity affine (physical size in
PNG ``pHYs`` is ignored). The registry entries of the five formats are :data:`FORMATS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from usseg_models.io.format import Format, file_error, grey_on_request
from usseg_models.io.header import probe_raster
from usseg_models.io.layout import base_meta

__all__ = ["read_raster", "FORMATS"]



def read_raster(path) -> tuple[np.ndarray, dict[str, Any]]:
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif mode in ("1", "LA", "La"):
                im = im.convert("L")
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBa", "RGBX"):
                im = im.convert("RGB")
            arr = np.asarray(im)
            fmt = (im.format or Path(path).suffix.lstrip(".")).lower()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise file_error(path, f"corrupt or truncated image file ({type(exc).__name__}: {exc})") from exc
    if arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]  # alpha dropped
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] != 3):
        raise file_error(path, f"unsupported image layout {arr.shape} (mode {mode})")
    colour = arr.ndim == 3
    arr = np.ascontiguousarray(arr.transpose((1, 0, 2) if colour else (1, 0)))  # (Y, X) -> (X, Y)
    return arr, base_meta(path, arr, np.eye(4), colour, "jpeg" if fmt in ("jpeg", "jpg", "mpo") else fmt)


def _entry(name: str, suffixes: tuple[str, ...], sniff, label: str) -> Format:
    return Format(name, suffixes, sniff, grey_on_request(read_raster), lambda path: probe_raster(path, name),
                  kind="image", label=label)


#: registry entries (:mod:`usseg_models.io.formats`): PNG, JPEG, GIF, BMP, TIFF
FORMATS = (
    _entry("png", (".png",), lambda head, path: head.startswith(b"\x89PNG\r\n\x1a\n"), "PNG"),
    _entry("jpeg", (".jpg", ".jpeg"), lambda head, path: head.startswith(b"\xff\xd8\xff"), "JPEG"),
    _entry("gif", (".gif",), lambda head, path: head.startswith((b"GIF87a", b"GIF89a")), "GIF"),
    _entry("bmp", (".bmp",), lambda head, path: head.startswith(b"BM") and len(head) >= 26, "BMP"),
    _entry("tiff", (".tif", ".tiff"), lambda head, path: head.startswith((b"II*\x00", b"MM\x00*")), "TIFF"),
)
