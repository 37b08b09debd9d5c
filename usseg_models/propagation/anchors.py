"""Learning-free ways to spread a few corrected masks over a clip: the anchors a refinement is judged against.

A user who corrected ``k`` frames of a clip already has these for free, so the product's refinement
(:func:`usseg_models.inference.refine.refine_from_corrections`) is worth its seconds only where it beats them
(``usseg bench refine``, :mod:`usseg_models.bench.refine`):

- :func:`copy_nearest` — every frame takes the mask of its nearest corrected frame;
- :func:`fill_between_slices` — 3D Slicer's Segment Editor effect "Fill between slices": ITK's morphological
  contour interpolation (Albu et al. 2008; Zukić et al., Insight Journal 2016) along the frame axis;
- :func:`flow_anchor` — the two enclosing corrected masks carried frame by frame along dense optical flow (OpenCV
  DIS, :mod:`usseg_models.propagation.flow`) and blended by temporal distance.

Conventions: ``corrected`` is ``{frame index: (X, Y) mask in {0, 1}}`` (at least one frame, indices inside the
clip; :func:`usseg_models.inference.refine.check_corrections` validates user input); every anchor returns a uint8
``{0, 1}`` volume ``(X, Y, T)`` whose corrected frames equal the given masks exactly.

Examples::

    >>> import numpy as np
    >>> a = np.zeros((8, 8), np.uint8); a[2:4, 2:4] = 1
    >>> b = np.zeros((8, 8), np.uint8); b[4:6, 4:6] = 1
    >>> out = copy_nearest({1: a, 4: b}, 6)
    >>> [int((out[..., t] == a).all()) for t in range(6)]  # frame 2 and 3: 2 is nearer to 1, 3 nearer to 4
    [1, 1, 1, 0, 0, 0]
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from usseg_models.propagation.flow import ClipFlows, warp

__all__ = ["ANCHORS", "copy_nearest", "fill_between_slices", "flow_anchor"]

logger = logging.getLogger(__name__)

ANCHORS = ("copy", "fill", "flow")


def _masks(corrected: Mapping[int, np.ndarray], num_frames: int) -> dict[int, np.ndarray]:
    """``corrected`` as ``{index: uint8 (X, Y) mask}`` sorted by index; refuses an empty or out-of-clip one."""
    if not corrected:
        raise ValueError("at least one corrected frame is needed")
    out = {int(t): (np.asarray(m) > 0).astype(np.uint8) for t, m in sorted(corrected.items())}
    bad = [t for t in out if not 0 <= t < num_frames]
    if bad:
        raise ValueError(f"corrected frames {bad} lie outside the clip's frames 0..{num_frames - 1}")
    shapes = {m.shape for m in out.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"corrected masks must all be (X, Y) of one size, got {sorted(shapes)}")
    return out


def _nearest(frames: list[int], t: int) -> int:
    """The corrected frame nearest to ``t`` (ties: the earlier one)."""
    return min(frames, key=lambda c: (abs(c - t), c))


def copy_nearest(corrected: Mapping[int, np.ndarray], num_frames: int) -> np.ndarray:
    """Every frame takes the mask of its nearest corrected frame (ties: the earlier); uint8 ``(X, Y, T)``."""
    fixes = _masks(corrected, num_frames)
    frames = list(fixes)
    return np.stack([fixes[_nearest(frames, t)] for t in range(num_frames)], axis=-1)


def fill_between_slices(corrected: Mapping[int, np.ndarray], num_frames: int) -> np.ndarray:
    """3D Slicer's "Fill between slices" along the frame axis; frames outside the corrections copy the end masks.

    The volume given to ITK's ``MorphologicalContourInterpolator`` holds the corrected frames and empty frames
    elsewhere, as the Segment Editor's merged label map does. Settings: the filter interpolates **only along the
    frame axis** (Slicer's effect leaves ``Axis = -1``, every axis, which on a clip segmented frame by frame comes
    down to the frame axis, since no other axis has empty slices between segmented ones), label 1, and the other
    options as Slicer's ``vtkITKMorphologicalContourInterpolator`` wrapper sets them (which differ from ITK's own
    defaults): ``HeuristicAlignment`` on, ``UseDistanceTransform`` **off** (median contours by repeated dilations,
    which the wrapper documents as better than the distance transform), ``UseBallStructuringElement`` off.

    Slicer leaves frames before the first and after the last segmented frame empty; here they copy the nearest
    end mask (the convention of the anchor table). With one corrected frame there is nothing to interpolate and the
    result is :func:`copy_nearest`. Limitation shared with Slicer: an **empty** corrected mask counts as an
    unsegmented frame, so the interpolation runs through it (the frame itself is returned empty as given).
    """
    fixes = _masks(corrected, num_frames)
    frames = list(fixes)
    out = copy_nearest(fixes, num_frames)
    if len(frames) < 2 or frames[-1] - frames[0] + 1 == len(frames):
        return out  # one frame, or consecutive frames: no gap to fill
    import itk  # itk-morphologicalcontourinterpolation; its first template instantiation takes seconds

    lo, hi = frames[0], frames[-1]
    volume = np.zeros((hi - lo + 1, *fixes[lo].shape), np.uint8)      # (T, X, Y): ITK index order (Y, X, T)
    for t, m in fixes.items():
        volume[t - lo] = m
    image = itk.image_from_array(volume)
    threads = itk.MultiThreaderBase.GetGlobalDefaultNumberOfThreads()
    # one thread, set before the filter is made (it takes its thread pool then): with several, the filter (2.1.2)
    # corrupted the heap on the real VTUS clip in about half the runs (glibc "malloc_consolidate(): unaligned fastbin
    # chunk" abort at exit); with one, in none of 18
    itk.MultiThreaderBase.SetGlobalDefaultNumberOfThreads(1)
    try:
        interpolator = itk.MorphologicalContourInterpolator[type(image)].New()
        interpolator.SetInput(image)
        interpolator.SetAxis(2)                                         # numpy axis 0 is ITK's last axis
        interpolator.SetLabel(1)
        interpolator.SetHeuristicAlignment(True)
        interpolator.SetUseDistanceTransform(False)
        interpolator.SetUseBallStructuringElement(False)
        interpolator.Update()
    finally:
        itk.MultiThreaderBase.SetGlobalDefaultNumberOfThreads(threads)
    filled = (itk.array_from_image(interpolator.GetOutput()) > 0).astype(np.uint8)
    out[..., lo : hi + 1] = np.moveaxis(filled, 0, -1)
    for t, m in fixes.items():
        out[..., t] = m
    return out


def _carry(flows: ClipFlows, fixes: Mapping[int, np.ndarray], step: int) -> tuple[list, np.ndarray]:
    """Soft masks carried from the latest correction along ``step`` (+1 forward, -1 backward) and their distances.

    Returns ``(masks, distance)``: ``masks[t]`` float32 ``(X, Y)`` or ``None`` where no correction lies behind
    ``t`` in that direction; ``distance[t]`` frames from that correction (``inf`` where none).
    """
    n = flows.num_frames
    masks: list[np.ndarray | None] = [None] * n
    distance = np.full(n, np.inf)
    order = range(n) if step > 0 else range(n - 1, -1, -1)
    current, d = None, np.inf
    for t in order:
        if t in fixes:
            current, d = fixes[t].astype(np.float32), 0.0
        elif current is not None:
            # forward: frame t-1 onto t is to_prev[t-1]; backward: frame t+1 onto t is to_next[t]
            current = warp(current, flows.to_prev[t - 1] if step > 0 else flows.to_next[t])
            d += 1
        masks[t], distance[t] = current, d
    return masks, distance


def flow_anchor(cine: np.ndarray, corrected: Mapping[int, np.ndarray], flows: ClipFlows | None = None,
                preset: str = "medium") -> np.ndarray:
    """Corrected masks carried along OpenCV DIS flow, blended by temporal distance; uint8 ``(X, Y, T)``.

    For each frame ``t`` the mask of the previous correction ``a`` is warped forward frame by frame (``a → a+1 →
    … → t``) and the mask of the next correction ``b`` backward, both as soft masks (bilinear resampling, no
    rounding between steps); the result is ``(p_a / (t - a) + p_b / (b - t)) / (1 / (t - a) + 1 / (b - t)) ≥ 0.5``.
    Frames before the first / after the last correction get the one side they have.

    Args:
        cine: reader cine ``(X, Y, T)`` or ``(X, Y, T, 3)``, any dtype.
        corrected: ``{frame index: (X, Y) 0/1 mask}``, at least one.
        flows: :meth:`ClipFlows.compute` of the clip, to reuse (computed here when ``None``).
        preset: DIS preset of the flows computed here (``"medium"``: the plain OpenCV anchor, on the raw frames).
    """
    n = int(np.asarray(cine).shape[2])
    fixes = _masks(corrected, n)
    flows = flows if flows is not None else ClipFlows.compute(cine, preset)
    if flows.num_frames != n:
        raise ValueError(f"the flows cover {flows.num_frames} frames, the cine has {n}")
    forward, d_fwd = _carry(flows, fixes, +1)
    backward, d_bwd = _carry(flows, fixes, -1)
    out = np.zeros((*next(iter(fixes.values())).shape, n), np.uint8)
    for t in range(n):
        if t in fixes:
            out[..., t] = fixes[t]
            continue
        sides = [(m, 1.0 / d) for m, d in ((forward[t], d_fwd[t]), (backward[t], d_bwd[t])) if m is not None]
        blend = sum(w * m for m, w in sides) / sum(w for _, w in sides)
        out[..., t] = blend >= 0.5
    return out
