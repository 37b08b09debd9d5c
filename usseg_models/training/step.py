"""One optimiser step, the same for training (:func:`usseg_models.training.engine.fit`) and clip adaptation
(:mod:`usseg_models.inference.adapt`).

zero the gradients → the loss under bf16 autocast (CUDA only; no GradScaler is needed for bf16) → refuse a
non-finite loss before it reaches the weights → backward → clip gradient values (DSANet's recipe: ±0.5) → step the
optimiser (and the learning-rate schedule, when there is one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn as nn

__all__ = ["NonFiniteLoss", "autocast_context", "optimizer_step"]


class NonFiniteLoss(FloatingPointError):
    """The loss of a step was NaN or infinite; the weights were not changed."""

    def __init__(self, value: float) -> None:
        super().__init__(f"non-finite loss {value}")
        self.value = value


def autocast_context(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when ``enabled`` (no GradScaler needed for bf16); a no-op context otherwise."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


def optimizer_step(compute_loss: Callable[[], torch.Tensor], optimizer: torch.optim.Optimizer,
                   params: Iterable[nn.Parameter], grad_clip_value: float | None, device: torch.device,
                   amp: bool = False, scheduler=None) -> float:
    """Take one step (module docstring) and return the loss.

    Raises:
        NonFiniteLoss: the loss is NaN or infinite (nothing was stepped).
    """
    optimizer.zero_grad(set_to_none=True)
    with autocast_context(device, amp):
        loss = compute_loss()
    if not torch.isfinite(loss):
        raise NonFiniteLoss(float(loss.detach()))
    loss.backward()
    if grad_clip_value is not None:
        nn.utils.clip_grad_value_(params, float(grad_clip_value))
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return float(loss.detach())
