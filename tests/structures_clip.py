"""A tiny synthetic clip with three structures (tests of per-structure refinement).

Label values: 1 a beating disc (\"LV\"), 2 the ring around it (\"MYO\"), 3 a second disc that moves on its own
(\"LA\"). The scene (speckle-like texture included) translates along a closed path, so optical flow can follow it.
"""

from __future__ import annotations

import numpy as np

LABELS = "1:LV,2:MYO,3:LA"


def three_structure_clip(num_frames: int = 24, size: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(cine uint8 (X, Y, T), label uint8 (X, Y, T) in {0, 1, 2, 3})``."""
    import cv2

    rng = np.random.default_rng(seed)
    pad = size
    texture = cv2.GaussianBlur(rng.random((size + 2 * pad, size + 2 * pad)).astype(np.float32), (0, 0), 1.5)
    texture = (texture - texture.min()) / (np.ptp(texture) + 1e-6)
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    cx, cy = 0.42 * size, 0.45 * size
    cine = np.zeros((size, size, num_frames), np.uint8)
    label = np.zeros((size, size, num_frames), np.uint8)
    for t in range(num_frames):
        phase = 2 * np.pi * t / num_frames
        dx, dy = 0.08 * size * np.sin(phase), 0.06 * size * np.cos(phase)
        sx, sy = rows - dx, cols - dy                               # scene coordinates of every pixel
        r = 0.14 * size * (1 + 0.2 * np.sin(2 * phase))
        d_lv = np.hypot(sx - cx, sy - cy)
        la_x, la_y = cx + 0.30 * size + 0.04 * size * np.sin(phase), cy + 0.12 * size
        d_la = np.hypot(sx - la_x, sy - la_y)
        lab = np.zeros((size, size), np.uint8)
        lab[d_lv <= r + 0.07 * size] = 2
        lab[d_lv <= r] = 1
        lab[d_la <= 0.1 * size * (1 + 0.15 * np.cos(phase))] = 3
        tex = cv2.remap(texture, sy + pad, sx + pad, cv2.INTER_LINEAR)
        level = np.choose(lab, [0.45, 0.12, 0.85, 0.25]).astype(np.float32)
        cine[..., t] = np.clip(255 * (0.55 * level + 0.45 * tex * (0.4 + level)), 0, 255).astype(np.uint8)
        label[..., t] = lab
    return cine, label
