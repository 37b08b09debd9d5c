"""Carry a few corrected masks through a clip along optical flow (the product's propagation; no learning).

For every frame ``t`` the mask of the nearest corrected frame **before** ``t`` is warped forward frame by frame
(``c → c+1 → … → t``) and the nearest corrected frame **after** ``t`` is warped backward, as soft (float) masks so
that resampling does not erode them; the two are blended with weights ``1 / distance`` (frames outside the
first/last correction get the one side they have):

    p(t) = (p_fwd(t) / d_fwd(t) + p_bwd(t) / d_bwd(t)) / (1 / d_fwd(t) + 1 / d_bwd(t))

Flows are DIS (:mod:`usseg_models.propagation.flow`) on Gaussian-smoothed frames, in one of two
:data:`FLOW_VARIANTS`: ``"smooth"`` (the ``medium`` preset on frames brought to at most 128 px and blurred by 3 px:
coarse, smooth motion; the default) and ``"fine"`` (``medium`` at up to 256 px, blur 1 px). Neither is best
everywhere (``docs/results.md``, "Refinement"): on the real VTUS thyroid clip speckle decorrelates between frames
and the fine flow follows it and drifts (k = 1: Dice 0.63 fine vs 0.85 smooth); on synthetic cines, whose speckle
moves with the tissue, the fine flow is ahead from k = 5 on. So with two or more corrected frames
:func:`choose_flows` picks the variant per clip by leaving one corrected frame out; with one, ``"smooth"``. The
smooth variant was chosen from a sweep of preset × blur × working size on that real clip and four synthetic ones
(it was the best mean over k = 1–9 on both; the earlier ``ultrafast``/256 px/blur 2 gave 0.810 at k = 1 on the
real clip, this one 0.849). The masks are carried at the flow's working size and brought back to the clip's size.

:class:`PropagationResult` keeps the per-frame distance to the nearest correction, which the hybrid refinement
(:mod:`usseg_models.inference.refine`) uses to weigh propagation against the adapted model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from usseg_models.propagation.flow import ClipFlows, warp

__all__ = ["WORK_SIZE", "FLOW_VARIANTS", "DEFAULT_VARIANT", "PropagationResult", "clip_flows", "propagate_masks",
           "choose_flows", "leave_one_out", "dice_at_half"]

logger = logging.getLogger(__name__)

WORK_SIZE = 256
FLOW_VARIANTS = {"smooth": {"preset": "medium", "blur_sigma": 3.0, "work_size": 128},
                 "fine": {"preset": "medium", "blur_sigma": 1.0, "work_size": WORK_SIZE}}
DEFAULT_VARIANT = "smooth"


def _resize(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``(X, Y[, C])`` float32 to ``shape`` (identity when already that size)."""
    if tuple(values.shape[:2]) == tuple(shape):
        return values
    import cv2

    return cv2.resize(values, (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_LINEAR)


def work_shape(xy: tuple[int, int], work_size: int = WORK_SIZE) -> tuple[int, int]:
    """The matching size of a clip of frames ``xy``: the long side at most ``work_size`` pixels."""
    scale = min(1.0, float(work_size) / max(xy))
    return max(1, round(xy[0] * scale)), max(1, round(xy[1] * scale))


def clip_flows(cine: np.ndarray, variant: str = DEFAULT_VARIANT, work_size: int | None = None) -> ClipFlows:
    """DIS flows of a reader cine ``(X, Y, T[, 3])`` at the working size, on Gaussian-smoothed grey frames.

    ``work_size`` (default: the variant's) caps the long side of the frames the flow is computed on.
    """
    import cv2

    from usseg_models.propagation.flow import to_uint8_frames

    if variant not in FLOW_VARIANTS:
        raise ValueError(f"flow variant must be one of {list(FLOW_VARIANTS)}, got {variant!r}")
    preset, blur_sigma = FLOW_VARIANTS[variant]["preset"], float(FLOW_VARIANTS[variant]["blur_sigma"])
    work_size = int(work_size or FLOW_VARIANTS[variant]["work_size"])

    frames = to_uint8_frames(cine)
    shape = work_shape(frames.shape[:2], work_size)
    smooth = np.empty((*shape, frames.shape[2]), np.uint8)
    for t in range(frames.shape[2]):
        f = _resize(frames[..., t].astype(np.float32), shape)
        if blur_sigma > 0:
            f = cv2.GaussianBlur(f, (0, 0), float(blur_sigma))
        smooth[..., t] = np.clip(f + 0.5, 0, 255).astype(np.uint8)
    return ClipFlows.compute(smooth, preset)


@dataclass
class PropagationResult:
    """What :func:`propagate_masks` returns.

    Attributes:
        probabilities: float32 ``(X, Y, T)`` in [0, 1] at the clip's size; corrected frames hold their masks.
        distance: ``(T,)`` frames to the nearest corrected frame (0 on corrected frames).
        seconds: wall-clock seconds of the warping (flows not included).
    """

    probabilities: np.ndarray
    distance: np.ndarray
    seconds: float

    @property
    def masks(self) -> np.ndarray:
        return (self.probabilities >= 0.5).astype(np.uint8)


def _chain(flows: ClipFlows, starts: Mapping[int, np.ndarray], order: range, step: int):
    """Soft masks carried along ``order`` from the latest corrected frame; yields ``(t, mask, distance)``."""
    cur, dist = None, 0
    for t in order:
        if t in starts:
            cur, dist = starts[t], 0
        elif cur is not None:
            # forward (step +1): frame t-1 → t uses to_prev[t-1]; backward (step -1): frame t+1 → t uses to_next[t]
            cur = warp(cur, flows.to_prev[t - 1] if step > 0 else flows.to_next[t])
            dist += 1
        if cur is not None:
            yield t, cur, dist


def propagate_masks(flows: ClipFlows, corrected: Mapping[int, np.ndarray], xy: tuple[int, int],
                    only: Iterable[int] | None = None) -> PropagationResult:
    """Spread ``corrected`` (``{t: (X, Y) 0/1 mask}``, already checked) through the clip along ``flows``.

    Args:
        flows: :func:`clip_flows` of the clip (any working size; masks are resized to it and back).
        corrected: at least one frame.
        xy: the clip's frame size ``(X, Y)``.
        only: compute just these frames (the others stay 0 with distance 0), e.g. for leave-one-out checks.
    """
    start = time.perf_counter()
    n = flows.num_frames
    shape = tuple(flows.to_prev.shape[1:3]) if n > 1 else tuple(xy)
    starts = {int(t): _resize(np.asarray(m, np.float32), shape) for t, m in corrected.items()}
    wanted = range(n) if only is None else sorted({int(t) for t in only})
    lo, hi = (min(wanted), max(wanted)) if len(wanted) else (0, -1)
    # chains start at the last correction before the wanted frames (earlier warps would be overwritten anyway)
    first = max((t for t in starts if t <= lo), default=0)
    last = min((t for t in starts if t >= hi), default=n - 1)
    fwd = {t: (m, d) for t, m, d in _chain(flows, starts, range(first, hi + 1), 1)}
    bwd = {t: (m, d) for t, m, d in _chain(flows, starts, range(last, lo - 1, -1), -1)}
    planes = [np.zeros(xy, np.float32)] * n  # frames not wanted stay 0 (one shared read-only zero plane)
    distance = np.zeros(n, np.int64)
    for t in wanted:
        if t in corrected:
            planes[t] = np.asarray(corrected[t], np.float32)
            continue
        parts = [v for v in (fwd.get(t), bwd.get(t)) if v is not None]
        weights = [1.0 / d for _, d in parts]
        p = parts[0][0] * weights[0] if len(parts) == 1 else parts[0][0] * weights[0] + parts[1][0] * weights[1]
        planes[t] = np.clip(_resize(p / sum(weights), xy), 0.0, 1.0)
        distance[t] = min(d for _, d in parts)
    probs = np.stack(planes, axis=-1)
    return PropagationResult(probs, distance, time.perf_counter() - start)


def dice_at_half(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two probability (or 0/1) maps thresholded at 0.5 (both empty → 1)."""
    a, b = a >= 0.5, b >= 0.5
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * float(np.logical_and(a, b).sum()) / total


def leave_one_out(flows: ClipFlows, corrected: Mapping[int, np.ndarray], xy: tuple[int, int],
                  only: Iterable[int] | None = None) -> list[tuple[int, np.ndarray, float]]:
    """``(c, probability at c propagated from the other corrections, its distance)`` for each corrected ``c``
    (or each of ``only``)."""
    out = []
    for c in (corrected if only is None else only):
        others = {t: m for t, m in corrected.items() if t != c}
        loo = propagate_masks(flows, others, xy, only=(c,))
        out.append((int(c), loo.probabilities[..., c], float(loo.distance[c])))
    return out


def choose_flows(candidates: Mapping[str, ClipFlows], corrected: Mapping[int, np.ndarray], xy: tuple[int, int]
                 ) -> tuple[str, dict[str, float]]:
    """The flow variant whose propagation best predicts each corrected frame from the others (mean Dice).

    Returns ``(name, {name: mean leave-one-out Dice})``; with fewer than two corrected frames (nothing to leave
    out) the first candidate, with no scores. Ties go to the earlier candidate.
    """
    names = list(candidates)
    if len(corrected) < 2 or len(names) == 1:
        return names[0], {}
    scores = {name: float(np.mean([dice_at_half(p, corrected[c]) for c, p, _ in leave_one_out(f, corrected, xy)]))
              for name, f in candidates.items()}
    best = max(names, key=lambda n: (scores[n], -names.index(n)))
    return best, scores
