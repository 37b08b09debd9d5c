"""Moving targets of the synthetic B-mode simulator and their programmed motion (the ground truth).

A target is an ellipse in the Cartesian probe frame (mm, ``x`` lateral, ``z`` depth; see
:mod:`usseg_models.data.synthetic_geometry`) whose centre ``(cx, cz)``, semi-axes ``(a, b)`` and rotation
``psi`` are closed-form functions of the frame index ``t`` (a float; frame 0 is the first frame):

**Lesion** (hypoechoic, e.g. a breast or liver lesion pushed by the probe), with ``w = 2 pi / period``::

    cx(t) = cx0 + dx sin(w t + phase)          a(t) = a0 (1 + eps sin(w t + phase))
    cz(t) = cz0 + dz cos(w t + phase)          b(t) = b0 (1 - eps sin(w t + phase))
    psi(t) = psi0 + dpsi sin(w t + phase)

**Chamber** (cardiac-like: anechoic blood pool inside a bright wall), driven by the contraction
``s(t) = (1 - cos(2 pi t / period + phase)) / 2`` in ``[0, 1]`` (0 = end-diastole, 1 = end-systole)::

    a(t) = a0 (1 - ka s(t))     b(t) = b0 (1 - kb s(t))     psi(t) = psi0
    (cx, cz)(t) = (cx0, cz0) + (dx, dz) s(t)                wall thickness w(t) = wall0 (1 + 0.5 s(t))

**Tissue motion** (breathing / probe drift) moves everything, background texture and speckle included::

    u(t) = (ux, uz) sin(2 pi t / period + phase)

so the programmed centre of a target in frame ``t`` is its own centre plus ``u(t)``. The labelled region is
the lesion interior or the chamber cavity; its area is ``pi a(t) b(t)`` (mm^2) where the ellipse lies inside the
fan (random scenes keep it inside with a margin).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from usseg_models.data.synthetic_geometry import ProbeGeometry

__all__ = ["EllipseState", "Lesion", "Chamber", "TissueMotion", "Scene", "random_scene", "TARGET_KINDS"]

TARGET_KINDS = ("chamber", "lesion")


@dataclass(frozen=True)
class EllipseState:
    """One target's ellipse in one frame: centre (mm), semi-axes along its own axes (mm), rotation (rad)."""

    cx: float
    cz: float
    a: float
    b: float
    psi: float

    @property
    def area_mm2(self) -> float:
        return math.pi * self.a * self.b

    def radius(self, x: np.ndarray, z: np.ndarray, grow_mm: float = 0.0) -> np.ndarray:
        """Normalised elliptic radius of points (``< 1`` inside), for the ellipse grown by ``grow_mm``."""
        c, s = math.cos(self.psi), math.sin(self.psi)
        dx, dz = x - self.cx, z - self.cz
        u, v = c * dx + s * dz, -s * dx + c * dz
        return np.sqrt((u / (self.a + grow_mm)) ** 2 + (v / (self.b + grow_mm)) ** 2)

    def inside(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        return self.radius(x, z) < 1.0

    def soft_inside(self, x: np.ndarray, z: np.ndarray, edge_mm: float, grow_mm: float = 0.0) -> np.ndarray:
        """Smooth indicator in ``[0, 1]``: a logistic step of width ``edge_mm`` across the boundary.

        The signed distance to the boundary is approximated along the ray from the centre,
        ``d = |p - c| (1 - 1 / rho)`` with ``rho`` the normalised radius (exact for a circle).
        """
        rho = np.maximum(self.radius(x, z, grow_mm), 1e-6)
        dist = np.hypot(x - self.cx, z - self.cz) * (1.0 - 1.0 / rho)
        return 1.0 / (1.0 + np.exp(np.clip(dist / edge_mm, -50, 50)))

    def boundary(self, n: int = 64, grow_mm: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """``n`` points on the (grown) boundary, as Cartesian ``(x, z)`` arrays."""
        phi = np.linspace(0, 2 * math.pi, n, endpoint=False)
        u, v = (self.a + grow_mm) * np.cos(phi), (self.b + grow_mm) * np.sin(phi)
        c, s = math.cos(self.psi), math.sin(self.psi)
        return self.cx + c * u - s * v, self.cz + s * u + c * v


@dataclass(frozen=True)
class TissueMotion:
    """Rigid in-plane tissue displacement ``u(t) = (ux, uz) sin(2 pi t / period + phase)`` (mm)."""

    ux: float = 0.0
    uz: float = 0.0
    period: float = 48.0
    phase: float = 0.0

    def __call__(self, t: float) -> tuple[float, float]:
        s = math.sin(2 * math.pi * t / self.period + self.phase)
        return self.ux * s, self.uz * s


@dataclass(frozen=True)
class Lesion:
    """Hypoechoic elliptical lesion that orbits and squashes periodically (motion in the module docstring).

    Args:
        cx0, cz0: mean centre (mm).
        a0, b0: mean semi-axes (mm).
        psi0: mean rotation (rad).
        dx, dz: orbit amplitudes (mm).
        eps: relative squash-and-stretch of the semi-axes (``0 <= eps < 1``).
        dpsi: rotation amplitude (rad).
        period: motion period in frames (> 0).
        phase: phase at frame 0 (rad).
        contrast_db: echogenicity relative to the surrounding tissue (dB, negative = hypoechoic).
        edge_mm: width of the soft boundary of the echogenicity change.

    Examples::

        >>> lesion = Lesion(cx0=0.0, cz0=60.0, a0=10.0, b0=8.0, dx=3.0, period=12.0)
        >>> st = lesion.state(3.0)  # a quarter period: sin = 1
        >>> round(st.cx, 6), round(st.cz, 6), round(st.area_mm2, 2)
        (3.0, 60.0, 251.33)
    """

    cx0: float
    cz0: float
    a0: float
    b0: float
    psi0: float = 0.0
    dx: float = 0.0
    dz: float = 0.0
    eps: float = 0.0
    dpsi: float = 0.0
    period: float = 24.0
    phase: float = 0.0
    contrast_db: float = -9.0
    edge_mm: float = 0.4
    kind: str = field(default="lesion", init=False)

    def __post_init__(self) -> None:
        _check_common(self)
        if not 0 <= self.eps < 1:
            raise ValueError(f"lesion eps must be in [0, 1), got {self.eps}")

    def state(self, t: float) -> EllipseState:
        p = 2 * math.pi * t / self.period + self.phase
        sp = math.sin(p)
        return EllipseState(
            self.cx0 + self.dx * sp,
            self.cz0 + self.dz * math.cos(p),
            self.a0 * (1 + self.eps * sp),
            self.b0 * (1 - self.eps * sp),
            self.psi0 + self.dpsi * sp,
        )

    def intensity_factor(self, st: EllipseState, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Multiplicative factor on the scatterer intensity (backscatter) at points ``(x, z)``."""
        inside = st.soft_inside(x, z, self.edge_mm)
        return 1.0 + (10 ** (self.contrast_db / 10) - 1.0) * inside

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Chamber:
    """Cardiac-like chamber: anechoic cavity (the label) in a bright wall, contracting once per period.

    Args:
        cx0, cz0: end-diastolic centre (mm).
        a0, b0: end-diastolic cavity semi-axes (mm).
        psi0: rotation (rad).
        ka, kb: fractional shortening of each semi-axis at end-systole (``0 <= k < 1``).
        dx, dz: displacement of the centre at end-systole (mm).
        wall_mm: end-diastolic wall thickness (mm, > 0).
        period: cardiac cycle in frames (> 0); ``frame_rate * 60 / heart_rate``.
        phase: phase at frame 0 (rad; 0 = end-diastole).
        cavity_db: blood echogenicity relative to tissue (dB).
        wall_db: wall echogenicity relative to tissue (dB).
        edge_mm: width of the soft boundaries.
    """

    cx0: float
    cz0: float
    a0: float
    b0: float
    psi0: float = 0.0
    ka: float = 0.25
    kb: float = 0.15
    dx: float = 0.0
    dz: float = 0.0
    wall_mm: float = 6.0
    period: float = 24.0
    phase: float = 0.0
    cavity_db: float = -35.0
    wall_db: float = 8.0
    edge_mm: float = 0.4
    kind: str = field(default="chamber", init=False)

    def __post_init__(self) -> None:
        _check_common(self)
        if not (0 <= self.ka < 1 and 0 <= self.kb < 1):
            raise ValueError(f"chamber ka, kb must be in [0, 1), got {self.ka}, {self.kb}")
        if not self.wall_mm > 0:
            raise ValueError(f"chamber wall_mm must be > 0, got {self.wall_mm}")

    def contraction(self, t: float) -> float:
        """``s(t)`` in ``[0, 1]``: 0 at end-diastole, 1 at end-systole."""
        return (1 - math.cos(2 * math.pi * t / self.period + self.phase)) / 2

    def state(self, t: float) -> EllipseState:
        s = self.contraction(t)
        return EllipseState(
            self.cx0 + self.dx * s, self.cz0 + self.dz * s, self.a0 * (1 - self.ka * s), self.b0 * (1 - self.kb * s),
            self.psi0,
        )

    def wall(self, t: float) -> float:
        return self.wall_mm * (1 + 0.5 * self.contraction(t))

    def intensity_factor(self, st: EllipseState, x: np.ndarray, z: np.ndarray, t: float) -> np.ndarray:
        outer = st.soft_inside(x, z, self.edge_mm, grow_mm=self.wall(t))
        cavity = st.soft_inside(x, z, self.edge_mm)
        wall = 1.0 + (10 ** (self.wall_db / 10) - 1.0) * outer
        return wall + (10 ** (self.cavity_db / 10) - wall) * cavity

    def to_dict(self) -> dict:
        return asdict(self)


def _check_common(target: Lesion | Chamber) -> None:
    if not (target.a0 > 0 and target.b0 > 0):
        raise ValueError(f"{target.kind} semi-axes must be > 0, got a0={target.a0}, b0={target.b0}")
    if not target.period > 0:
        raise ValueError(f"{target.kind} period must be > 0 frames, got {target.period}")
    if not target.edge_mm > 0:
        raise ValueError(f"{target.kind} edge_mm must be > 0, got {target.edge_mm}")


@dataclass(frozen=True)
class Scene:
    """Targets plus the global tissue motion; :meth:`state` gives a target's programmed ellipse in a frame."""

    targets: tuple = ()
    tissue_motion: TissueMotion = field(default_factory=TissueMotion)

    def state(self, index: int, t: float) -> EllipseState:
        st = self.targets[index].state(t)
        ux, uz = self.tissue_motion(t)
        return EllipseState(st.cx + ux, st.cz + uz, st.a, st.b, st.psi)

    def intensity_factor(self, x: np.ndarray, z: np.ndarray, t: float) -> np.ndarray:
        """Product of all targets' backscatter factors at ``(x, z)`` in frame ``t`` (1 where there is none)."""
        factor = np.ones(np.shape(x), dtype=np.float64)
        for i, target in enumerate(self.targets):
            st = self.state(i, t)
            if isinstance(target, Chamber):
                factor *= target.intensity_factor(st, x, z, t)
            else:
                factor *= target.intensity_factor(st, x, z)
        return factor

    def label(self, x: np.ndarray, z: np.ndarray, t: float) -> np.ndarray:
        """Binary ground truth at ``(x, z)``: inside any target's labelled region (lesion / cavity)."""
        out = np.zeros(np.shape(x), dtype=bool)
        for i in range(len(self.targets)):
            out |= self.state(i, t).inside(x, z)
        return out

    def to_dict(self) -> dict:
        return {
            "targets": [
                {"type": t.kind, **{k: v for k, v in t.to_dict().items() if k != "kind"}} for t in self.targets
            ],
            "tissue_motion": asdict(self.tissue_motion),
        }


def random_scene(
    rng: np.random.Generator,
    geometry: ProbeGeometry,
    kinds: tuple[str, ...] = ("chamber",),
    num_frames: int = 24,
    frame_rate: float = 30.0,
    margin_mm: float = 4.0,
    max_tries: int = 200,
) -> Scene:
    """Draw targets of the given kinds with random size, place and motion, kept inside the fan in every frame.

    Sizes scale with the field of view; a chamber's period follows a heart rate drawn in 55-95 bpm at
    ``frame_rate``; a lesion's period is 1-2 times the cine length. Targets do not overlap each other; with ``n``
    targets sizes shrink by ``1 / sqrt(n)``.

    Raises:
        ValueError: for an unknown kind, or when no placement is found in ``max_tries`` draws.

    Examples::

        >>> scene = random_scene(np.random.default_rng(0), ProbeGeometry("sector"), ("chamber", "lesion"))
        >>> [t.kind for t in scene.targets]
        ['chamber', 'lesion']
    """
    for k in kinds:
        if k not in TARGET_KINDS:
            raise ValueError(f"unknown target kind {k!r}; expected one of {TARGET_KINDS}")
    width, height = geometry.extent_mm()
    scale = min(width, height)
    tissue = TissueMotion(
        ux=float(rng.uniform(-0.02, 0.02) * scale),
        uz=float(rng.uniform(-0.02, 0.02) * scale),
        period=float(rng.uniform(1.5, 3.0) * max(num_frames, 8)),
        phase=float(rng.uniform(0, 2 * math.pi)),
    )
    frames = np.arange(max(num_frames, 1), dtype=float)
    size_scale = scale / math.sqrt(max(len(kinds), 1))  # several targets are drawn smaller so that they fit
    for _ in range(max(1, max_tries // 20)):  # whole scene redrawn when a later target finds no room
        placed: list = []
        for kind in kinds:
            for _ in range(20):
                target = _draw_target(rng, geometry, kind, size_scale, num_frames, frame_rate)
                if _fits(Scene(tuple(placed) + (target,), tissue), len(placed), geometry, frames, margin_mm):
                    placed.append(target)
                    break
            else:
                break
        if len(placed) == len(kinds):
            return Scene(tuple(placed), tissue)
    raise ValueError(f"could not place {kinds} inside the fan in {max_tries} draws; enlarge the field of view")


def _draw_target(rng, geometry: ProbeGeometry, kind: str, scale: float, num_frames: int, frame_rate: float):
    """One random target; sizes and motion amplitudes are fractions of ``scale`` (mm)."""
    width, height = geometry.extent_mm()
    top = geometry.top_mm()
    cz0 = top + float(rng.uniform(0.25, 0.75)) * height
    cx0 = float(rng.uniform(-0.35, 0.35)) * width
    psi0 = float(rng.uniform(-0.6, 0.6))
    if kind == "chamber":
        heart_rate = float(rng.uniform(55, 95))
        return Chamber(
            cx0=cx0, cz0=cz0,
            a0=float(rng.uniform(0.10, 0.16)) * scale, b0=float(rng.uniform(0.16, 0.24)) * scale, psi0=psi0,
            ka=float(rng.uniform(0.2, 0.35)), kb=float(rng.uniform(0.1, 0.2)),
            dx=float(rng.uniform(-0.02, 0.02)) * scale, dz=float(rng.uniform(-0.04, 0.0)) * scale,
            wall_mm=float(rng.uniform(0.04, 0.06)) * scale,
            period=frame_rate * 60.0 / heart_rate, phase=float(rng.uniform(-0.3, 0.3)),
        )
    return Lesion(
        cx0=cx0, cz0=cz0,
        a0=float(rng.uniform(0.08, 0.15)) * scale, b0=float(rng.uniform(0.06, 0.11)) * scale, psi0=psi0,
        dx=float(rng.uniform(0.01, 0.04)) * scale, dz=float(rng.uniform(0.01, 0.03)) * scale,
        eps=float(rng.uniform(0.05, 0.15)), dpsi=float(rng.uniform(0.0, 0.15)),
        period=float(rng.uniform(1.0, 2.0)) * max(num_frames, 8), phase=float(rng.uniform(0, 2 * math.pi)),
        contrast_db=float(rng.uniform(-12.0, -6.0)),
    )


def _fits(scene: Scene, index: int, geometry: ProbeGeometry, frames: np.ndarray, margin_mm: float) -> bool:
    target = scene.targets[index]
    for t in frames:
        st = scene.state(index, float(t))
        grow = target.wall(float(t)) if isinstance(target, Chamber) else 0.0
        bx, bz = st.boundary(48, grow_mm=grow)
        if not geometry.inside(bx, bz, margin_mm).all():
            return False
        for j in range(index):
            other = scene.state(j, float(t))
            other_grow = scene.targets[j].wall(float(t)) if isinstance(scene.targets[j], Chamber) else 0.0
            if (other.radius(bx, bz, other_grow + margin_mm) < 1).any():
                return False
            ox, oz = other.boundary(48, grow_mm=other_grow)
            if (st.radius(ox, oz, grow + margin_mm) < 1).any():
                return False
    return True
