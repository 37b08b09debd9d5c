"""Shared training engine: one loop for DSANet, IntraSense-Net and the UNet baseline.

What differs between models is passed in as two callables: ``train_step(model, batch) -> loss`` and
``predict(model, batch) -> (logits (B, C, H, W), target (B, 1, H, W))`` (``C = 1``: binary target; ``C = 1 + n``:
target of class indices). The engine does the rest the same way
for all of them: optimiser (Adam or RMSprop), per-step warm-up + cosine schedule, gradient clipping by value,
bf16 autocast on CUDA (fp32 on CPU), DistributedDataParallel with a ``DistributedSampler``, validation Dice each
epoch (per image, :mod:`usseg_models.metrics`; the mean over structures for several, :func:`sample_dice`),
best/last checkpoints, ``history.json`` and a curves PNG.
Only rank 0 writes files and shows the tqdm bar.
"""

from __future__ import annotations

import gc
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, RandomSampler
from torch.utils.data.distributed import DistributedSampler

from usseg_models.metrics import per_frame_metrics
from usseg_models.networks.checkpoint import save_checkpoint, unwrap_model
from usseg_models.training.curves import plot_curves
from usseg_models.training.distributed import DistContext, all_reduce_mean, init_distributed
from usseg_models.training.schedule import build_scheduler
from usseg_models.training.step import NonFiniteLoss, autocast_context, optimizer_step

__all__ = ["TrainSettings", "fit", "build_optimizer", "autocast_context", "validation_dice",
           "validation_dice_by_structure", "sample_dice", "structure_dice"]

logger = logging.getLogger(__name__)

TrainStep = Callable[[nn.Module, dict], torch.Tensor]
Predict = Callable[[nn.Module, dict], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class TrainSettings:
    """Optimisation budget and recipe (defaults = DSANet paper recipe).

    Args:
        epochs: passes over the training set.
        batch_size: samples per step **per rank**.
        lr: peak learning rate.
        weight_decay: optimiser weight decay.
        optimizer: ``"adam"`` or ``"rmsprop"``.
        warmup_epochs: linear warm-up length (may be fractional); then cosine to ``min_lr``.
        min_lr: learning-rate floor of the cosine.
        grad_clip_value: clip every gradient element to ``±value`` (``None`` = off).
        amp: bf16 autocast; ``None`` = on for CUDA, off for CPU.
        num_workers: DataLoader workers.
        seed: shuffling / initialisation seed.
        progress: tqdm bar on rank 0.
        channels_last: channels-last memory format on CUDA (4D inputs only).
        find_unused_parameters: passed to DistributedDataParallel (for ablations that leave modules unused).
    """

    epochs: int = 14
    batch_size: int = 2
    lr: float = 1e-4
    weight_decay: float = 5e-4
    optimizer: str = "adam"
    warmup_epochs: float = 1.0
    min_lr: float = 1e-6
    grad_clip_value: float | None = 0.5
    amp: bool | None = None
    num_workers: int = 0
    seed: int = 0
    progress: bool = True
    channels_last: bool = False
    find_unused_parameters: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.optimizer not in ("adam", "rmsprop"):
            raise ValueError(f"optimizer must be 'adam' or 'rmsprop', got {self.optimizer!r}")
        if self.lr <= 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise ValueError(f"need 0 <= min_lr <= lr and lr > 0, got lr={self.lr}, min_lr={self.min_lr}")
        if self.grad_clip_value is not None and self.grad_clip_value <= 0:
            raise ValueError(f"grad_clip_value must be positive or None, got {self.grad_clip_value}")


def build_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    """Adam (DSANet: lr 1e-4, wd 5e-4) or RMSprop (IntraSense-Net: lr 1e-4, wd 1e-8)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if settings.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=settings.lr, weight_decay=settings.weight_decay)
    return torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)


def _to_device(batch: dict, device: torch.device, channels_last: bool) -> dict:
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device, non_blocking=True)
            if channels_last and v.ndim == 4 and v.is_floating_point():
                v = v.contiguous(memory_format=torch.channels_last)
        out[k] = v
    return out


def structure_dice(logits: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """Dice per sample and structure ``(B, n)`` of logits ``(B, C, H, W)`` against their target ``(B, 1, H, W)``.

    ``C = 1``: one column, foreground = logit > 0 against target > 0.5 (the binary score, unchanged). ``C = 1 + n``:
    class = argmax against the target's class indices, each structure ``k = 1..n`` scored as a binary pair (a
    structure absent from both prediction and target scores 1.0, the metrics' empty-mask convention).
    """
    if logits.shape[1] == 1:
        return per_frame_metrics(logits.float() > 0, target > 0.5)["dice"][:, None]
    pred = logits.float().argmax(1)
    truth = target[:, 0].round().long()
    return np.stack([per_frame_metrics(pred == k, truth == k)["dice"] for k in range(1, logits.shape[1])], axis=1)


def sample_dice(logits: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """Dice per sample: :func:`structure_dice` averaged over the structures (unweighted; one structure: its Dice)."""
    return structure_dice(logits, target).mean(axis=1)


@torch.no_grad()
def _validate(model: nn.Module, loader: DataLoader, predict: Predict, device: torch.device, amp: bool,
              channels_last: bool, by_structure: bool = False) -> float | np.ndarray:
    model.eval()
    scores = []
    for batch in loader:
        batch = _to_device(batch, device, channels_last)
        with autocast_context(device, amp):
            logits, target = predict(model, batch)
        scores.append(structure_dice(logits, target) if by_structure else sample_dice(logits, target))
    model.train()
    if by_structure:
        return np.concatenate(scores).mean(axis=0) if scores else np.full(1, np.nan)
    return float(np.concatenate(scores).mean()) if scores else float("nan")


def validation_dice(model: nn.Module, dataset: Dataset, predict: Predict, device: str | torch.device = "cpu",
                    batch_size: int = 4, amp: bool = False) -> float:
    """Mean per-sample Dice of ``model`` on ``dataset`` — the same score :func:`fit` reports as ``val_dice`` (for
    several structures the per-sample mean over structures, :func:`sample_dice`).

    Used to compare two models (a retrained candidate and the live model) on one fixed validation set.
    """
    dev = torch.device(device)
    loader = DataLoader(dataset, batch_size=max(1, int(batch_size)), shuffle=False)
    model = unwrap_model(model).to(dev)
    was_training = model.training
    score = _validate(model, loader, predict, dev, amp, channels_last=False)
    model.train(was_training)
    return score


def validation_dice_by_structure(model: nn.Module, dataset: Dataset, predict: Predict,
                                 device: str | torch.device = "cpu", batch_size: int = 4,
                                 amp: bool = False) -> list[float]:
    """Mean Dice of each structure (label-value order) of ``model`` on ``dataset``; their mean is
    :func:`validation_dice`'s score (one structure: a one-element list)."""
    dev = torch.device(device)
    loader = DataLoader(dataset, batch_size=max(1, int(batch_size)), shuffle=False)
    model = unwrap_model(model).to(dev)
    was_training = model.training
    scores = _validate(model, loader, predict, dev, amp, channels_last=False, by_structure=True)
    model.train(was_training)
    return [float(v) for v in scores]


def fit(
    model: nn.Module,
    train_ds: Dataset,
    val_ds: Dataset | None,
    train_step: TrainStep,
    predict: Predict,
    settings: TrainSettings,
    out_dir: str | Path | None,
    network: str,
    config: str,
    overrides: dict[str, Any] | None = None,
    device: str | torch.device | None = "auto",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``model`` and return a result dict.

    Args:
        model: the network (plain module; wrapped in DDP here when the process group has several ranks).
        train_ds: training dataset yielding dicts of tensors.
        val_ds: validation dataset (``None`` = no validation; the last epoch is then "best").
        train_step: ``(model, batch) -> scalar loss`` (runs under autocast).
        predict: ``(model, batch) -> (logits (B, C, H, W), target (B, 1, H, W))`` in eval mode.
        settings: recipe and budget.
        out_dir: where rank 0 writes ``best.pt``, ``last.pt``, ``history.json``, ``curves.png`` (``None`` = nowhere).
        network, config, overrides: stored in checkpoints so :func:`load_checkpoint` can rebuild the model.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``.
        extra: stored in checkpoints (e.g. data description, fold).

    Returns:
        dict with ``history`` (per epoch: ``epoch``, ``train_loss``, ``val_dice``, ``lr``, ``seconds``),
        ``best_dice``, ``best_epoch``, ``initial_val_dice`` (before training), ``best_checkpoint``,
        ``last_checkpoint``, ``curves``, ``rank``, ``world_size``, ``device``.
    """
    ctx: DistContext = init_distributed(device)
    dev = ctx.device
    amp = settings.amp if settings.amp is not None else dev.type == "cuda"
    channels_last = settings.channels_last and dev.type == "cuda"
    torch.manual_seed(settings.seed)
    model = model.to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    ddp_model: nn.Module = model
    if ctx.distributed:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None,
            find_unused_parameters=settings.find_unused_parameters,
        )
    gen = torch.Generator().manual_seed(settings.seed)
    sampler = (
        DistributedSampler(train_ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=settings.seed)
        if ctx.distributed else RandomSampler(train_ds, generator=gen)
    )
    from usseg_models.data.datasets import worker_init_fn

    loader = DataLoader(train_ds, batch_size=settings.batch_size, sampler=sampler, drop_last=len(train_ds) >
                        settings.batch_size * ctx.world_size, num_workers=settings.num_workers,
                        worker_init_fn=worker_init_fn, pin_memory=dev.type == "cuda")
    val_loader = (DataLoader(val_ds, batch_size=max(1, settings.batch_size), shuffle=False,
                             num_workers=settings.num_workers) if val_ds is not None and len(val_ds) else None)
    optimizer = build_optimizer(model, settings)
    steps_per_epoch = max(1, len(loader))
    total = steps_per_epoch * settings.epochs
    scheduler = build_scheduler(optimizer, total, int(round(settings.warmup_epochs * steps_per_epoch)),
                                settings.min_lr)
    out = Path(out_dir) if out_dir is not None else None
    write = ctx.is_main and out is not None
    if write:
        out.mkdir(parents=True, exist_ok=True)
    initial = _validate(unwrap_model(ddp_model), val_loader, predict, dev, amp, channels_last) if val_loader else None
    history: list[dict] = []
    best_dice, best_epoch = -1.0, 0
    best_path = out / "best.pt" if write else None
    last_path = out / "last.pt" if write else None
    meta = {"settings": asdict(settings), "world_size": ctx.world_size, **(extra or {})}
    use_bar = settings.progress and ctx.is_main
    if use_bar:
        from tqdm.auto import tqdm
    ddp_model.train()
    for epoch in range(1, settings.epochs + 1):
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        t0, losses = time.perf_counter(), []
        it = tqdm(loader, desc=f"{network} epoch {epoch}/{settings.epochs}", leave=False) if use_bar else loader
        for batch in it:
            batch = _to_device(batch, dev, channels_last)
            try:
                losses.append(optimizer_step(lambda batch=batch: train_step(ddp_model, batch), optimizer,
                                             model.parameters(), settings.grad_clip_value, dev, amp, scheduler))
            except NonFiniteLoss as exc:
                raise FloatingPointError(f"non-finite loss {exc.value} at epoch {epoch}; lower the learning rate") \
                    from exc
            if use_bar:
                it.set_postfix(loss=f"{losses[-1]:.4f}")
        train_loss = all_reduce_mean(float(np.mean(losses)) if losses else float("nan"), ctx)
        val_dice = (_validate(unwrap_model(ddp_model), val_loader, predict, dev, amp, channels_last)
                    if val_loader else float("nan"))
        rec = {"epoch": epoch, "train_loss": train_loss, "val_dice": val_dice,
               "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - t0}
        history.append(rec)
        if ctx.is_main:
            logger.info("%s epoch %d/%d: train loss %.4f, val Dice %.4f (%.1f s)", network, epoch,
                        settings.epochs, train_loss, val_dice, rec["seconds"])
        score = val_dice if val_loader else -float(train_loss)
        improved = score > best_dice or best_epoch == 0
        if improved:
            best_dice, best_epoch = score, epoch
        if write:
            info = {**meta, "epoch": epoch, "val_dice": val_dice, "train_loss": train_loss}
            save_checkpoint(last_path, model, network, config, overrides, info)
            if improved:
                save_checkpoint(best_path, model, network, config, overrides, info)
    curves = None
    if write:
        (out / "history.json").write_text(json.dumps({"network": network, "config": config,
                                                       "initial_val_dice": initial, "history": history}, indent=2))
        curves = plot_curves(history, out / "curves.png", title=f"{network} ({config})")
    result = {
        "history": history,
        "best_dice": best_dice if val_loader else float("nan"),
        "best_epoch": best_epoch,
        "initial_val_dice": initial,
        "best_checkpoint": best_path,
        "last_checkpoint": last_path,
        "curves": curves,
        "rank": ctx.rank,
        "world_size": ctx.world_size,
        "device": str(dev),
        "model": model,
    }
    if ddp_model is not model:
        # Free DDP's Reducer while the process group is still registered. Left to the end of this frame, the Reducer
        # can hold the group's last reference; its destructor then joins gloo's worker threads with the GIL held
        # while a worker waits for the GIL to free a finished all-reduce: a deadlock (torch 2.13, 1 hang in 25
        # two-rank CPU runs). The group itself is released by ``ctx.close`` through torch's GIL-free destructor.
        ddp_model = None
        gc.collect()
    ctx.close()
    return result
