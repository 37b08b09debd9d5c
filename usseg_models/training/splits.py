"""Train/validation splits: k-fold cross-validation and hold-out fractions, optionally grouped by subject.

Grouping keeps every image (or clip) of one subject (a patient, a study) on the same side of a split, so the
validation Dice is not inflated by near-duplicates of training images (HC18 has several images per subject,
CAMUS four per patient). Subjects come from the records' ``subject`` field
(:func:`usseg_models.data.records.subject_of`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["kfold_splits", "holdout_split", "split_by_folder", "subject_groups"]


def subject_groups(records: Sequence[Any], by_subject: bool = True) -> dict[str, list[int]]:
    """Record indices per subject (``by_subject``) or one group per record."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        key = (getattr(r, "subject", "") or getattr(r, "id", str(i))) if by_subject else f"#{i}"
        groups.setdefault(key, []).append(i)
    return groups


def kfold_splits(
    records: Sequence[Any], folds: int = 5, by_subject: bool = True, seed: int = 0
) -> list[tuple[list[int], list[int]]]:
    """``folds`` (train indices, validation indices) pairs; validation parts are disjoint and cover all records.

    Subjects are shuffled with ``seed`` and dealt greedily to the fold with the fewest records so far (largest
    subjects first), which keeps fold sizes balanced.

    Raises:
        ValueError: when ``folds < 2`` or there are fewer groups than folds.
    """
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    groups = subject_groups(records, by_subject)
    if len(groups) < folds:
        raise ValueError(f"{len(groups)} {'subjects' if by_subject else 'records'} cannot fill {folds} folds")
    rng = np.random.default_rng(seed)
    keys = list(groups)
    rng.shuffle(keys)
    keys.sort(key=lambda k: -len(groups[k]))  # stable: ties keep the shuffled order
    fold_items: list[list[int]] = [[] for _ in range(folds)]
    for k in keys:
        target = min(range(folds), key=lambda f: len(fold_items[f]))
        fold_items[target].extend(groups[k])
    out = []
    for f in range(folds):
        val = sorted(fold_items[f])
        val_set = set(val)
        out.append(([i for i in range(len(records)) if i not in val_set], val))
    return out


def holdout_split(
    records: Sequence[Any], val_fraction: float = 0.2, by_subject: bool = True, seed: int = 0
) -> tuple[list[int], list[int]]:
    """One (train, validation) split with about ``val_fraction`` of the records in validation (≥ 1 group).

    Raises:
        ValueError: when ``val_fraction`` is outside ``[0, 1)`` or a non-zero fraction leaves nothing to train on.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if val_fraction == 0:
        return list(range(len(records))), []
    groups = subject_groups(records, by_subject)
    if len(groups) < 2:
        raise ValueError("a validation split needs at least two subjects (or set val_fraction to 0)")
    keys = list(groups)
    np.random.default_rng(seed).shuffle(keys)
    want = max(1, int(round(val_fraction * len(records))))
    val: list[int] = []
    for k in keys[:-1]:  # always leave one group for training
        if len(val) >= want:
            break
        val.extend(groups[k])
    val_set = set(val)
    return [i for i in range(len(records)) if i not in val_set], sorted(val)


def split_by_folder(records: Sequence[Any]) -> tuple[list[int], list[int]] | None:
    """Use the data's own split folders when present: ``train*`` → train, ``val*``/``valid*`` → validation.

    Returns ``None`` when the records do not carry both a training and a validation split.
    """
    train = [i for i, r in enumerate(records) if (getattr(r, "split", None) or "").lower().startswith("train")]
    val = [i for i, r in enumerate(records) if (getattr(r, "split", None) or "").lower().startswith("val")]
    return (train, val) if train and val else None
