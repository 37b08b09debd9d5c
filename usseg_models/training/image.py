"""IntraSense-Net and MONAI UNet baseline training (paper recipe), with k-fold cross-validation.

Recipe (IntraSense-Net paper): 256 px, flips and rotations, batch 4, RMSprop lr 1e-4, weight decay 1e-8
(``optimizer="adam"`` as an option), 5-fold cross-validation. Loss: CE + Dice + L_IW
(:class:`usseg_models.losses.intrasense_loss.IntraSenseLoss`). The UNet baseline trains under the identical
budget (same data, epochs, batch, optimiser, schedule) with CE + Dice (L_IW needs CDR features it does not have).
No warm-up and no gradient clipping by default (the paper names neither); the schedule is cosine to 1e-6.

Several structures (``labels`` with ``n >= 2``): ``1 + n`` output channels, class-index masks, softmax CE + Dice
per structure (and L_IW on the same features), validation Dice = mean over structures (as for DSANet).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
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
from usseg_models.training.splits import kfold_splits

__all__ = ["train_intrasense", "train_unet", "image_train_step", "image_predict"]

logger = logging.getLogger(__name__)


def image_train_step(loss_fn, with_features: bool):
    """``(model, batch) -> loss`` for IntraSense-Net (``return_features=True`` feeds L_IW) or UNet."""

    def step(model: torch.nn.Module, batch: dict) -> torch.Tensor:
        if with_features:
            logits, feats = model(batch["image"], return_features=True)
            return loss_fn(logits, batch["label"], feats)
        return loss_fn(model(batch["image"]), batch["label"])

    return step


def image_predict(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode logits ``(B, C, H, W)`` and the mask ``(B, 1, H, W)`` (0/1, or class indices for several)."""
    return model(batch["image"]), batch["label"]


def train_intrasense(
    data: str | Path | tuple[Dataset, Dataset | None],
    out_dir: str | Path | None,
    config: str = "small",
    model: str = "intrasense",
    epochs: int = 50,
    batch_size: int = 4,
    device: str | torch.device | None = "auto",
    optimizer: str = "rmsprop",
    lr: float = 1e-4,
    weight_decay: float = 1e-8,
    warmup_epochs: float = 0.0,
    grad_clip_value: float | None = None,
    folds: int = 1,
    by_subject: bool = True,
    subject_pattern: str | None = None,
    val_fraction: float = 0.2,
    val_split: str | None = None,
    pretrained: str | Path | None = None,
    label_value: int | None = None,
    speckle_L: float | None = None,
    seed: int = 0,
    num_workers: int = 0,
    progress: bool = True,
    amp: bool | None = None,
    overrides: dict[str, Any] | None = None,
    loss_kwargs: dict[str, Any] | None = None,
    labels: LabelSet | str | None = None,
) -> dict[str, Any]:
    """Train IntraSense-Net (or the UNet baseline with ``model="unet"``) on images.

    Args:
        data: a folder (layouts of :func:`usseg_models.data.discovery.discover_images`) or ``(train, val)``
            datasets yielding ``{"image": (3, S, S), "label": (1, S, S)}``.
        out_dir: output folder; with ``folds > 1`` one ``fold_<k>/`` sub-folder per fold plus ``cv_summary.json``.
        config: ``"small"`` or ``"paper"`` (input size = the configuration's ``spatial_size``; paper = 256 px).
        model: ``"intrasense"`` or ``"unet"``.
        epochs, batch_size, optimizer, lr, weight_decay, warmup_epochs, grad_clip_value: the recipe.
        folds: ``1`` = one hold-out split (or the data's ``train``/``val`` folders); ``k > 1`` = k-fold
            cross-validation over all discovered images.
        by_subject: keep each subject's images in one fold / on one side of the hold-out split.
        subject_pattern: regex with one group taking the subject (patient, study) from a file name; default rule
            of :func:`usseg_models.data.records.subject_of`.
        val_fraction: hold-out fraction when ``folds == 1`` and the data has no split folders.
        val_split: ``"test"`` validates on the data's ``test*`` split folders (VTUS ships no validation split);
            with one subject and no split folders, training runs without validation.
        pretrained: a usseg checkpoint to fine-tune from, or (IntraSense-Net) ImageNet ResNet-50 weights.
        label_value: foreground class in multi-class masks (e.g. 1 = CAMUS LV cavity).
        speckle_L: add Gamma speckle with ``L`` looks to half the training images (off by default).
        seed, num_workers, progress, amp: see :class:`TrainSettings`.
        overrides: network constructor overrides (e.g. ``use_gcp=False`` for the ablation rows).
        loss_kwargs: :class:`IntraSenseLoss` arguments.
        labels: the structures to segment (a :class:`LabelSet`, ``"1:LV,2:MYO,3:LA"`` or ``"auto"``; see
            :func:`usseg_models.training.dsanet.train_dsanet`). Not with ``label_value``.

    Returns:
        For one split, the :func:`fit` result dict (plus ``data``); for k folds, ``{"folds": [...],
        "mean_dice", "std_dice", "summary"}``.

    Raises:
        ValueError: unknown ``model``/``optimizer``, or fewer subjects than folds.
    """
    from usseg_models.data.datasets import ImageSegDataset
    from usseg_models.data.discovery import discover_images
    from usseg_models.losses.intrasense_loss import IntraSenseLoss

    if model not in ("intrasense", "unet"):
        raise ValueError(f"model must be 'intrasense' or 'unet', got {model!r}")
    size = network_spatial_size(model, config)
    choice = LabelChoice(labels, label_value, data)
    overrides, init_from = pretrained_overrides(pretrained, overrides)
    if model == "unet" and pretrained is not None and init_from is None:  # backbone weights
        raise ValueError("the UNet baseline has no ImageNet backbone: --pretrained must be a usseg checkpoint")
    loss_kwargs = dict(loss_kwargs or {})
    if model == "unet":
        loss_kwargs["iw_weight"] = 0.0
    loss_fn = IntraSenseLoss(**loss_kwargs)
    step = image_train_step(loss_fn, with_features=model == "intrasense")
    settings = TrainSettings(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                             optimizer=optimizer, warmup_epochs=warmup_epochs, min_lr=min(1e-6, lr),
                             grad_clip_value=grad_clip_value, amp=amp, num_workers=num_workers, seed=seed,
                             progress=progress)

    def make(recs, aug):
        augment = training_augmentation("image", aug, speckle_L)
        return ImageSegDataset(recs, size, augment=augment, label_value=label_value, seed=seed,
                               labels=choice.resolve(recs))

    def run(train_ds, val_ds, out, info):
        return fit_network(model, config, choice, overrides, init_from, train_ds, val_ds, info, step, image_predict,
                           settings, out, device)

    if folds <= 1:
        train_ds, val_ds, info = resolve_datasets(
            data, lambda d: discover_images(d, subject_pattern=subject_pattern), make, val_fraction, by_subject, seed,
            val_split=val_split,
        )
        return run(train_ds, val_ds, out_dir, info)

    if not isinstance(data, (str, Path)):
        raise ValueError("k-fold cross-validation needs a data folder (records to split), not datasets")
    records = discover_images(Path(data), subject_pattern=subject_pattern)
    choice.resolve(records)  # "auto": the values of every image (each is a training image of some fold)
    results = []
    for k, (tr, va) in enumerate(kfold_splits(records, folds, by_subject, seed)):
        info = {"source": str(data), "fold": k, "folds": folds, "n_train": len(tr), "n_val": len(va),
                "split": f"{folds}-fold {'by subject' if by_subject else 'by image'}"}
        logger.info("fold %d/%d: %d training / %d validation images", k + 1, folds, len(tr), len(va))
        fold_out = Path(out_dir) / f"fold_{k}" if out_dir is not None else None
        results.append(run(make([records[i] for i in tr], True), make([records[i] for i in va], False),
                           fold_out, info))
    dices = np.array([r["best_dice"] for r in results], dtype=float)
    summary = {"network": model, "config": config, "folds": folds, "by_subject": by_subject,
               "fold_best_dice": dices.tolist(), "mean_dice": float(dices.mean()), "std_dice": float(dices.std())}
    if out_dir is not None and results[0]["rank"] == 0:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "cv_summary.json").write_text(json.dumps(summary, indent=2))
    return {"folds": results, "mean_dice": summary["mean_dice"], "std_dice": summary["std_dice"], "summary": summary}


def train_unet(data, out_dir, **kwargs) -> dict[str, Any]:
    """The MONAI UNet baseline under the IntraSense-Net budget (``train_intrasense(..., model="unet")``)."""
    return train_intrasense(data, out_dir, model="unet", **kwargs)
