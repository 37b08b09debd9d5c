"""Learning-rate schedule of the DSANet recipe: linear warm-up, then cosine decay to a floor (stepped per batch)."""

from __future__ import annotations

import math

import torch

__all__ = ["warmup_cosine_lambda", "build_scheduler"]


def warmup_cosine_lambda(total_steps: int, warmup_steps: int, base_lr: float, min_lr: float):
    """Multiplier of ``base_lr`` at optimiser step ``s``.

    ``s < warmup``: ``(s + 1) / warmup`` (linear ramp to ``base_lr``); afterwards
    ``min_lr + (base_lr - min_lr) · (1 + cos(π · p)) / 2`` with ``p`` the fraction of post-warm-up steps done.

    Raises:
        ValueError: for non-positive ``total_steps``/``base_lr`` or ``min_lr > base_lr``.
    """
    if total_steps < 1 or base_lr <= 0 or min_lr < 0 or min_lr > base_lr:
        raise ValueError(f"bad schedule: total_steps={total_steps}, base_lr={base_lr}, min_lr={min_lr}")
    warmup_steps = max(0, min(int(warmup_steps), total_steps - 1))
    floor = min_lr / base_lr

    def fn(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps - 1)
        p = min(1.0, (step - warmup_steps) / span)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p))

    return fn


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, min_lr: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step :class:`LambdaLR` with :func:`warmup_cosine_lambda` for the optimiser's first group lr."""
    base = optimizer.param_groups[0]["lr"]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine_lambda(total_steps, warmup_steps, base, min_lr))
