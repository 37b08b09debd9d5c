"""torch.distributed helpers: data-parallel training launched by ``torchrun`` (or any launcher setting the env).

``torchrun --nproc_per_node N -m usseg_models.cli.main train ...`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` then joins the process group (NCCL on CUDA, gloo on
CPU). Only rank 0 writes files and shows progress bars.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from usseg_models.errors import UssegError

__all__ = ["DeviceError", "DistContext", "init_distributed", "resolve_device", "all_reduce_mean"]

logger = logging.getLogger(__name__)


class DeviceError(UssegError, ValueError):
    """The requested device does not exist on this machine."""


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: ``rank``/``world_size`` (1 when not distributed), its ``device``."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        """Leave the process group if :func:`init_distributed` created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def resolve_device(device: str | torch.device | None = "auto", local_rank: int = 0) -> torch.device:
    """``"auto"``/``None`` → CUDA when available else CPU; ``"cuda"`` under DDP → ``cuda:<local_rank>``.

    Raises:
        DeviceError: when CUDA is requested but not available, or the device name is unknown.
    """
    if device is None or str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except RuntimeError as exc:
        raise DeviceError(f"unknown device {device!r} (use auto, cpu or cuda)") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("device 'cuda' requested but CUDA is not available (use --device cpu)")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def init_distributed(device: str | torch.device | None = "auto") -> DistContext:
    """Join the process group described by the environment (no-op for a single process).

    Args:
        device: requested device; under DDP each rank uses ``cuda:LOCAL_RANK`` when CUDA is chosen.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    owns = False
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
        owns = True
        logger.info("rank %d/%d joined the %s process group on %s", rank, world_size, backend, dev)
    elif dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return DistContext(rank, world_size, local_rank, dev, owns)


def all_reduce_mean(value: float, ctx: DistContext) -> float:
    """Average a Python float over ranks (identity without DDP)."""
    if not ctx.distributed:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return float(t.item() / ctx.world_size)
