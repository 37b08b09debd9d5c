"""DSANet training with the paper recipe (``docs/paper-readings.md``, "DSANet: training recipe").

Adam lr 1e-4, weight decay 5e-4, batch 2, one warm-up epoch then cosine to 1e-6, gradient clipping by value
±0.5, the same random flips for every frame of a clip (the training pipeline of
:class:`usseg_models.transforms.pipeline.ModelPipeline`; optional Gamma speckle), bf16 autocast on CUDA (fp32 on
CPU). Loss: Dice + F3Net structure loss on the target and both auxiliary outputs
(:class:`usseg_models.losses.dsanet_loss.DSANetLoss`).

Several structures (``labels``, a :class:`~usseg_models.labels.LabelSet` of ``n >= 2``): the network gets
``1 + n`` output channels, masks become class indices, the loss terms are the softmax generalisation and the
validation Dice is the mean over structures. One structure keeps every number of the binary path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from usseg_models.labels import LabelSet
from usseg_models.networks.factory import network_spatial_size
from usseg_models.training.common import (
    LabelChoice,
    fit_network,
    pretrained_overrides,
    resolve_datasets,
    training_augmentation,
)
from usseg_models.training.engine import TrainSettings

__all__ = ["train_dsanet", "dsanet_train_step", "dsanet_predict"]


def dsanet_train_step(loss_fn):
    """``(model, batch) -> loss``: training-mode DSANet returns ``(target, aux_t1, aux_t2)``.

    A batch's optional ``"valid"`` ``(B, 3)`` marks which window frames have masks (sparse-frame labels); the
    auxiliary terms of unlabelled frames are then left out (see :class:`~usseg_models.losses.DSANetLoss`).
    """

    def step(model: torch.nn.Module, batch: dict) -> torch.Tensor:
        return loss_fn(model(batch["image"]), batch["label"], batch.get("valid"))

    return step


def dsanet_predict(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode target logits ``(B, C, H, W)`` and the target frame's mask ``(B, 1, H, W)`` (window index 0;
    0/1, or class indices for ``C = 1 + n`` structures)."""
    return model(batch["image"]), batch["label"][:, 0]


def train_dsanet(
    data: str | Path | tuple[Dataset, Dataset | None],
    out_dir: str | Path | None,
    config: str = "small",
    epochs: int = 14,
    batch_size: int = 2,
    device: str | torch.device | None = "auto",
    lr: float = 1e-4,
    weight_decay: float = 5e-4,
    warmup_epochs: float = 1.0,
    grad_clip_value: float | None = 0.5,
    val_fraction: float = 0.2,
    val_split: str | None = None,
    subject_pattern: str | None = None,
    pretrained: str | Path | None = None,
    label_value: int | None = None,
    speckle_L: float | None = None,
    seed: int = 0,
    num_workers: int = 0,
    progress: bool = True,
    amp: bool | None = None,
    overrides: dict[str, Any] | None = None,
    labels: LabelSet | str | None = None,
) -> dict[str, Any]:
    """Train DSANet on clips and write checkpoints/curves to ``out_dir`` (rank 0 only).

    Args:
        data: a folder (any layout of :func:`usseg_models.data.discovery.discover_clips`) or ``(train, val)``
            datasets yielding ``{"image": (3, C, S, S), "label": (3, 1, S, S)}``.
        out_dir: output folder (``best.pt``, ``last.pt``, ``history.json``, ``curves.png``).
        config: ``"small"`` or ``"paper"`` network configuration (its ``spatial_size`` sets the input size).
        epochs, batch_size, lr, weight_decay, warmup_epochs, grad_clip_value: recipe (paper defaults).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        val_fraction: hold-out fraction (by subject) when the data has no ``train``/``val`` split folders.
        val_split: ``"test"`` validates on the data's ``test*`` split folders (VTUS ships no validation split);
            with one subject and no split folders, training runs without validation.
        subject_pattern: regex with one group taking the subject from a clip id (default: the rule of
            :func:`usseg_models.data.records.subject_of`), so one patient's clips stay on one side.
        pretrained: a usseg DSANet checkpoint to fine-tune from, or Res2Net-50 v1b ImageNet weights for the backbone.
        label_value: foreground class in multi-class masks (``None`` = any non-zero).
        speckle_L: add Gamma speckle with ``L`` looks to half the training windows (off by default; the paper
            trains without it).
        seed, num_workers, progress, amp: see :class:`TrainSettings`.
        overrides: DSANet constructor overrides (ablation switches ``use_afsa``, ``use_lgsa``...).
        labels: the structures to segment: a :class:`LabelSet`, ``"1:LV,2:MYO,3:LA"``, or ``"auto"`` (the non-zero
            values of the training masks, named ``label_<v>``); ``None`` = one structure (``label_value``, else
            any non-zero), or a manifest's ``# labels:`` line. Not with ``label_value``. Stored in the
            checkpoints' ``extra["labels"]``.

    Returns:
        The :func:`usseg_models.training.engine.fit` result dict plus ``data`` (split description).

    Examples::

        >>> result = train_dsanet("clips/", "runs/dsanet", config="small", epochs=2)  # doctest: +SKIP
        >>> result["best_dice"], result["best_checkpoint"]  # doctest: +SKIP
    """
    from usseg_models.data.datasets import ClipWindowDataset
    from usseg_models.data.discovery import discover_clips
    from usseg_models.losses.dsanet_loss import DSANetLoss

    size = network_spatial_size("dsanet", config)
    choice = LabelChoice(labels, label_value, data)
    train_ds, val_ds, info = resolve_datasets(
        data, lambda d: discover_clips(d, subject_pattern=subject_pattern),
        lambda recs, aug: ClipWindowDataset(recs, size, augment=training_augmentation("cine", aug, speckle_L),
                                             label_value=label_value, seed=seed, labels=choice.resolve(recs)),
        val_fraction, by_subject=True, seed=seed, val_split=val_split,
    )
    overrides, init_from = pretrained_overrides(pretrained, overrides)
    settings = TrainSettings(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                             optimizer="adam", warmup_epochs=warmup_epochs, min_lr=min(1e-6, lr),
                             grad_clip_value=grad_clip_value, amp=amp, num_workers=num_workers, seed=seed,
                             progress=progress)
    return fit_network("dsanet", config, choice, overrides, init_from, train_ds, val_ds, info,
                       dsanet_train_step(DSANetLoss()), dsanet_predict, settings, out_dir, device)
