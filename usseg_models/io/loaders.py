"""Loaders: MONAI wrappers of the format registry (:mod:`usseg_models.io.formats`) — ``ImageReader`` classes
(:class:`RegistryReader`: every format, video only; DICOM only in :mod:`usseg_models.io.dicom`) and the
``LoadUltrasound`` / ``LoadUltrasoundd`` transform pair (array and dictionary, MONAI style).

Examples::

    >>> from usseg_models.io.loaders import LoadUltrasoundd
    >>> load = LoadUltrasoundd(["image", "label"], grayscale=True)
    >>> data = load({"image": "echo.dcm", "label": "label.nii.gz"})   # doctest: +SKIP
    >>> data["image"].shape                                            # doctest: +SKIP
    torch.Size([320, 240, 30])
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.config import DtypeLike, KeysCollection
from monai.data import ImageReader, MetaTensor
from monai.data.image_reader import _stack_images
from monai.transforms import EnsureChannelFirst, MapTransform, Transform
from monai.utils import ensure_tuple

from usseg_models.errors import UltrasoundIOError
from usseg_models.io.formats import FORMATS, load_image, sniff_format, suffixes_of

__all__ = [
    "RegistryReader",
    "UltrasoundImageReader",
    "UltrasoundVideoReader",
    "LoadUltrasound",
    "LoadUltrasoundd",
    "LoadUltrasoundD",
    "LoadUltrasoundDict",
]

logger = logging.getLogger(__name__)


def _stack_pairs(img) -> tuple[np.ndarray, dict]:
    """``(array, meta)`` pair(s) from a reader's ``read`` → arrays stacked as channels, first file's metadata."""
    items = [img] if isinstance(img, tuple) else list(img)
    arrays = [a for a, _ in items]
    if any(a.shape != arrays[0].shape for a in arrays):
        raise UltrasoundIOError(f"cannot stack files of shapes {[a.shape for a in arrays]}")
    meta = dict(items[0][1])
    return _stack_images(arrays, meta), meta


class RegistryReader(ImageReader):
    """MONAI ``ImageReader`` over the format registry (:data:`usseg_models.io.formats.FORMATS`), for some formats.

    ``read`` sniffs each file once, refuses a format outside :attr:`formats` (``None`` = every format) and reads
    it with the registered reader (validated first); ``get_data`` stacks several files as channels (MONAI
    convention) and keeps the first file's metadata.

    Note:
        ``LoadImage(reader=...)`` falls back to MONAI's other (native) readers when a reader raises, so an invalid
        file could still reach a native decoder. For untrusted files use :class:`LoadUltrasound`, which raises
        :class:`~usseg_models.errors.UltrasoundIOError` instead.

    Args:
        grayscale: convert colour to grey by BT.601 luma.
    """

    formats: tuple[str, ...] | None = None

    def __init__(self, grayscale: bool = False) -> None:
        super().__init__()
        if not isinstance(grayscale, bool):
            raise ValueError(f"grayscale must be a bool, got {grayscale!r}.")
        self.grayscale = grayscale

    def _suffixes(self) -> tuple[str, ...]:
        return suffixes_of(names=tuple(FORMATS) if self.formats is None else self.formats)

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        """True for names ending in a suffix of one of :attr:`formats` (any format: DICOM may have no suffix)."""
        ok = self._suffixes()
        any_format = self.formats is None
        return all(str(f).lower().endswith(ok) or (any_format and Path(f).suffix == "") for f in ensure_tuple(filename))

    def _read_one(self, path: str | os.PathLike) -> tuple[np.ndarray, dict]:
        fmt = sniff_format(path)
        if self.formats is not None and fmt not in self.formats:
            raise UltrasoundIOError(f"{os.fspath(path)}: a {fmt} file, not {' or '.join(self.formats)}")
        return FORMATS[fmt].read(os.fspath(path), self.grayscale)

    def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs) -> Sequence[Any] | Any:
        """Validate and load the file(s); returns ``(array, meta)`` pairs."""
        loaded = [self._read_one(f) for f in ensure_tuple(data)]
        return loaded if len(loaded) > 1 else loaded[0]

    def get_data(self, img) -> tuple[np.ndarray, dict]:
        """Return the array (several files stacked as channels) and the first file's metadata."""
        return _stack_pairs(img)


class UltrasoundImageReader(RegistryReader):
    """MONAI image reader for every format this project reads (:func:`usseg_models.io.load_image`).

    Examples::

        >>> from monai.transforms import LoadImage
        >>> LoadImage(reader=UltrasoundImageReader())("frame.png").shape   # doctest: +SKIP
        torch.Size([640, 480, 3])
    """


class UltrasoundVideoReader(RegistryReader):
    """MONAI image reader for MP4/MOV/AVI cines (:mod:`usseg_models.io.video`: validated container, PyAV decoding,
    ``(X, Y, T[, 3])`` frames, ``frame_time_ms`` from the container, spacing 1 with a warning, a frame limit).

    Examples::

        >>> from monai.transforms import LoadImage
        >>> LoadImage(reader=UltrasoundVideoReader(), image_only=True)("lung.mp4").shape   # doctest: +SKIP
        torch.Size([350, 350, 100])
    """

    formats = ("video",)


class LoadUltrasound(Transform):
    """Load a file with :func:`load_image` into a :class:`~monai.data.MetaTensor` (array transform).

    Unlike MONAI's ``LoadImage`` there is no fallback to other (native) readers: a bad file raises
    :class:`~usseg_models.errors.UltrasoundIOError` and never reaches ITK.

    Args:
        grayscale: convert colour to grey by BT.601 luma.
        image_only: return only the MetaTensor; otherwise ``(tensor, meta)``.
        ensure_channel_first: move/add the channel axis first (``EnsureChannelFirst``).
        dtype: output dtype (values are not rescaled); ``None`` keeps the stored dtype.
        fill_none: value that replaces ``None`` metadata (``num_frames``, ``frame_time_ms``, DICOM fields of a PNG)
            in the tensor's meta, e.g. ``"none"`` (MONAI's ``TraceKeys.NONE``): PyTorch's collate refuses ``None``,
            so set it when batching through a ``DataLoader``. Default ``None`` keeps ``docs/DESIGN.md`` values.

    Examples::

        >>> img = LoadUltrasound(grayscale=True, ensure_channel_first=True)("echo.dcm")   # doctest: +SKIP
        >>> img.shape, img.meta["frame_time_ms"]                                          # doctest: +SKIP
        (torch.Size([1, 320, 240, 30]), 33.333)
    """

    def __init__(
        self,
        grayscale: bool = False,
        image_only: bool = True,
        ensure_channel_first: bool = False,
        dtype: DtypeLike | None = np.float32,
        fill_none: Any = None,
    ) -> None:
        if not isinstance(grayscale, bool):
            raise ValueError(f"grayscale must be a bool, got {grayscale!r}.")
        self.grayscale = grayscale
        self.image_only = image_only
        self.ensure_channel_first = ensure_channel_first
        self.dtype = dtype
        self.fill_none = fill_none

    def __call__(self, filename: str | os.PathLike):
        arr, meta = load_image(filename, grayscale=self.grayscale)
        if self.dtype is not None:
            arr = arr.astype(self.dtype, copy=False)
        elif arr.dtype == np.uint16:
            arr = arr.astype(np.int32)  # torch has no general uint16 arithmetic; values unchanged
        if self.fill_none is not None:
            meta = {k: self.fill_none if v is None else v for k, v in meta.items()}
        img = MetaTensor(arr, meta=meta)  # the affine comes from meta["affine"]
        if self.ensure_channel_first:
            img = EnsureChannelFirst()(img)
        return img if self.image_only else (img, img.meta)


class LoadUltrasoundd(MapTransform):
    """Dictionary version of :class:`LoadUltrasound`.

    Args:
        keys: keys holding file names.
        grayscale: convert colour to grey by BT.601 luma.
        ensure_channel_first: move/add the channel axis first.
        dtype: output dtype; ``None`` keeps the stored dtype.
        fill_none: replacement for ``None`` metadata values (see :class:`LoadUltrasound`).
        meta_key_postfix: with ``image_only=False`` the metadata also goes to ``data[f"{key}_{postfix}"]``.
        image_only: only store the MetaTensor.
        allow_missing_keys: skip absent keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        grayscale: bool = False,
        ensure_channel_first: bool = False,
        dtype: DtypeLike | None = np.float32,
        fill_none: Any = None,
        meta_key_postfix: str = "meta_dict",
        image_only: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self._loader = LoadUltrasound(
            grayscale, image_only=False, ensure_channel_first=ensure_channel_first, dtype=dtype, fill_none=fill_none
        )
        self.meta_key_postfix = meta_key_postfix
        self.image_only = image_only

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img, meta = self._loader(d[key])
            d[key] = img
            if not self.image_only:
                d[f"{key}_{self.meta_key_postfix}"] = meta
        return d


LoadUltrasoundD = LoadUltrasoundDict = LoadUltrasoundd
