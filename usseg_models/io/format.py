"""One entry of the format registry (:mod:`usseg_models.io.formats`): what each format module exports.

A format module (``dicom_pixels``, ``raster``, ``volume``, ``video``) defines its :class:`Format` entries next to
its reader; :mod:`usseg_models.io.formats` lists them in the order files are sniffed, and everything that needs to
know the formats — sniffing, :func:`~usseg_models.io.formats.load_image`, the header probe, the MONAI readers, the
server's accepted extensions, ``usseg predict``'s file discovery — reads that one list.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from usseg_models.errors import UltrasoundIOError
from usseg_models.io.conventions import bt601_luma

__all__ = ["Format", "Reader", "grey_on_request", "read_head", "file_error", "HEAD_BYTES"]

#: bytes read from the start of a file to sniff its format
HEAD_BYTES = 1024

Reader = Callable[[str, bool], tuple[np.ndarray, dict[str, Any]]]


@dataclass(frozen=True)
class Format:
    """One file format.

    Attributes:
        name: the name :func:`~usseg_models.io.formats.sniff_format` returns (``"dicom"``, ``"png"``, ...).
        suffixes: file name endings (lower case, with the dot); the content decides, names only help discovery.
        sniff: ``(first HEAD_BYTES bytes, path) -> bool``: whether a file is of this format.
        read: ``(path, grayscale) -> (array, meta)``, validating the file first (reader layout, ``docs/DESIGN.md``).
        probe: ``path -> ImageHeader`` from the header only (:mod:`usseg_models.io.header`).
        kind: ``"image"`` or ``"cine"`` when the format alone says which; ``None`` when its header decides
            (a DICOM, NIfTI or NRRD file may be either).
        label: how the format is named in messages.
    """

    name: str
    suffixes: tuple[str, ...]
    sniff: Callable[[bytes, str], bool]
    read: Reader
    probe: Callable[[str], Any]
    kind: str | None = None
    label: str = ""

    def __post_init__(self) -> None:
        bad = [s for s in self.suffixes if not s.startswith(".") or s != s.lower()]
        if bad or self.kind not in (None, "image", "cine"):
            raise ValueError(f"format {self.name}: suffixes must be lower case with a dot ({bad}), kind image/cine")


def grey_on_request(read: Callable[[str], tuple[np.ndarray, dict[str, Any]]]) -> Reader:
    """A registry reader from ``read(path)``: BT.601 luma applied when asked (formats without a colour rule)."""

    def reader(path: str, grayscale: bool) -> tuple[np.ndarray, dict[str, Any]]:
        arr, meta = read(path)
        if grayscale and meta["original_channel_dim"] == -1:
            arr = bt601_luma(arr)
            meta["original_channel_dim"] = "no_channel"
            meta["photometric_interpretation"] = "MONOCHROME2"
        return arr, meta

    return reader


def file_error(path: str | os.PathLike, problem: str) -> UltrasoundIOError:
    """The one error of a bad input file: ``"<path>: <problem>"``."""
    return UltrasoundIOError(f"{os.fspath(path)}: {problem}")


def read_head(path: str | os.PathLike, size: int = HEAD_BYTES) -> bytes:
    """The first ``size`` bytes of a file to sniff.

    Raises:
        FileNotFoundError: no such file.
        UltrasoundIOError: a directory or an empty file.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(2, "No such file", os.fspath(path))
    if os.path.isdir(path):
        raise file_error(path, "is a directory, not an image file")
    with open(path, "rb") as fh:
        head = fh.read(size)
    if not head:
        raise file_error(path, "file is empty")
    return head
