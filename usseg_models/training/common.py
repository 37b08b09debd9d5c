"""Pieces the model-specific trainers share: data resolution, pretrained weights, settings from arguments."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch.nn as nn
from torch.utils.data import Dataset

from usseg_models.errors import CheckpointError, UssegError
from usseg_models.training.splits import holdout_split, split_by_folder, subject_groups
from usseg_models.transforms.pipeline import Augmentation

__all__ = ["resolve_datasets", "apply_pretrained", "is_usseg_checkpoint", "training_augmentation"]

logger = logging.getLogger(__name__)


def resolve_datasets(
    data: str | Path | tuple[Dataset, Dataset | None] | Dataset,
    discover: Callable[[Path], Sequence[Any]],
    make: Callable[[Sequence[Any], bool], Dataset],
    val_fraction: float,
    by_subject: bool,
    seed: int,
    val_split: str | None = None,
) -> tuple[Dataset, Dataset | None, dict[str, Any]]:
    """Turn ``data`` (a folder, a dataset, or a ``(train, val)`` pair) into training and validation datasets.

    A folder is discovered with ``discover``; its own ``train``/``val`` split folders are used when present,
    otherwise a hold-out of ``val_fraction`` (by subject when ``by_subject``) drawn from everything but ``test*``
    split folders (VTUS ships ``Train``/``Test`` without a validation folder: its test clips stay unseen).
    ``val_split="test"`` validates on the ``test*`` split folders instead (all the rest trains). With a single
    subject to draw from there is no hold-out: everything trains, with no validation (a warning says so, and the
    returned ``split`` too). ``make(records, augment)`` builds a dataset (augmentation only for training).

    Raises:
        UssegError: ``val_split`` is not ``None``/``"test"``, or ``"test"`` and the folder has no test split.
    """
    if isinstance(data, tuple):
        return data[0], data[1], {"source": "datasets"}
    if isinstance(data, Dataset):
        return data, None, {"source": "dataset"}
    if val_split not in (None, "test"):
        raise UssegError(f"--val-split {val_split}: the only choice is 'test' (validate on the test split folders)")
    records = list(discover(Path(data)))
    is_test = [(getattr(r, "split", None) or "").lower().startswith("test") for r in records]
    split = split_by_folder(records) if val_split is None else None
    how = "split folders"
    if val_split == "test":
        if not any(is_test) or all(is_test):
            raise UssegError(f"--val-split test: {data} has no test split folder beside its training data")
        split = ([i for i, t in enumerate(is_test) if not t], [i for i, t in enumerate(is_test) if t])
        how = "validation on the test split folders"
    elif split is None:
        # a test split (VTUS ships Train/ + Test/, no validation folder) is never trained or validated on
        pool = [i for i, t in enumerate(is_test) if not t] or list(range(len(records)))
        subjects = len(subject_groups([records[i] for i in pool], by_subject))
        if val_fraction > 0 and subjects < 2:
            logger.warning("%s: one %s to train on, so no validation hold-out: training on it without validation "
                           "(checkpoints are kept by training loss; --val-split test validates on a test split)",
                           data, "subject" if by_subject else "item")
            split = (pool, [])
            how = f"no validation (one {'subject' if by_subject else 'item'})"
        else:
            tr_sub, va_sub = holdout_split([records[i] for i in pool], val_fraction, by_subject, seed)
            split = ([pool[i] for i in tr_sub], [pool[i] for i in va_sub])
            how = f"hold-out {val_fraction:.2f} {'by subject' if by_subject else 'by item'}"
        if len(pool) < len(records):
            how += f"; {len(records) - len(pool)} item(s) of test split folders left out"
    tr, va = split
    logger.info("%s: %d training / %d validation items (%s)", data, len(tr), len(va), how)
    train_ds = make([records[i] for i in tr], True)
    val_ds = make([records[i] for i in va], False) if va else None
    return train_ds, val_ds, {"source": str(data), "split": how, "n_train": len(tr), "n_val": len(va)}


def apply_pretrained(model: nn.Module, path: str | Path) -> None:
    """Load a usseg checkpoint's weights into ``model`` (fine-tuning), strictly.

    Raises:
        CheckpointError: when the file is not a usseg checkpoint or its keys do not match.
    """
    from usseg_models.networks.checkpoint import load_weights

    payload = load_weights(model, path)
    logger.info("initialised from %s (%s/%s)", path, payload["network"], payload["config"])


def is_usseg_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a usseg checkpoint (else it is taken as backbone ImageNet weights)."""
    from usseg_models.networks.checkpoint import read_checkpoint

    try:
        read_checkpoint(path)
    except CheckpointError:
        return False
    return True


def training_augmentation(kind: str, augment: bool, speckle_L: float | None = None) -> Augmentation | bool:
    """The random stage of a training set: ``False`` for validation sets, else :meth:`Augmentation.training` of the
    model kind (``"cine"`` or ``"image"``) with optional Gamma speckle of ``speckle_L`` looks."""
    return Augmentation.training(kind, speckle_L=speckle_L) if augment else False
