"""Adapting a copy of DSANet to one clip from its corrected frames (the learning half of clip refinement).

Two recipes, both the training recipe of :mod:`usseg_models.training.dsanet` restricted to the clip — samples are
the DSANet windows ``window_indices(T, t)`` = ``[t, t-1, t-2]`` whose **target** ``t`` has a mask, the auxiliary terms
(``t-1``, ``t-2``) count only where those frames have masks too (``DSANetLoss(..., valid)``), Adam, gradient clipping
by value ±0.5, batch-norm statistics frozen (a handful of frames cannot estimate them):

- :func:`adapt_whole_model` (refinement mode ``"adapt"``): every parameter, frames through the training pipeline
  with its random flips (the same for every frame of a window); the recipe before the hybrid refinement.
- :func:`adapt_heads` (refinement modes ``"hybrid"``): the backbone is frozen, so each frame's backbone pyramid is
  computed **once** (and can be reused between requests of the same clip, :class:`FrameFeatures`) and only what
  comes after it — per-frame decoders, AFSA, LGSA, heads — is trained. About a tenth of the work per step and no
  backbone pass per step; no augmentation (the flips would need a second pyramid per frame).

Both stop after ``max_steps`` optimiser steps, at ``time_budget_s`` seconds or when ``cancel()`` returns True,
whichever comes first, and are deterministic for a seed (torch and numpy generators local to the call).

Several structures (a network with ``1 + n`` output channels, softmax): ``class_indices=True`` and ``label`` holds
**class indices** (0 = background, ``i`` = the ``i``-th structure of the label set), resized to the network size
with nearest-neighbour (the pipeline with ``label_classes=True``); :class:`~usseg_models.losses.dsanet_loss.DSANetLoss`
then scores softmax cross-entropy + per-structure Dice. The caller gives only frames on which **every** pixel's class
is known (:func:`usseg_models.inference.refine.refine_from_corrections` trains on frames corrected for every
structure, never on a frame where some structures were left uncorrected).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from usseg_models.training.step import NonFiniteLoss, optimizer_step
from usseg_models.transforms.clip import window_indices
from usseg_models.transforms.pipeline import Augmentation, ModelPipeline

__all__ = ["AdaptOutcome", "FrameFeatures", "adapt_whole_model", "adapt_heads", "encode_clip", "warm_up"]

logger = logging.getLogger(__name__)


@dataclass
class AdaptOutcome:
    """Steps taken, seconds, what stopped the loop and the loss of every step."""

    steps: int
    seconds: float
    stopped_by: str
    losses: list[float] = field(default_factory=list)


@dataclass
class FrameFeatures:
    """Backbone pyramids of every frame of one clip (``pyramids[t]`` = four maps), from a frozen backbone."""

    pyramids: list[list[torch.Tensor]]
    seconds: float = 0.0


def warm_up() -> None:
    """Pay once, at start-up, what the first adaptation of a process would: creating the first optimiser imports
    ``torch._dynamo`` (about 1 s on a CPU), which an interactive request should not wait for."""
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def _freeze_batchnorm(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _run_steps(step: Callable[[np.ndarray], torch.Tensor], params: Sequence[nn.Parameter], num_targets: int,
               settings, device: torch.device, cancel: Callable[[], bool] | None, amp: bool = False) -> AdaptOutcome:
    """The one optimiser loop of both recipes: ``step(picked window indices) -> loss`` (graph attached), each step
    taken by :func:`usseg_models.training.step.optimizer_step`, as in training."""
    params = list(params)
    optimizer = torch.optim.Adam(params, lr=float(settings.lr), weight_decay=float(settings.weight_decay))
    rng = np.random.default_rng(int(settings.seed))
    losses: list[float] = []
    stopped_by = "no-steps" if int(settings.max_steps) == 0 else "steps"
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(int(settings.seed))
        for _ in range(int(settings.max_steps)):
            if time.perf_counter() - start >= float(settings.time_budget_s):
                stopped_by = "time"
                break
            if cancel is not None and cancel():
                stopped_by = "cancelled"
                break
            pick = rng.integers(0, num_targets, size=int(settings.batch_size))
            try:
                loss = optimizer_step(lambda pick=pick: step(pick), optimizer, params, settings.grad_clip_value,
                                      device, amp)
                losses.append(loss)
            except NonFiniteLoss:
                logger.warning("adaptation stopped at step %d: non-finite loss", len(losses))
                stopped_by = "non-finite-loss"
                break
    return AdaptOutcome(len(losses), time.perf_counter() - start, stopped_by, losses)


def _targets(label: np.ndarray, spatial_size: int, class_indices: bool) -> torch.Tensor:
    """``(X, Y, T)`` label → ``(T, 1, S, S)`` float targets through the pipeline's label stage: {0, 1} masks, or
    class indices (several structures)."""
    return ModelPipeline("cine", spatial_size, label_classes=class_indices).labels(label)


def _windows(num_frames: int, targets: Sequence[int], known: set[int]) -> tuple[list[list[int]], torch.Tensor]:
    windows = [window_indices(num_frames, t) for t in targets]
    valid = torch.tensor([[1.0 if i in known else 0.0 for i in w] for w in windows])
    return windows, valid


def adapt_whole_model(work: nn.Module, cine: np.ndarray, label: np.ndarray, known: Sequence[int], spatial_size: int,
                      settings, device: torch.device, amp: bool = False,
                      cancel: Callable[[], bool] | None = None, class_indices: bool = False) -> AdaptOutcome:
    """Fine-tune every parameter of ``work`` (modified in place) on the frames ``known`` of ``label`` (X, Y, T)
    (0/1 masks, or class indices with ``class_indices``)."""
    from usseg_models.losses.dsanet_loss import DSANetLoss

    augmentation = Augmentation.training("cine") if settings.augment else None
    pipeline = ModelPipeline("cine", spatial_size, augmentation=augmentation, seed=int(settings.seed))
    if class_indices:
        frames, masks = pipeline.base(cine)["image"], _targets(label, spatial_size, True)
    else:
        base = pipeline.base(cine, label)
        frames, masks = base["image"], base["label"]                              # (T, 1, S, S) each
    windows, valid = _windows(int(cine.shape[2]), list(known), set(known))
    loss_fn = DSANetLoss()
    work.to(device).train()
    if settings.freeze_batchnorm:
        _freeze_batchnorm(work)
    for p in work.parameters():
        p.requires_grad_(True)

    def step(pick: np.ndarray) -> torch.Tensor:
        images, labels = zip(*(pipeline.train_sample(frames[windows[i]], masks[windows[i]]) for i in pick))
        x, y, v = torch.stack(images).to(device), torch.stack(labels).to(device), valid[pick].to(device)
        return loss_fn(work(x), y, v)

    outcome = _run_steps(step, list(work.parameters()), len(windows), settings, device, cancel, amp)
    work.eval()
    return outcome


@torch.inference_mode()
def encode_clip(model: nn.Module, cine: np.ndarray, spatial_size: int, device: torch.device,
                batch_size: int = 16) -> FrameFeatures:
    """Backbone pyramids of every frame of a reader cine (the inference pipeline's inputs)."""
    start = time.perf_counter()
    x = ModelPipeline("cine", spatial_size).inputs(cine).to(device)
    model.to(device).eval()
    pyramids: list[list[torch.Tensor]] = []
    for i in range(0, x.shape[0], batch_size):
        feats = model.encode_frame(x[i : i + batch_size])
        pyramids.extend([f[j].clone() for f in feats] for j in range(feats[0].shape[0]))
    return FrameFeatures(pyramids, time.perf_counter() - start)


def adapt_heads(work: nn.Module, features: FrameFeatures, label: np.ndarray, known: Sequence[int], spatial_size: int,
                settings, device: torch.device, cancel: Callable[[], bool] | None = None,
                class_indices: bool = False) -> AdaptOutcome:
    """Train everything after the (frozen) backbone of ``work`` on the frames ``known`` of ``label`` (X, Y, T)
    (0/1 masks, or class indices with ``class_indices``).

    ``features`` must come from ``work``'s own backbone (:func:`encode_clip`).
    """
    from usseg_models.losses.dsanet_loss import DSANetLoss

    masks = _targets(label, spatial_size, class_indices).to(device)              # (T, 1, S, S)
    windows, valid = _windows(int(label.shape[2]), list(known), set(known))
    loss_fn = DSANetLoss()
    work.to(device).train()
    _freeze_batchnorm(work)
    for p in work.backbone.parameters():
        p.requires_grad_(False)
    params = [p for name, p in work.named_parameters() if not name.startswith("backbone.")]
    for p in params:
        p.requires_grad_(True)
    pyr = features.pyramids

    def step(pick: np.ndarray) -> torch.Tensor:
        chosen = [windows[i] for i in pick]
        per_position = [[torch.stack([pyr[w[pos]][lvl] for w in chosen]) for lvl in range(4)] for pos in range(3)]
        y = torch.stack([masks[w] for w in chosen])                                # (B, 3, 1, S, S)
        outputs = work.decode_from_features(*per_position, (spatial_size, spatial_size), return_aux=True)
        return loss_fn(outputs, y, valid[pick].to(device))

    outcome = _run_steps(step, params, len(windows), settings, device, cancel)
    work.eval()
    return outcome
