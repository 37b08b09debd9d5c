"""Dense optical flow between the frames of a clip, and warping masks along it (OpenCV DIS).

DIS (Kroeger et al., "Fast Optical Flow using Dense Inverse Search", ECCV 2016) is the flow OpenCV ships for
real-time use; on a 256 × 256 ultrasound frame it takes a few milliseconds per pair on one CPU core.

Conventions: frames are reader arrays ``(X, Y)`` (MONAI spatial-first); OpenCV sees them as images of ``X`` rows
and ``Y`` columns, and a flow field is ``(X, Y, 2)`` float32 holding the displacement along (Y, X) — OpenCV's
(column, row) order — in pixels. ``flow = dis_flow(target, source)`` gives, for each pixel ``p`` of ``target``, the
position ``p + flow[p]`` of the same tissue in ``source``; so :func:`warp` ``(source_mask, flow)`` carries a mask
drawn on ``source`` onto ``target`` (backward warping: every target pixel is sampled once, no holes).

:class:`ClipFlows` holds the flow between every pair of consecutive frames, both ways, computed once per clip and
reused by every propagation of that clip (the server keeps it between requests of the same clip).
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import time
from dataclasses import dataclass

import numpy as np

__all__ = ["DIS_PRESETS", "ClipFlows", "dis_flow", "warp", "to_uint8_frames"]

logger = logging.getLogger(__name__)

DIS_PRESETS = ("ultrafast", "fast", "medium")


def _cv2():
    import cv2  # opencv-python-headless (a dependency); imported on use so the library imports without it

    return cv2


def _dis(preset: str):
    cv2 = _cv2()
    if preset not in DIS_PRESETS:
        raise ValueError(f"DIS preset must be one of {DIS_PRESETS}, got {preset!r}")
    code = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
            "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}[preset]
    return cv2.DISOpticalFlow_create(code)


def to_uint8_frames(cine: np.ndarray) -> np.ndarray:
    """Reader cine ``(X, Y, T)`` or ``(X, Y, T, 3)`` of any dtype → grey uint8 ``(X, Y, T)`` (min–max over the clip).

    Raises:
        ValueError: not a cine of those shapes.
    """
    arr = np.asarray(cine)
    if arr.ndim == 4 and arr.shape[-1] in (3, 4):
        from usseg_models.io.conventions import bt601_luma

        arr = bt601_luma(arr[..., :3])
    if arr.ndim != 3:
        raise ValueError(f"a cine must be (X, Y, T) or (X, Y, T, 3), got {arr.shape}")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    arr = arr.astype(np.float32)
    lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.clip((arr - lo) * scale, 0, 255).astype(np.uint8)


def dis_flow(target: np.ndarray, source: np.ndarray, preset: str = "medium") -> np.ndarray:
    """Flow ``(X, Y, 2)`` float32 such that ``target[p] ≈ source[p + flow[p]]`` (grey uint8 frames)."""
    return _dis(preset).calc(np.ascontiguousarray(target), np.ascontiguousarray(source), None)


@functools.lru_cache(maxsize=8)
def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    rows.flags.writeable = cols.flags.writeable = False  # shared between calls
    return cols, rows


def warp(values: np.ndarray, flow: np.ndarray, border: float = 0.0) -> np.ndarray:
    """Sample ``values`` (``(X, Y)`` float) at ``p + flow[p]`` (bilinear; outside the frame = ``border``)."""
    cv2 = _cv2()
    cols, rows = _grid(tuple(int(v) for v in values.shape[:2]))
    return cv2.remap(np.ascontiguousarray(values, dtype=np.float32), cols + flow[..., 0], rows + flow[..., 1],
                     interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=float(border))


@dataclass
class ClipFlows:
    """Flows between consecutive frames of one clip, both ways.

    Attributes:
        to_prev: ``(T-1, X, Y, 2)``; ``to_prev[t]`` = ``dis_flow(frame t+1, frame t)``: carries a mask of frame ``t``
            onto frame ``t+1`` (forward propagation).
        to_next: ``(T-1, X, Y, 2)``; ``to_next[t]`` = ``dis_flow(frame t, frame t+1)``: carries a mask of frame
            ``t+1`` onto frame ``t`` (backward propagation).
        seconds: wall-clock seconds the flows took.
    """

    to_prev: np.ndarray
    to_next: np.ndarray
    seconds: float = 0.0

    @property
    def num_frames(self) -> int:
        return int(self.to_prev.shape[0]) + 1

    @classmethod
    def compute(cls, cine: np.ndarray, preset: str = "medium") -> ClipFlows:
        """Flows of a reader cine ``(X, Y, T[, 3])`` (any dtype; grey uint8 is used for matching).

        The two directions are computed in two threads (OpenCV releases the GIL), one DIS instance each.
        """
        frames = to_uint8_frames(cine)
        start = time.perf_counter()
        n = frames.shape[2]
        shape = (max(n - 1, 0), frames.shape[0], frames.shape[1], 2)
        to_prev, to_next = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
        planes = [np.ascontiguousarray(frames[..., t]) for t in range(n)]

        def run(out: np.ndarray, backward: bool) -> None:
            dis = _dis(preset)
            for t in range(n - 1):
                a, b = planes[t], planes[t + 1]
                out[t] = dis.calc(a, b, None) if backward else dis.calc(b, a, None)

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            for job in [pool.submit(run, to_prev, False), pool.submit(run, to_next, True)]:
                job.result()
        seconds = time.perf_counter() - start
        logger.debug("DIS %s flows of %d frames in %.2f s", preset, n, seconds)
        return cls(to_prev, to_next, seconds)
