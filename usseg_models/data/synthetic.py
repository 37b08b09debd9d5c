"""Synthetic B-mode ultrasound cines and images with programmed ground truth, deterministic by seed.

This module holds the entry points (:func:`simulate_cine`, :func:`simulate_image`), the default probes and
acoustics, and the returned :class:`SyntheticCine` with the programmed truth of each target. The simulator follows
the textbook B-mode chain (e.g. Szabo, *Diagnostic Ultrasound Imaging*, ch. 8-10): echogenicity, scatterers
(speckle), point-spread function, attenuation and gain, envelope and log compression -- described step by step,
with the acoustic settings :class:`UltrasoundConfig`, in :mod:`usseg_models.data.synthetic_bmode` -- then scan
conversion by :class:`~usseg_models.data.synthetic_geometry.ScanConverter`. The moving targets and their motion
are in :mod:`usseg_models.data.synthetic_targets`.

Array layout follows ``docs/DESIGN.md``: images and labels are ``(X, Y, T)`` (X = columns, Y = rows, T = frame).

Examples::

    >>> cine = simulate_cine(num_frames=8, size=64, seed=1)
    >>> cine.image.shape, cine.image.dtype, cine.label.shape
    ((64, 64, 8), dtype('uint8'), (64, 64, 8))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from usseg_models.data.synthetic_bmode import (
    RAYLEIGH_SNR,
    UltrasoundConfig,
    _beam_grid,
    _pulse_echo_envelope,
    _Texture,
    _weighted_scatterers,
    log_compress,
)
from usseg_models.data.synthetic_geometry import ProbeGeometry, ScanConverter
from usseg_models.data.synthetic_targets import Scene, random_scene

__all__ = [
    "RAYLEIGH_SNR",
    "UltrasoundConfig",
    "TargetTruth",
    "SyntheticCine",
    "default_geometry",
    "default_config",
    "simulate_cine",
    "simulate_image",
    "log_compress",
]


@dataclass
class TargetTruth:
    """Programmed truth of one target, one row per frame.

    ``centre_px`` is ``(x, y)`` = (column, row) in pixels (the label's X and Y axes), ``centre_mm`` is the
    Cartesian ``(x, z)`` in the probe frame, ``semi_axes_mm`` the ellipse's ``(a, b)``, ``area_px`` the exact
    ellipse area in pixels (``pi a b / pixel_mm^2``).
    """

    kind: str
    centre_mm: np.ndarray
    centre_px: np.ndarray
    semi_axes_mm: np.ndarray
    rotation_rad: np.ndarray
    area_mm2: np.ndarray
    area_px: np.ndarray

    def to_dict(self) -> dict:
        out = {"type": self.kind}
        for key, value in asdict(self).items():
            if key != "kind":
                out[key] = np.round(np.asarray(value, dtype=float), 4).tolist()
        return out


@dataclass
class SyntheticCine:
    """A simulated cine (a 2D image is a one-frame cine) with its ground truth.

    Attributes:
        image: ``(X, Y, T)`` uint8 B-mode frames, 0 outside the fan.
        label: ``(X, Y, T)`` uint8 ground truth, 1 inside a target's labelled region within the fan, else 0.
        fan_mask: ``(X, Y)`` bool, the imaged region.
        pixel_mm: isotropic pixel spacing (mm) along X and Y.
        frame_time_ms: time between frames.
        truth: programmed truth per target.
        geometry, config, scene, seed: everything needed to reproduce the cine.
        envelope: ``(T, M, L)`` float32 envelope on the beam grid before log compression (``keep_envelope``).
    """

    image: np.ndarray = field(repr=False)
    label: np.ndarray = field(repr=False)
    fan_mask: np.ndarray = field(repr=False)
    pixel_mm: float
    frame_time_ms: float
    truth: list[TargetTruth]
    geometry: ProbeGeometry
    config: UltrasoundConfig
    scene: Scene
    seed: int | None
    envelope: np.ndarray | None = field(default=None, repr=False)

    @property
    def num_frames(self) -> int:
        return int(self.image.shape[2])

    def frames_tyx(self) -> np.ndarray:
        """Frames in DICOM pixel order ``(T, rows, cols)``."""
        return np.ascontiguousarray(self.image.transpose(2, 1, 0))

    def describe(self) -> dict:
        """JSON-ready description: geometry, acoustic settings, programmed motion and per-frame truth."""
        return {
            "seed": self.seed,
            "frames": self.num_frames,
            "size": list(self.image.shape[:2]),
            "pixel_mm": round(self.pixel_mm, 6),
            "frame_time_ms": round(self.frame_time_ms, 6),
            "geometry": asdict(self.geometry),
            "ultrasound": asdict(self.config),
            "scene": self.scene.to_dict(),
            "truth": [t.to_dict() for t in self.truth],
        }


def default_geometry(kind: str = "sector") -> ProbeGeometry:
    """Default probes: a 65 degree convex sector 120 mm deep (cardiac/abdominal), or a 40 x 50 mm linear array."""
    if kind == "sector":
        return ProbeGeometry("sector", depth_mm=120.0, sector_angle_deg=65.0, apex_radius_mm=20.0)
    if kind == "linear":
        return ProbeGeometry("linear", depth_mm=50.0, width_mm=40.0)
    raise ValueError(f"geometry must be 'sector' or 'linear', got {kind!r}")


def default_config(kind: str = "sector", **overrides) -> UltrasoundConfig:
    """Default acoustics: 2.5 MHz for the sector probe, 5 MHz for the linear one; ``overrides`` replace fields."""
    base = {"center_frequency_mhz": 2.5} if kind == "sector" else {"center_frequency_mhz": 5.0}
    base.update(overrides)
    return UltrasoundConfig(**base)


def _seed_sequence(seed) -> np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, (int, np.integer)) and seed >= 0:
        return np.random.SeedSequence(int(seed))
    raise ValueError(f"seed must be a non-negative integer or a numpy SeedSequence, got {seed!r}")


def simulate_cine(
    num_frames: int = 24,
    size: int = 128,
    geometry: ProbeGeometry | str = "sector",
    scene: Scene | None = None,
    targets: tuple[str, ...] = ("chamber",),
    config: UltrasoundConfig | None = None,
    seed: int | np.random.SeedSequence = 0,
    keep_envelope: bool = False,
) -> SyntheticCine:
    """Simulate a B-mode cine with moving targets and its per-frame ground truth.

    Args:
        num_frames: number of frames ``T`` (>= 1).
        size: output frames are ``size x size`` pixels (>= 16).
        geometry: a :class:`ProbeGeometry` or ``"sector"`` / ``"linear"`` for :func:`default_geometry`.
        scene: targets and tissue motion; default: :func:`random_scene` with ``targets`` kinds.
        targets: kinds for the random scene (``"chamber"``, ``"lesion"``; empty = uniform tissue).
        config: acoustic settings; default :func:`default_config` for the geometry kind.
        seed: seed of every random draw (scene, texture, scatterers, noise).
        keep_envelope: also return the pre-log beam-grid envelope ``(T, M, L)``.

    Returns:
        :class:`SyntheticCine` with ``image`` and ``label`` shaped ``(size, size, num_frames)`` (X, Y, T).

    Raises:
        ValueError: for a bad size, frame count, seed, geometry or target kind.
    """
    if int(num_frames) < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if int(size) < 16:
        raise ValueError(f"size must be >= 16 pixels, got {size}")
    num_frames, size = int(num_frames), int(size)
    if isinstance(geometry, str):
        geometry = default_geometry(geometry)
    config = config or default_config(geometry.kind)
    seq = _seed_sequence(seed)
    scene_rng, texture_rng, speckle_rng = (np.random.default_rng(s) for s in seq.spawn(3))
    if scene is None:
        scene = random_scene(scene_rng, geometry, tuple(targets), num_frames, config.frame_rate_hz)

    sc, kernel_z, kernel_x = _beam_grid(geometry, config, size)
    motion = scene.tissue_motion
    texture = None
    if config.texture_db > 0:
        texture = _Texture(texture_rng, geometry, config.texture_corr_mm, pad_mm=abs(motion.ux) + abs(motion.uz) + 1)
    amplitude = _weighted_scatterers(scene, sc, config, texture, speckle_rng, num_frames)
    envelope = _pulse_echo_envelope(amplitude, sc, config, kernel_z, kernel_x, speckle_rng)
    grey = log_compress(envelope, config)
    frames = np.clip(np.rint(sc.convert(grey)), 0, 255).astype(np.uint8)  # (T, rows, cols)

    px, pz = sc.pixel_centres_mm()
    labels = np.zeros_like(frames)
    for t in range(num_frames):
        labels[t] = scene.label(px, pz, float(t)) & sc.fan_mask
    truth = _truth(scene, sc, num_frames)
    return SyntheticCine(
        image=np.ascontiguousarray(frames.transpose(2, 1, 0)),
        label=np.ascontiguousarray(labels.transpose(2, 1, 0)),
        fan_mask=np.ascontiguousarray(sc.fan_mask.T),
        pixel_mm=float(sc.pixel_mm),
        frame_time_ms=1000.0 / config.frame_rate_hz,
        truth=truth,
        geometry=geometry,
        config=config,
        scene=scene,
        seed=int(seed) if not isinstance(seed, np.random.SeedSequence) else None,
        envelope=envelope.astype(np.float32) if keep_envelope else None,
    )


def simulate_image(
    size: int = 128,
    geometry: ProbeGeometry | str = "sector",
    scene: Scene | None = None,
    targets: tuple[str, ...] = ("lesion",),
    config: UltrasoundConfig | None = None,
    seed: int | np.random.SeedSequence = 0,
    keep_envelope: bool = False,
) -> SyntheticCine:
    """Simulate one B-mode image: a one-frame :func:`simulate_cine` (``image``/``label`` shaped ``(X, Y, 1)``)."""
    return simulate_cine(1, size, geometry, scene, targets, config, seed, keep_envelope)


def _truth(scene: Scene, sc: ScanConverter, num_frames: int) -> list[TargetTruth]:
    out = []
    for i, target in enumerate(scene.targets):
        states = [scene.state(i, float(t)) for t in range(num_frames)]
        centre = np.array([[s.cx, s.cz] for s in states])
        col, row = sc.mm_to_pixel(centre[:, 0], centre[:, 1])
        area = np.array([s.area_mm2 for s in states])
        out.append(
            TargetTruth(
                kind=target.kind,
                centre_mm=centre,
                centre_px=np.stack([col, row], axis=1),
                semi_axes_mm=np.array([[s.a, s.b] for s in states]),
                rotation_rad=np.array([s.psi for s in states]),
                area_mm2=area,
                area_px=area / sc.pixel_mm**2,
            )
        )
    return out
