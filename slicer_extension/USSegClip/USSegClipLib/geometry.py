"""Clip geometry: IJK→RAS matrices, the frame axis, and frame index ↔ world position.

A clip is a 3-D voxel array indexed ``[i, j, k]`` (for usseg's cine layout ``(X, Y, T)``: i = column, j = row,
k = frame) plus the 4×4 IJK→RAS matrix that 3D Slicer stores on a volume node (``GetIJKToRASMatrix``; equal to a
NIfTI affine). The frame axis is whichever voxel axis counts frames — usually k, but not necessarily.

The frame a slice view shows is found by mapping a world point to voxel coordinates with the inverse matrix
(RAS→IJK) and reading the frame-axis coordinate — never from the slice offset, which equals a frame index only for
an identity direction matrix with unit spacing and zero origin.

Note that Slicer's ``slicer.util.arrayFromVolume`` returns arrays in ``[k, j, i]`` order; use :func:`kji_to_ijk` /
:func:`ijk_to_kji` at that boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ClipGeometryError

__all__ = [
    "Clip",
    "check_ijk_to_ras",
    "frame_index_from_ras",
    "ijk_to_kji",
    "kji_to_ijk",
    "ras_of_frame",
    "ras_to_ijk",
    "split_matrix",
    "compose_matrix",
    "matrix_from_text",
    "matrix_to_text",
    "stack_frames",
    "to_grey",
]


def check_ijk_to_ras(matrix) -> np.ndarray:
    """Validate a 4×4 homogeneous IJK→RAS matrix and return it as float64.

    Raises:
        ClipGeometryError: wrong shape, non-finite values, a last row other than ``0 0 0 1``, or a singular
            3×3 part (zero spacing or collinear axes).
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (4, 4):
        raise ClipGeometryError(f"IJK→RAS must be a 4×4 matrix, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ClipGeometryError("IJK→RAS matrix has non-finite values")
    if not np.allclose(m[3], [0, 0, 0, 1]):
        raise ClipGeometryError(f"IJK→RAS last row must be 0 0 0 1, got {m[3].tolist()}")
    if abs(np.linalg.det(m[:3, :3])) < 1e-12:
        raise ClipGeometryError("IJK→RAS matrix is singular (zero spacing or collinear axes)")
    return m


def split_matrix(ijk_to_ras) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split IJK→RAS into ``(spacing (3,), origin (3,), direction (3, 3))``; direction columns are unit vectors."""
    m = check_ijk_to_ras(ijk_to_ras)
    spacing = np.linalg.norm(m[:3, :3], axis=0)
    return spacing, m[:3, 3].copy(), m[:3, :3] / spacing


def compose_matrix(spacing, origin, direction=None) -> np.ndarray:
    """Build IJK→RAS from spacing, origin and a 3×3 direction matrix (columns = axis directions; identity default)."""
    direction = np.eye(3) if direction is None else np.asarray(direction, dtype=np.float64)
    m = np.eye(4)
    m[:3, :3] = direction * np.asarray(spacing, dtype=np.float64)
    m[:3, 3] = np.asarray(origin, dtype=np.float64)
    return check_ijk_to_ras(m)


def ras_to_ijk(ijk_to_ras, ras) -> np.ndarray:
    """Continuous voxel coordinates ``(i, j, k)`` of the RAS point(s) ``ras`` (shape (3,) or (N, 3))."""
    m = check_ijk_to_ras(ijk_to_ras)
    p = np.asarray(ras, dtype=np.float64)
    homog = np.concatenate([p, np.ones(p.shape[:-1] + (1,))], axis=-1)
    return (homog @ np.linalg.inv(m).T)[..., :3]


def _check_axis(frame_axis: int) -> int:
    if frame_axis not in (0, 1, 2):
        raise ClipGeometryError(f"frame axis must be 0, 1 or 2 (an IJK axis), got {frame_axis}")
    return int(frame_axis)


def _frames_last_order(frame_axis: int) -> list[int]:
    """The axis order that moves ``frame_axis`` to k, the other two axes keeping theirs."""
    return [a for a in range(3) if a != frame_axis] + [frame_axis]


def frame_index_from_ras(ijk_to_ras, ras, frame_axis: int = 2, num_frames: int | None = None) -> int:
    """Frame shown at world point ``ras``: the nearest integer of the frame-axis voxel coordinate.

    Args:
        ijk_to_ras: 4×4 IJK→RAS of the clip.
        ras: a point (3,) in RAS, e.g. the centre of a slice view.
        frame_axis: voxel axis that counts frames (0 = i, 1 = j, 2 = k).
        num_frames: when given, the result is checked to lie in ``[0, num_frames)``.

    Raises:
        ClipGeometryError: the point lies outside the clip's frames.

    Examples::

        m = compose_matrix([0.2, 0.2, 1.0], [10, 5, -3])
        frame_index_from_ras(m, [10, 5, 4])  # -> 7
    """
    axis = _check_axis(frame_axis)
    coord = float(ras_to_ijk(ijk_to_ras, ras)[axis])
    index = int(np.floor(coord + 0.5))
    if num_frames is not None and not 0 <= index < num_frames:
        raise ClipGeometryError(f"point {list(np.asarray(ras, float))} lies at frame {coord:.2f}, "
                                f"outside the clip's {num_frames} frames")
    return index


def ras_of_frame(ijk_to_ras, shape, frame_index: int, frame_axis: int = 2) -> np.ndarray:
    """RAS position of the centre of frame ``frame_index`` (the point to centre slice views on).

    Args:
        ijk_to_ras: 4×4 IJK→RAS of the clip.
        shape: voxel array shape in IJK order.
        frame_index: 0-based frame.
        frame_axis: voxel axis that counts frames.

    Raises:
        ClipGeometryError: the frame index is out of range or the shape is not 3-D.
    """
    axis = _check_axis(frame_axis)
    m = check_ijk_to_ras(ijk_to_ras)
    if len(shape) != 3:
        raise ClipGeometryError(f"clip shape must have 3 axes (IJK), got {tuple(shape)}")
    if not 0 <= frame_index < shape[axis]:
        raise ClipGeometryError(f"frame {frame_index} out of range: the clip has {shape[axis]} frames")
    ijk = (np.asarray(shape, dtype=np.float64) - 1) / 2
    ijk[axis] = frame_index
    return (m @ np.append(ijk, 1.0))[:3]


def kji_to_ijk(array: np.ndarray) -> np.ndarray:
    """Reorder a Slicer ``arrayFromVolume`` array (k, j, i) into (i, j, k) (a view, no copy)."""
    return np.asarray(array).transpose(2, 1, 0)


def ijk_to_kji(array: np.ndarray) -> np.ndarray:
    """Reorder an (i, j, k) array into Slicer's (k, j, i) order (a view, no copy)."""
    return np.asarray(array).transpose(2, 1, 0)


@dataclass
class Clip:
    """A cine clip: voxels in IJK order, its IJK→RAS matrix, and which axis counts frames.

    Args:
        voxels: 3-D array ``[i, j, k]`` (usseg's ``(X, Y, T)`` when ``frame_axis == 2``).
        ijk_to_ras: 4×4 matrix.
        frame_axis: axis of ``voxels`` that counts frames.

    Raises:
        ClipGeometryError: ``voxels`` is not 3-D, the matrix is invalid or the axis is not 0, 1 or 2.

    Examples::

        clip = Clip(np.zeros((64, 48, 10), np.uint8), compose_matrix([0.3, 0.3, 1], [0, 0, 0]))
        clip.num_frames  # 10
        clip.frame(3).shape  # (64, 48)
    """

    voxels: np.ndarray
    ijk_to_ras: np.ndarray
    frame_axis: int = 2

    def __post_init__(self):
        self.voxels = np.asarray(self.voxels)
        if self.voxels.ndim != 3:
            raise ClipGeometryError(f"a clip needs a 3-D voxel array (i, j, k), got shape {self.voxels.shape}")
        self.ijk_to_ras = check_ijk_to_ras(self.ijk_to_ras)
        self.frame_axis = _check_axis(self.frame_axis)

    @property
    def num_frames(self) -> int:
        return int(self.voxels.shape[self.frame_axis])

    @property
    def spacing(self) -> np.ndarray:
        return split_matrix(self.ijk_to_ras)[0]

    @property
    def origin(self) -> np.ndarray:
        return split_matrix(self.ijk_to_ras)[1]

    @property
    def direction(self) -> np.ndarray:
        return split_matrix(self.ijk_to_ras)[2]

    def frame(self, index: int) -> np.ndarray:
        """The 2-D frame ``index`` (the two non-frame axes in IJK order)."""
        if not 0 <= index < self.num_frames:
            raise ClipGeometryError(f"frame {index} out of range: the clip has {self.num_frames} frames")
        return np.take(self.voxels, index, axis=self.frame_axis)

    def frame_at(self, ras) -> int:
        """Frame index shown at the RAS point ``ras`` (see :func:`frame_index_from_ras`)."""
        return frame_index_from_ras(self.ijk_to_ras, ras, self.frame_axis, self.num_frames)

    def frame_center(self, index: int) -> np.ndarray:
        """RAS centre of frame ``index`` (see :func:`ras_of_frame`)."""
        return ras_of_frame(self.ijk_to_ras, self.voxels.shape, index, self.frame_axis)

    def with_frames_last(self) -> Clip:
        """The same clip with the frame axis moved to k, the matrix's columns permuted to match (same world)."""
        order = _frames_last_order(self.frame_axis)
        m = self.ijk_to_ras.copy()
        m[:3, :3] = self.ijk_to_ras[:3, order]
        return Clip(self.voxels.transpose(order), m, 2)

    def from_frames_last(self, voxels: np.ndarray) -> Clip:
        """``voxels`` laid out as :meth:`with_frames_last` lays out this clip (frames along k), as a clip on this
        clip's grid: the frame axis moved back to :attr:`frame_axis`, with a copy of this clip's matrix."""
        if self.frame_axis != 2:
            voxels = voxels.transpose(np.argsort(_frames_last_order(self.frame_axis)))
        return Clip(voxels, self.ijk_to_ras.copy(), self.frame_axis)

    def single_frame(self, index: int) -> Clip:
        """Frame ``index`` as a one-frame clip ``(i, j, 1)`` whose matrix places it where it was."""
        last = self.with_frames_last()
        frame = last.voxels[:, :, index : index + 1]
        if frame.shape[2] != 1:
            raise ClipGeometryError(f"frame {index} out of range: the clip has {self.num_frames} frames")
        m = last.ijk_to_ras.copy()
        m[:3, 3] = (last.ijk_to_ras @ np.array([0.0, 0.0, index, 1.0]))[:3]
        return Clip(frame, m, 2)


def stack_frames(frames, frame_ijk_to_ras) -> Clip:
    """Stack 2-D frames ``(i, j)`` (a Sequence of frames, as Slicer's DICOM module loads a cine) into a clip.

    The frames share one position in space, so the frame axis k gets a unit step (1 mm, a frame index, as for
    DICOM cines in usseg) along the frame plane's normal ``i × j``; i and j keep the frame's matrix.

    Args:
        frames: sequence of 2-D arrays of one shape.
        frame_ijk_to_ras: 4×4 IJK→RAS of the frames.

    Raises:
        ClipGeometryError: no frames, frames of different shapes, or frames that are not 2-D.
    """
    arrays = [np.asarray(f) for f in frames]
    if not arrays:
        raise ClipGeometryError("a sequence with no frames is no clip")
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ClipGeometryError(f"frames must be 2-D arrays of one shape, got {sorted(shapes)}")
    m = check_ijk_to_ras(frame_ijk_to_ras).copy()
    normal = np.cross(m[:3, 0], m[:3, 1])
    m[:3, 2] = normal / np.linalg.norm(normal)
    return Clip(np.stack(arrays, axis=2), m, 2)


def to_grey(array: np.ndarray) -> np.ndarray:
    """Colour ``(..., 3|4)`` → grey by ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` (rounded, same dtype),
    the usseg colour rule; 3-D grey arrays pass through unchanged."""
    a = np.asarray(array)
    if a.ndim == 4 and a.shape[-1] in (3, 4):
        grey = 0.299 * a[..., 0].astype(np.float64) + 0.587 * a[..., 1] + 0.114 * a[..., 2]
        return np.rint(grey).astype(a.dtype)
    if a.ndim != 3:
        raise ClipGeometryError(f"expected a grey (k, j, i) or colour (k, j, i, 3) volume array, got {a.shape}")
    return a


def matrix_to_text(matrix) -> str:
    """A 4×4 matrix as 16 numbers in row order, exact (``repr`` of each float), for node attributes."""
    return " ".join(repr(float(v)) for v in check_ijk_to_ras(matrix).flat)


def matrix_from_text(text: str) -> np.ndarray:
    """Inverse of :func:`matrix_to_text`.

    Raises:
        ClipGeometryError: not 16 numbers forming a valid IJK→RAS matrix.
    """
    try:
        values = [float(v) for v in text.split()]
    except ValueError as e:
        raise ClipGeometryError(f"not a matrix: {text!r}") from e
    if len(values) != 16:
        raise ClipGeometryError(f"a 4×4 matrix needs 16 numbers, got {len(values)}")
    return check_ijk_to_ras(np.array(values).reshape(4, 4))
