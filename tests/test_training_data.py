"""Tiny in-memory segmentation data for the training tests (discs on noise), plus checks of the helper itself."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


class Discs(Dataset):
    """``n`` noisy images of a bright disc (random centre/radius) and its mask.

    Items are ``{"image": (3, S, S), "label": (1, S, S)}`` or, with ``clip=True``, 3-frame clips
    ``{"image": (3, 3, S, S), "label": (3, 1, S, S)}`` whose disc drifts by one pixel per frame.
    """

    def __init__(self, n: int, size: int = 64, clip: bool = False, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        self.items = []
        for _ in range(n):
            cx, cy = (torch.rand(2, generator=g) * size / 2 + size / 4).tolist()
            r = float(torch.rand(1, generator=g) * size / 6 + size / 8)
            frames, masks = [], []
            for k in range(3 if clip else 1):
                m = (((xx - cx - k) ** 2 + (yy - cy) ** 2) < r * r).float()[None]
                img = (0.3 + 0.5 * m + 0.2 * torch.randn(1, size, size, generator=g)).repeat(3, 1, 1)
                frames.append(img)
                masks.append(m)
            if clip:
                self.items.append({"image": torch.stack(frames), "label": torch.stack(masks)})
            else:
                self.items.append({"image": frames[0], "label": masks[0]})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def all_foreground_dice(ds: Dataset) -> float:
    """Mean per-item Dice of the trivial predictor that marks every pixel (the best constant prediction here)."""
    scores = []
    for item in ds:
        g = item["label"].reshape(item["label"].shape[0], -1)[0] if item["label"].ndim == 4 else item["label"]
        g = g.flatten()
        scores.append(float(2 * g.sum() / (g.numel() + g.sum())))
    return sum(scores) / len(scores)


def test_discs_shapes():
    img = Discs(2)[0]
    assert img["image"].shape == (3, 64, 64) and img["label"].shape == (1, 64, 64)
    clip = Discs(2, clip=True)[1]
    assert clip["image"].shape == (3, 3, 64, 64) and clip["label"].shape == (3, 1, 64, 64)
    assert 0 < all_foreground_dice(Discs(4)) < 0.5
