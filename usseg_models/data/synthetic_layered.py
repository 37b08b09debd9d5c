"""A synthetic echo-like cine with three layered structures (the CAMUS label convention), deterministic by seed.

The scene is a left-ventricle-like chamber seen in an apical view: a dark **cavity** (label 1) inside a bright
**myocardium** ring (label 2), and an adjacent dark **atrium** blob (label 3) below the ring, on a mid-grey
tissue background (label 0). Over the frames the cavity contracts and relaxes (one sinusoidal cardiac cycle per
``period`` frames) with the ring following it, while the atrium fills in anti-phase, and the whole heart drifts a
little. Intensities carry multiplicative Rayleigh-like speckle smoothed to a few pixels, so the structures differ by
brightness, texture and position, not by one grey value — a small network has something to learn, and a trivial
predictor (all background, or the majority class everywhere) scores clearly lower per structure.

The simpler :func:`usseg_models.data.synthetic.simulate_cine` (full B-mode chain, one target) stays the source of
one-structure data; this module is for multi-structure tests and demos.

Examples::

    >>> cine = simulate_layered_cine(num_frames=6, size=64, seed=0)
    >>> cine.image.shape, cine.label.shape, sorted(set(cine.label.ravel().tolist()))
    ((64, 64, 6), (64, 64, 6), [0, 1, 2, 3])
    >>> cine.labels.describe()
    '1:LV,2:MYO,3:LA'
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from usseg_models.labels import LabelSet

__all__ = ["LAYERED_LABELS", "LayeredCine", "simulate_layered_cine", "layered_mask"]

LAYERED_LABELS = LabelSet((1, 2, 3), ("LV", "MYO", "LA"))
"""Label values of the layered scene: 1 cavity, 2 myocardium ring, 3 atrium (as CAMUS)."""

# mean echo level (0..1) of background tissue, cavity, myocardium, atrium
_LEVELS = np.array([0.45, 0.08, 0.85, 0.22], np.float32)


@dataclass
class LayeredCine:
    """A layered cine: ``image`` uint8 ``(X, Y, T)``, ``label`` uint8 ``(X, Y, T)`` with values 0..3, its
    ``labels`` (:data:`LAYERED_LABELS`) and per-frame cavity semi-axes ``cavity_axes`` ``(T, 2)`` in pixels."""

    image: np.ndarray
    label: np.ndarray
    labels: LabelSet
    cavity_axes: np.ndarray


def _ellipse(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    return ((xx - cx) / max(ax, 1e-6)) ** 2 + ((yy - cy) / max(ay, 1e-6)) ** 2 <= 1.0


def layered_mask(size: int, centre: tuple[float, float], cavity: tuple[float, float], wall: float,
                 atrium: tuple[float, float]) -> np.ndarray:
    """One frame's label ``(X, Y)`` uint8: atrium (3) painted first, then the ring (2), then the cavity (1).

    Args:
        size: square frame size.
        centre: cavity centre ``(x, y)`` in pixels (x = column, y = row; rows grow with depth).
        cavity: cavity semi-axes ``(ax, ay)``.
        wall: myocardium thickness in pixels.
        atrium: atrium semi-axes; it sits below the ring (deeper), touching it.
    """
    xx, yy = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32), indexing="ij")
    cx, cy = centre
    ax, ay = cavity
    out = np.zeros((size, size), np.uint8)
    out[_ellipse(xx, yy, cx, cy + ay + wall + atrium[1] * 0.8, atrium[0], atrium[1])] = 3
    out[_ellipse(xx, yy, cx, cy, ax + wall, ay + wall)] = 2
    out[_ellipse(xx, yy, cx, cy, ax, ay)] = 1
    return out


def _speckle(rng: np.random.Generator, shape: tuple[int, ...], smooth: int = 2) -> np.ndarray:
    """Unit-mean Rayleigh-like speckle, box-smoothed over ``smooth`` pixels (correlated grains)."""
    field = np.abs(rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.float32)
    for axis in (0, 1):
        acc = field.copy()
        for s in range(1, smooth + 1):
            acc += np.roll(field, s, axis=axis) + np.roll(field, -s, axis=axis)
        field = acc / (2 * smooth + 1)
    return field / field.mean()


def simulate_layered_cine(num_frames: int = 16, size: int = 64, seed: int = 0, period: float | None = None,
                          noise: float = 0.35) -> LayeredCine:
    """Simulate a layered 3-structure cine (module docstring).

    Args:
        num_frames: frames ``T`` (>= 1).
        size: square frame size in pixels (>= 32).
        seed: everything (placement, motion phase, speckle) follows from it.
        period: frames per cardiac cycle (default: the whole cine, at least 8).
        noise: strength of the speckle (0 = flat grey levels).

    Raises:
        ValueError: ``num_frames < 1`` or ``size < 32``.
    """
    if int(num_frames) < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if int(size) < 32:
        raise ValueError(f"size must be >= 32, got {size}")
    num_frames, size = int(num_frames), int(size)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 20]))
    period = float(period or max(8, num_frames))
    s = size / 64.0
    cx0, cy0 = size * rng.uniform(0.42, 0.58), size * rng.uniform(0.30, 0.38)
    ax0, ay0 = s * rng.uniform(8.0, 10.0), s * rng.uniform(11.0, 13.0)
    wall = s * rng.uniform(3.5, 4.5)
    at0 = (s * rng.uniform(8.0, 10.0), s * rng.uniform(5.5, 7.0))
    phase = rng.uniform(0, 2 * np.pi)
    drift = rng.uniform(-1.0, 1.0, size=2) * s
    image = np.empty((size, size, num_frames), np.uint8)
    label = np.empty((size, size, num_frames), np.uint8)
    axes = np.empty((num_frames, 2), np.float32)
    for t in range(num_frames):
        beat = np.sin(2 * np.pi * t / period + phase)  # +1 end-diastole-like, -1 end-systole-like
        ax, ay = ax0 * (1 + 0.18 * beat), ay0 * (1 + 0.12 * beat)
        atrium = (at0[0] * (1 - 0.15 * beat), at0[1] * (1 - 0.2 * beat))
        shift = drift * np.sin(2 * np.pi * t / period)
        lab = layered_mask(size, (cx0 + shift[0], cy0 + shift[1]), (ax, ay), wall * (1 - 0.1 * beat), atrium)
        levels = _LEVELS[lab]
        grains = _speckle(rng, (size, size))
        frame = levels * (1 - noise + noise * grains)
        image[..., t] = np.clip(frame * 255, 0, 255).round().astype(np.uint8)
        label[..., t] = lab
        axes[t] = (ax, ay)
    return LayeredCine(image=image, label=label, labels=LAYERED_LABELS, cavity_axes=axes)
