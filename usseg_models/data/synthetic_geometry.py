"""Probe geometry and scan conversion for the synthetic B-mode simulator.

Two probe geometries are modelled, both in a Cartesian frame in millimetres with ``x`` lateral (positive to
the image right) and ``z`` axial (depth, positive down):

* ``"sector"`` -- a curvilinear (convex) probe: beams fan out from an apex at the origin; the probe face is
  the arc of radius ``apex_radius_mm`` and beam ``k`` points at angle ``theta_k`` from the ``z`` axis. A beam
  sample at range ``r`` lies at ``(x, z) = (r sin(theta), r cos(theta))``; the imaged fan is
  ``apex_radius_mm <= r <= apex_radius_mm + depth_mm`` and ``|theta| <= sector_angle / 2``.
  (``apex_radius_mm = 0`` gives a phased-array sector with a point apex.)
* ``"linear"`` -- parallel beams ``x_k`` across ``width_mm``, samples ``0 <= z <= depth_mm`` below the face.

Echoes are simulated on the *beam grid* (range sample ``m``, line ``k``), as a scanner acquires them, and
then scan converted (bilinear interpolation) to a square pixel grid of ``rows x cols`` pixels with isotropic
spacing chosen so that the whole fan fits; pixels outside the fan are exactly 0 (black). Pixel ``(row, col)``
has its centre at ``x = x0 + col * pixel_mm``, ``z = z0 + row * pixel_mm`` (``z0`` = shallowest point of the fan).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = ["ProbeGeometry", "ScanConverter"]

GEOMETRIES = ("sector", "linear")


@dataclass(frozen=True)
class ProbeGeometry:
    """Probe and field of view.

    Args:
        kind: ``"sector"`` (curvilinear) or ``"linear"``.
        depth_mm: imaging depth below the probe face (mm).
        sector_angle_deg: opening angle of the sector (sector only, degrees, in ``(0, 180)``).
        apex_radius_mm: radius of curvature of the convex probe face (sector only, mm, ``>= 0``).
        width_mm: lateral field of view (linear only, mm).

    Examples::

        >>> g = ProbeGeometry("sector", depth_mm=120.0, sector_angle_deg=65.0, apex_radius_mm=20.0)
        >>> round(g.extent_mm()[1], 1)  # fan height (mm)
        123.1
    """

    kind: str = "sector"
    depth_mm: float = 120.0
    sector_angle_deg: float = 65.0
    apex_radius_mm: float = 20.0
    width_mm: float = 40.0

    def __post_init__(self) -> None:
        if self.kind not in GEOMETRIES:
            raise ValueError(f"geometry kind must be one of {GEOMETRIES}, got {self.kind!r}")
        if not self.depth_mm > 0:
            raise ValueError(f"depth_mm must be > 0, got {self.depth_mm}")
        if self.kind == "sector":
            if not 0 < self.sector_angle_deg < 180:
                raise ValueError(f"sector_angle_deg must be in (0, 180), got {self.sector_angle_deg}")
            if self.apex_radius_mm < 0:
                raise ValueError(f"apex_radius_mm must be >= 0, got {self.apex_radius_mm}")
        elif not self.width_mm > 0:
            raise ValueError(f"width_mm must be > 0, got {self.width_mm}")

    @property
    def half_angle(self) -> float:
        """Half opening angle of the sector (radians)."""
        return math.radians(self.sector_angle_deg) / 2

    @property
    def face_depth_mm(self) -> float:
        """Offset of the probe face along the beam: ``apex_radius_mm`` for a sector, 0 for a linear probe."""
        return self.apex_radius_mm if self.kind == "sector" else 0.0

    def extent_mm(self) -> tuple[float, float]:
        """Width and height (mm) of the fan's bounding box."""
        if self.kind == "linear":
            return self.width_mm, self.depth_mm
        r_max = self.apex_radius_mm + self.depth_mm
        return 2 * r_max * math.sin(self.half_angle), r_max - self.apex_radius_mm * math.cos(self.half_angle)

    def top_mm(self) -> float:
        """Depth ``z`` of the shallowest point of the fan (top row of the image)."""
        return self.apex_radius_mm * math.cos(self.half_angle) if self.kind == "sector" else 0.0

    def inside(self, x: np.ndarray, z: np.ndarray, margin_mm: float = 0.0) -> np.ndarray:
        """Whether Cartesian points ``(x, z)`` lie inside the fan, at least ``margin_mm`` from its border."""
        x, z = np.asarray(x, float), np.asarray(z, float)
        if self.kind == "linear":
            half = self.width_mm / 2 - margin_mm
            return (np.abs(x) <= half) & (z >= margin_mm) & (z <= self.depth_mm - margin_mm)
        r = np.hypot(x, z)
        # distance to the straight sector edges, r sin(half_angle - |theta|), is >= 0 only for |theta| <= half_angle
        edge = r * np.sin(self.half_angle - np.abs(np.arctan2(x, z)))
        return (r >= self.apex_radius_mm + margin_mm) & (r <= self.apex_radius_mm + self.depth_mm - margin_mm) & (
            edge >= margin_mm
        )


class ScanConverter:
    """Beam grid of one probe and the bilinear scan conversion from that grid to a square pixel image.

    Args:
        geometry: the probe.
        num_samples: range samples per line ``M`` (>= 2).
        num_lines: lines ``L`` (>= 2).
        size: output image is ``size x size`` pixels.

    The converter precomputes, for every pixel inside the fan, the four beam-grid neighbours and bilinear
    weights, so converting a ``(T, M, L)`` stack costs four gathers.

    Examples::

        >>> sc = ScanConverter(ProbeGeometry("linear", depth_mm=50, width_mm=40), 200, 64, size=64)
        >>> sc.convert(np.ones((2, 200, 64), np.float32)).shape
        (2, 64, 64)
    """

    def __init__(self, geometry: ProbeGeometry, num_samples: int, num_lines: int, size: int) -> None:
        if num_samples < 2 or num_lines < 2:
            raise ValueError(f"the beam grid needs >= 2 samples and lines, got {num_samples} x {num_lines}")
        if size < 8:
            raise ValueError(f"image size must be >= 8 pixels, got {size}")
        self.geometry = geometry
        self.num_samples = int(num_samples)
        self.num_lines = int(num_lines)
        self.size = int(size)
        width, height = geometry.extent_mm()
        # isotropic pixels, fan fitted in the square and centred laterally, top of the fan on row 0
        self.pixel_mm = max(width, height) / (size - 1)
        self.x0_mm = -(size - 1) / 2 * self.pixel_mm
        self.z0_mm = geometry.top_mm()
        self.range_step_mm = geometry.depth_mm / (num_samples - 1)
        if geometry.kind == "sector":
            self.line_step = 2 * geometry.half_angle / (num_lines - 1)  # radians
        else:
            self.line_step = geometry.width_mm / (num_lines - 1)  # mm
        self._build_tables()

    # -- coordinates -------------------------------------------------------------------------------------------
    def pixel_centres_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """Cartesian ``(x, z)`` of every pixel centre, each shaped ``(rows, cols)``."""
        idx = np.arange(self.size, dtype=float)
        z, x = np.meshgrid(self.z0_mm + idx * self.pixel_mm, self.x0_mm + idx * self.pixel_mm, indexing="ij")
        return x, z

    def mm_to_pixel(self, x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cartesian mm to fractional pixel ``(col, row)`` (pixel centres at integers)."""
        return (np.asarray(x) - self.x0_mm) / self.pixel_mm, (np.asarray(z) - self.z0_mm) / self.pixel_mm

    @cached_property
    def beam_points_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """Cartesian ``(x, z)`` of every beam-grid sample, each shaped ``(M, L)``."""
        g = self.geometry
        ranges = g.face_depth_mm + np.arange(self.num_samples) * self.range_step_mm
        if g.kind == "sector":
            theta = -g.half_angle + np.arange(self.num_lines) * self.line_step
            return np.outer(ranges, np.sin(theta)), np.outer(ranges, np.cos(theta))
        xs = -g.width_mm / 2 + np.arange(self.num_lines) * self.line_step
        return np.broadcast_to(xs, (self.num_samples, self.num_lines)).copy(), np.repeat(
            ranges[:, None], self.num_lines, axis=1
        )

    @property
    def sample_depth_mm(self) -> np.ndarray:
        """Depth of each range sample below the probe face (mm), shape ``(M,)``."""
        return np.arange(self.num_samples) * self.range_step_mm

    def _build_tables(self) -> None:
        x, z = self.pixel_centres_mm()
        g = self.geometry
        if g.kind == "sector":
            m = (np.hypot(x, z) - g.face_depth_mm) / self.range_step_mm
            k = (np.arctan2(x, z) + g.half_angle) / self.line_step
        else:
            m = z / self.range_step_mm
            k = (x + g.width_mm / 2) / self.line_step
        eps = 1e-9
        fan = (m >= -eps) & (m <= self.num_samples - 1 + eps) & (k >= -eps) & (k <= self.num_lines - 1 + eps)
        self.fan_mask = fan  # (rows, cols) bool
        m = np.clip(m[fan], 0, self.num_samples - 1)
        k = np.clip(k[fan], 0, self.num_lines - 1)
        m0 = np.minimum(np.floor(m).astype(np.intp), self.num_samples - 2)
        k0 = np.minimum(np.floor(k).astype(np.intp), self.num_lines - 2)
        fm, fk = (m - m0).astype(np.float32), (k - k0).astype(np.float32)
        flat = m0 * self.num_lines + k0
        self._index = np.stack([flat, flat + 1, flat + self.num_lines, flat + self.num_lines + 1])
        self._weight = np.stack([(1 - fm) * (1 - fk), (1 - fm) * fk, fm * (1 - fk), fm * fk])

    def convert(self, beams: np.ndarray) -> np.ndarray:
        """Scan-convert a ``(T, M, L)`` beam-grid stack to ``(T, rows, cols)`` float32; 0 outside the fan."""
        beams = np.asarray(beams, dtype=np.float32)
        if beams.ndim != 3 or beams.shape[1:] != (self.num_samples, self.num_lines):
            raise ValueError(
                f"expected beams shaped (T, {self.num_samples}, {self.num_lines}), got {tuple(beams.shape)}"
            )
        flat = beams.reshape(beams.shape[0], -1)
        values = np.einsum("ktn,kn->tn", flat[:, self._index].transpose(1, 0, 2), self._weight)
        out = np.zeros((beams.shape[0], self.size, self.size), np.float32)
        out[:, self.fan_mask] = values
        return out
