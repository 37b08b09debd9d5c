"""Multiplicative Gamma speckle, the noise model of DSANet's robustness experiment (paper Table II).

``I_noisy = clip(I * n, 0, 1)`` with ``n ~ Gamma(shape=L, rate=L)`` drawn independently for every pixel of every
frame, so ``E[n] = 1`` and ``Var[n] = 1 / L`` (``L`` = number of looks; the paper uses ``L = 25`` "mild" and
``L = 20`` "heavy"). Intensities must already be on ``[0, 1]`` (before ImageNet normalisation). Channels share one
noise field by default (a grey image replicated to RGB stays grey).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform

from usseg_models.transforms.errors import PreprocessingError

__all__ = ["RandSpeckleNoise", "RandSpeckleNoised", "RandSpeckleNoiseD", "RandSpeckleNoiseDict"]


class RandSpeckleNoise(RandomizableTransform):
    """Multiply a ``[0, 1]`` image by Gamma(L, rate L) speckle and clip to ``[0, 1]``.

    Args:
        L: number of looks, ``> 0``; noise variance is ``1 / L``.
        prob: probability of applying the noise to a call.
        channel_dim: axis whose entries share one noise field (``None``: every element independent). Default
            ``0`` (channel-first ``(C, X, Y[, T])``); use ``1`` for frame-first clips ``(T, C, X, Y)`` so each
            frame still gets its own field.

    Shapes:
        any shape -> the same shape and type (numpy or torch, float dtype kept).

    Raises:
        PreprocessingError: an integer input (not yet on ``[0, 1]``).

    Examples::

        >>> noise = RandSpeckleNoise(L=25, prob=1.0).set_random_state(0)
        >>> noise(torch.full((1, 8, 8), 0.5)).shape
        torch.Size([1, 8, 8])
    """

    backend = [torch.Tensor, np.ndarray]

    def __init__(self, L: float = 25.0, prob: float = 1.0, channel_dim: int | None = 0) -> None:
        if not float(L) > 0:
            raise ValueError(f"the number of looks L must be > 0, got {L}")
        RandomizableTransform.__init__(self, prob)
        self.L = float(L)
        self.channel_dim = channel_dim
        self._noise: np.ndarray | None = None

    def _noise_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if self.channel_dim is None or len(shape) == 0:
            return shape
        out = list(shape)
        out[self.channel_dim % len(shape)] = 1
        return tuple(out)

    def randomize(self, data_shape: tuple[int, ...]) -> None:
        """Decide whether to apply and draw the noise field ``n`` (shape broadcastable to ``data_shape``)."""
        super().randomize(None)
        if not self._do_transform:
            self._noise = None
            return
        self._noise = self.R.gamma(shape=self.L, scale=1.0 / self.L, size=self._noise_shape(tuple(data_shape)))

    def __call__(self, img: Any, randomize: bool = True) -> Any:
        floating = img.is_floating_point() if isinstance(img, torch.Tensor) else np.issubdtype(img.dtype, np.floating)
        if not floating:
            raise PreprocessingError(
                f"speckle needs float intensities on [0, 1], got dtype {img.dtype}: scale the image first "
                "(usseg_models.transforms.intensity.ScaleToUnit)"
            )
        if randomize:
            self.randomize(tuple(img.shape))
        if not self._do_transform or self._noise is None:
            return img
        if isinstance(img, torch.Tensor):
            noise = torch.as_tensor(self._noise, dtype=img.dtype, device=img.device)
            return (img * noise).clamp_(0.0, 1.0)
        arr = np.asarray(img)
        return np.clip(arr * self._noise.astype(arr.dtype), 0.0, 1.0)


class RandSpeckleNoised(RandomizableTransform, MapTransform):
    """Dictionary :class:`RandSpeckleNoise`; one apply/skip decision per call, a fresh field per key.

    Args:
        keys: image keys (never labels).
        L: number of looks, ``> 0``.
        prob: probability of applying the noise.
        channel_dim: axis sharing one noise field (see :class:`RandSpeckleNoise`).
        allow_missing_keys: do not raise when a key is absent.
    """

    backend = RandSpeckleNoise.backend

    def __init__(
        self,
        keys: KeysCollection,
        L: float = 25.0,
        prob: float = 1.0,
        channel_dim: int | None = 0,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.speckle = RandSpeckleNoise(L=L, prob=1.0, channel_dim=channel_dim)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.speckle.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            d[key] = self.speckle(d[key], randomize=True)
        return d


RandSpeckleNoiseD = RandSpeckleNoiseDict = RandSpeckleNoised
