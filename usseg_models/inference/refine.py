"""Clip refinement: adapt a copy of DSANet to one cine from a few frames the user corrected, then re-segment it.

DSANet takes no prompts, but the frames of one clip are highly alike (consecutive-frame Dice of real truth is
about 0.95), so a short fine-tune of a **copy** of the model on the corrected frames carries the correction to
the rest of the clip. The recipe is the training recipe of :mod:`usseg_models.training.dsanet`, restricted to
the clip:

- samples are the DSANet windows ``window_indices(T, t)`` = ``[t, t-1, t-2]`` whose **target** ``t`` is a corrected
  frame; the auxiliary terms (``t-1``, ``t-2``) count only where those frames are corrected too
  (``DSANetLoss(..., valid)``), so uncorrected frames are input context, never a target;
- the training pipeline (:class:`~usseg_models.transforms.pipeline.ModelPipeline` with
  :meth:`~usseg_models.transforms.pipeline.Augmentation.training`): the same random flips for every frame and mask
  of a window;
- Adam, gradient clipping by value ±0.5 as in training; batch-norm statistics are frozen (a handful of frames
  cannot estimate them, and the base model's statistics describe ultrasound better);
- bounded by ``max_steps`` optimiser steps **and** a wall-clock ``time_budget_s`` (whichever comes first);
- deterministic for a given ``seed`` (torch and numpy generators local to the call).

Then every frame is predicted by :class:`~usseg_models.inference.video.DSANetPredictor` with the adapted copy,
and the corrected frames are returned exactly as the user drew them. The model passed in is never modified.

Examples::

    >>> from usseg_models.networks import build_network
    >>> net = build_network("dsanet", "small")
    >>> cine = np.random.randint(0, 255, (80, 70, 6), dtype=np.uint8)
    >>> fix = np.zeros((80, 70), np.uint8); fix[20:40, 30:50] = 1
    >>> result = refine_clip(net, cine, {2: fix}, spatial_size=64, settings=RefineSettings(max_steps=2))
    >>> result.masks.shape, bool((result.masks[..., 2] == fix).all()), result.steps
    ((80, 70, 6), True, 2)
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from usseg_models.errors import UssegError
from usseg_models.networks.checkpoint import unwrap_model
from usseg_models.transforms.clip import window_indices
from usseg_models.transforms.pipeline import Augmentation, ModelPipeline

__all__ = ["RefineSettings", "RefineResult", "RefinementError", "check_corrections", "refine_clip"]

logger = logging.getLogger(__name__)


class RefinementError(UssegError, ValueError):
    """The corrected frames do not fit the cine (message names the problem: index, shape or values)."""


@dataclass
class RefineSettings:
    """Budget and recipe of one refinement.

    Attributes:
        max_steps: optimiser steps at most (each on ``batch_size`` windows).
        time_budget_s: wall-clock seconds for the adaptation at most (prediction of the clip comes on top).
        lr: Adam learning rate.
        batch_size: windows per step (drawn with replacement from the corrected targets).
        weight_decay: Adam weight decay (the training recipe's).
        grad_clip_value: clip gradients by value (``None`` = off).
        augment: random flips, the same for every frame of a window.
        freeze_batchnorm: keep batch-norm layers in eval mode while adapting.
        seed: random seed (sampling and augmentation).
    """

    max_steps: int = 40
    time_budget_s: float = 10.0
    lr: float = 3e-4
    batch_size: int = 2
    weight_decay: float = 5e-4
    grad_clip_value: float | None = 0.5
    augment: bool = True
    freeze_batchnorm: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if int(self.max_steps) < 0:
            raise ValueError(f"max_steps must be >= 0, got {self.max_steps}")
        if not float(self.time_budget_s) >= 0:  # also refuses NaN
            raise ValueError(f"time_budget_s must be >= 0, got {self.time_budget_s}")
        if not float(self.lr) > 0 or not np.isfinite(float(self.lr)):
            raise ValueError(f"lr must be a positive finite number, got {self.lr}")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass
class RefineResult:
    """What :func:`refine_clip` returns.

    Attributes:
        masks: uint8 {0, 1} label volume ``(X, Y, T)``; the corrected frames equal the user's masks.
        steps: optimiser steps taken.
        seconds: wall-clock seconds of the adaptation (``predict_seconds`` for the clip prediction).
        stopped_by: ``"steps"`` or ``"time"`` (or ``"no-steps"`` when ``max_steps`` is 0).
        losses: training loss of every step.
    """

    masks: np.ndarray
    steps: int
    seconds: float
    predict_seconds: float
    stopped_by: str
    corrected_frames: list[int]
    losses: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (for server responses and benchmarks)."""
        return {
            "corrected_frames": list(self.corrected_frames),
            "steps": int(self.steps),
            "seconds": round(float(self.seconds), 3),
            "predict_seconds": round(float(self.predict_seconds), 3),
            "stopped_by": self.stopped_by,
            "final_loss": round(float(self.losses[-1]), 5) if self.losses else None,
        }


def check_corrections(corrected: Mapping[int, Any], num_frames: int, xy: tuple[int, int]) -> dict[int, np.ndarray]:
    """Validate ``{frame index: mask}`` against a cine of ``num_frames`` frames of size ``xy``.

    Masks must be ``(X, Y)`` with only the values 0 and 1 (booleans accepted), finite, and indices must lie in
    ``[0, num_frames)``; at least one frame is needed.

    Returns:
        ``{index: uint8 mask}`` sorted by index.

    Raises:
        RefinementError: naming the first problem found (expected vs got).
    """
    if not corrected:
        raise RefinementError("no corrected frames given: refinement needs at least one corrected frame")
    out: dict[int, np.ndarray] = {}
    for key, mask in corrected.items():
        try:
            t = int(key)
        except (TypeError, ValueError):
            raise RefinementError(f"corrected frame index {key!r} is not an integer") from None
        if isinstance(key, float) and key != t:
            raise RefinementError(f"corrected frame index {key!r} is not an integer")
        if not 0 <= t < num_frames:
            raise RefinementError(f"corrected frame {t} is outside the cine's frames 0..{num_frames - 1}")
        arr = np.asarray(mask)
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if tuple(arr.shape) != tuple(xy):
            raise RefinementError(f"the mask of corrected frame {t} is {tuple(arr.shape)}, the cine's frames are {xy}")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise RefinementError(f"the mask of corrected frame {t} holds NaN or infinite values")
        values = np.unique(arr)
        if not np.isin(values, (0, 1)).all():
            bad = [v.item() for v in values if v not in (0, 1)][:5]
            raise RefinementError(f"the mask of corrected frame {t} must hold only 0 and 1, found {bad}")
        out[t] = arr.astype(np.uint8)
    return dict(sorted(out.items()))


def _frozen_batchnorm_train(model: nn.Module, freeze: bool) -> None:
    model.train()
    if freeze:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def refine_clip(
    model: nn.Module,
    cine: Any,
    corrected: Mapping[int, Any],
    spatial_size: int,
    settings: RefineSettings | None = None,
    device: str | torch.device = "cpu",
    amp: bool = False,
    cancel: Callable[[], bool] | None = None,
    copy_model: bool = True,
) -> RefineResult:
    """Adapt a copy of ``model`` to ``cine`` from the ``corrected`` frames and segment every frame.

    Args:
        model: a DSANet (not modified; a deep copy is adapted).
        cine: reader cine ``(X, Y, T)`` or ``(X, Y, T, 3)``.
        corrected: ``{frame index: (X, Y) mask in {0, 1}}`` — any frames, anywhere in the clip, at least one.
        spatial_size: the network input size of the model's configuration.
        settings: budget and recipe (:class:`RefineSettings`).
        device: torch device; ``amp`` runs bf16 autocast (CUDA).
        cancel: optional callable; when it returns True the adaptation stops early (the clip is still predicted).
        copy_model: adapt a deep copy (default). ``False`` adapts ``model`` itself — only for a caller that already
            made its own copy (the server snapshots its network under a lock).

    Returns:
        :class:`RefineResult` whose ``masks[..., t]`` equal ``corrected[t]`` exactly.

    Raises:
        RefinementError: corrections that do not fit the cine (see :func:`check_corrections`).
    """
    from usseg_models.inference.video import DSANetPredictor
    from usseg_models.losses.dsanet_loss import DSANetLoss

    settings = settings or RefineSettings()
    arr = cine.detach().cpu().numpy() if isinstance(cine, torch.Tensor) else np.asarray(cine)
    if arr.ndim not in (3, 4):
        raise RefinementError(f"a cine must be (X, Y, T) or (X, Y, T, 3), got {arr.shape}")
    xy, n = (int(arr.shape[0]), int(arr.shape[1])), int(arr.shape[2])
    fixes = check_corrections(corrected, n, xy)
    dev = torch.device(device)

    label = np.zeros((*xy, n), np.uint8)
    for t, m in fixes.items():
        label[..., t] = m
    augmentation = Augmentation.training("cine") if settings.augment else None
    pipeline = ModelPipeline("cine", spatial_size, augmentation=augmentation, seed=int(settings.seed))
    base = pipeline.base(arr, label)
    frames, masks = base["image"], base["label"]                                  # (T, 1, S, S) each
    known = set(fixes)
    windows = [window_indices(n, t) for t in fixes]
    valid = torch.tensor([[1.0 if i in known else 0.0 for i in w] for w in windows])

    work = (copy.deepcopy(unwrap_model(model)) if copy_model else unwrap_model(model)).to(dev)
    for p in work.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(work.parameters(), lr=float(settings.lr), weight_decay=float(settings.weight_decay))
    loss_fn = DSANetLoss()
    rng = np.random.default_rng(int(settings.seed))
    losses: list[float] = []
    stopped_by = "no-steps" if int(settings.max_steps) == 0 else "steps"
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(int(settings.seed))
        _frozen_batchnorm_train(work, settings.freeze_batchnorm)
        for _ in range(int(settings.max_steps)):
            if time.perf_counter() - start >= float(settings.time_budget_s):
                stopped_by = "time"
                break
            if cancel is not None and cancel():
                stopped_by = "cancelled"
                break
            pick = rng.integers(0, len(windows), size=int(settings.batch_size))
            images, labels = [], []
            for i in pick:
                img, lab = pipeline.train_sample(frames[windows[i]], masks[windows[i]])
                images.append(img)
                labels.append(lab)
            x, y, v = torch.stack(images).to(dev), torch.stack(labels).to(dev), valid[pick].to(dev)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp and dev.type == "cuda"):
                loss = loss_fn(work(x), y, v)
            if not torch.isfinite(loss):
                logger.warning("refinement stopped at step %d: non-finite loss", len(losses))
                stopped_by = "non-finite-loss"
                break
            loss.backward()
            if settings.grad_clip_value is not None:
                nn.utils.clip_grad_value_(work.parameters(), float(settings.grad_clip_value))
            optimizer.step()
            losses.append(float(loss.detach()))
    seconds = time.perf_counter() - start
    work.eval()
    t0 = time.perf_counter()
    out = DSANetPredictor(work, spatial_size, dev, amp=amp).predict_clip(arr)
    predict_seconds = time.perf_counter() - t0
    for t, m in fixes.items():
        out[..., t] = m
    logger.info("refined a %d-frame clip from %d corrected frame(s): %d steps in %.1f s (%s)",
                n, len(fixes), len(losses), seconds, stopped_by)
    del work, optimizer
    return RefineResult(out, len(losses), seconds, predict_seconds, stopped_by, sorted(fixes), losses)
