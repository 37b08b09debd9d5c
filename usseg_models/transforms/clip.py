"""Clip windowing: the frames DSANet sees for one target frame.

DSANet segments frame ``t`` from the window ``[t, t-1, ..., t-(T-1)]`` (index 0 = target, ``T = 3`` in the
paper). Frames before the start of a cine do not exist; the DSANet authors' loader (inherited from ASTR)
then takes the *following* frame at the same distance, position by position:

    position ``i`` of the window holds frame ``t - i`` when ``t - i >= 0``, else frame ``t + i``;
    a frame index past the end of the cine becomes the last frame ``N - 1``.

So ``t = 0`` gives ``[0, 1, 2]`` and ``t = 1`` gives ``[1, 0, 3]``. A cine shorter than the window repeats its
last available frame (``N = 1`` gives ``[0, 0, 0]``; ``N = 2, t = 0`` gives ``[0, 1, 1]``).
:func:`window_indices` is the single definition used by training, clip inference and the streaming predictor.

Layouts: the array transforms take a channel-first cine ``(C, X, Y, T)`` (MONAI layout after
``EnsureChannelFirst`` on the reader's ``(X, Y, T[, 3])``) or a frame-first cine ``(T, C, X, Y)`` (set
``time_dim=0``) and return the window frame-first, ``(T_win, C, X, Y)``, as the network expects.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable, Transform

from usseg_models.transforms.errors import PreprocessingError

__all__ = [
    "window_indices",
    "ClipWindow",
    "ClipWindowd",
    "ClipWindowD",
    "ClipWindowDict",
    "RandClipTargetd",
    "RandClipTargetD",
    "RandClipTargetDict",
]


def window_indices(num_frames: int, t: int, window: int = 3) -> list[int]:
    """Frame indices of the window for target frame ``t``; index 0 of the result is ``t`` itself.

    Args:
        num_frames: number of frames ``N`` in the cine (>= 1).
        t: target frame, ``0 <= t < N``.
        window: window length ``T`` (>= 1); DSANet uses 3.

    Returns:
        ``T`` frame indices ``[t, t-1, ..., t-(T-1)]`` with the start-of-clip and short-clip rules of the module
        docstring.

    Raises:
        ValueError: when ``window < 1``.
        PreprocessingError: when ``num_frames < 1`` or ``t`` is outside ``[0, num_frames)`` (a ``ValueError`` too).

    Examples::

        >>> window_indices(10, 5)
        [5, 4, 3]
        >>> window_indices(10, 0), window_indices(10, 1)
        ([0, 1, 2], [1, 0, 3])
        >>> window_indices(2, 0)
        [0, 1, 1]
    """
    num_frames, t, window = int(num_frames), int(t), int(window)
    if num_frames < 1:
        raise PreprocessingError(f"a cine needs at least one frame, got num_frames={num_frames}")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if not 0 <= t < num_frames:
        raise PreprocessingError(f"target frame t={t} is outside the cine's {num_frames} frames")
    out = []
    for i in range(window):
        idx = t - i if t - i >= 0 else t + i
        out.append(min(idx, num_frames - 1))
    return out


def _take_window(img: Any, t: int, window: int, time_dim: int) -> Any:
    """Gather the window for target ``t`` from ``img`` and move it to the front: ``(T_win, ...)``."""
    ndim = img.ndim
    if ndim < 2:
        raise PreprocessingError(f"a cine needs at least 2 dimensions, got shape {tuple(img.shape)}")
    tdim = time_dim % ndim
    idx = window_indices(img.shape[tdim], t, window)
    if isinstance(img, torch.Tensor):
        out = torch.index_select(img, tdim, torch.as_tensor(idx, device=img.device))
        return torch.movedim(out, tdim, 0)
    out = np.take(np.asarray(img), idx, axis=tdim)
    return np.moveaxis(out, tdim, 0)


class ClipWindow(Transform):
    """Cut the DSANet window for one target frame out of a cine.

    Args:
        window: window length ``T`` (default 3).
        time_dim: axis of the input that indexes frames; ``-1`` for MONAI's channel-first ``(C, X, Y, T)``,
            ``0`` for a frame-first ``(T, C, X, Y)`` cine.

    Shapes:
        ``(C, X, Y, T)`` (``time_dim=-1``) or ``(T, C, X, Y)`` (``time_dim=0``) -> ``(T_win, C, X, Y)``.

    Examples::

        >>> cine = torch.zeros(1, 64, 48, 10)
        >>> ClipWindow()(cine, t=4).shape
        torch.Size([3, 1, 64, 48])
    """

    backend = [torch.Tensor, np.ndarray]

    def __init__(self, window: int = 3, time_dim: int = -1) -> None:
        if int(window) < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = int(window)
        self.time_dim = int(time_dim)

    def __call__(self, img: Any, t: int) -> Any:
        return _take_window(img, int(t), self.window, self.time_dim)


class ClipWindowd(MapTransform):
    """Dictionary :class:`ClipWindow`: the same window (read from ``data[index_key]``) for every key.

    Args:
        keys: keys of the cines to window (image and label together so they stay aligned).
        index_key: key holding the target frame ``t`` (an int or a 0-d array/tensor).
        window: window length ``T``.
        time_dim: frame axis of the inputs (see :class:`ClipWindow`).
        require_index: when ``False``, data without ``index_key`` pass through unchanged (all frames kept).
        allow_missing_keys: do not raise when a key is absent.

    Raises:
        KeyError: when ``index_key`` is missing from the data and ``require_index`` is set.
    """

    backend = ClipWindow.backend

    def __init__(
        self,
        keys: KeysCollection,
        index_key: str = "frame_index",
        window: int = 3,
        time_dim: int = -1,
        require_index: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.index_key = index_key
        self.require_index = bool(require_index)
        self.windower = ClipWindow(window=window, time_dim=time_dim)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.index_key not in d:
            if not self.require_index:
                return d
            raise KeyError(f"ClipWindowd needs the target frame under {self.index_key!r}; keys are {list(d)}")
        t = int(d[self.index_key])
        for key in self.key_iterator(d):
            d[key] = self.windower(d[key], t)
        return d


class RandClipTargetd(Randomizable, MapTransform):
    """Pick a random target frame ``t`` (uniform over the cine) and store it under ``index_key``.

    Put it before :class:`ClipWindowd` to train on random windows of whole cines. The number of frames is read
    from the first present key's ``time_dim`` axis. Honours ``set_random_state``.

    Args:
        keys: cine keys (only the first present one is read).
        index_key: where to store ``t``.
        time_dim: frame axis of the cine.
        allow_missing_keys: do not raise when a key is absent.
    """

    def __init__(
        self,
        keys: KeysCollection,
        index_key: str = "frame_index",
        time_dim: int = -1,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.index_key = index_key
        self.time_dim = int(time_dim)
        self._t = 0

    def randomize(self, num_frames: int) -> None:
        self._t = int(self.R.randint(0, num_frames))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        first = next(iter(self.key_iterator(d)), None)
        if first is None:
            return d
        self.randomize(d[first].shape[self.time_dim])
        d[self.index_key] = self._t
        return d


ClipWindowD = ClipWindowDict = ClipWindowd
RandClipTargetD = RandClipTargetDict = RandClipTargetd
