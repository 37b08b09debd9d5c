"""Pieces the model-specific trainers share: data resolution, pretrained weights, settings from arguments."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from usseg_models.errors import CheckpointError, UssegError
from usseg_models.labels import LabelSet, LabelSetError, parse_labels
from usseg_models.networks.factory import build_network
from usseg_models.training.engine import Predict, TrainSettings, TrainStep, fit
from usseg_models.training.splits import holdout_split, split_by_folder, subject_groups
from usseg_models.transforms.pipeline import Augmentation

__all__ = [
    "resolve_datasets",
    "apply_pretrained",
    "is_usseg_checkpoint",
    "training_augmentation",
    "check_label_options",
    "LabelChoice",
    "label_overrides",
    "pretrained_overrides",
    "fit_network",
]

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


def pretrained_overrides(pretrained: str | Path | None, overrides: dict[str, Any] | None
                         ) -> tuple[dict[str, Any], str | Path | None]:
    """Where a run's ``pretrained`` weights go: backbone ImageNet weights (any file that is not a usseg checkpoint)
    into a copy of the network ``overrides`` as ``pretrained_path``; a usseg checkpoint is returned, to fine-tune
    the built network from (:func:`fit_network`). Returns ``(overrides, usseg checkpoint or None)``."""
    overrides = dict(overrides or {})
    if pretrained is None or is_usseg_checkpoint(pretrained):
        return overrides, pretrained
    overrides["pretrained_path"] = str(pretrained)
    return overrides, None


def training_augmentation(kind: str, augment: bool, speckle_L: float | None = None) -> Augmentation | bool:
    """The random stage of a training set: ``False`` for validation sets, else :meth:`Augmentation.training` of the
    model kind (``"cine"`` or ``"image"``) with optional Gamma speckle of ``speckle_L`` looks."""
    return Augmentation.training(kind, speckle_L=speckle_L) if augment else False


class LabelOptionError(UssegError, LabelSetError):
    """Conflicting or malformed label options of a training run (``labels`` / ``label_value``)."""


def check_label_options(labels: LabelSet | str | None, label_value: int | None) -> LabelSet | str | None:
    """Validate a run's label options: ``labels`` is a :class:`LabelSet`, a ``"1:LV,2:MYO"`` string, ``"auto"``
    (the non-zero values found in the training masks) or ``None`` (binary, as before label sets).

    Raises:
        LabelOptionError: both ``labels`` and ``label_value`` given, or a malformed ``labels`` string.
    """
    if labels is not None and label_value is not None:
        raise LabelOptionError("give either --labels (several structures) or --label-value (one class), not both")
    if isinstance(labels, str):
        if labels.strip().lower() == "auto":
            return "auto"
        try:
            return parse_labels(labels)
        except LabelSetError as exc:
            raise LabelOptionError(f"--labels {labels!r}: {exc}") from exc
    if labels is not None and not isinstance(labels, LabelSet):
        raise LabelOptionError(f"labels must be a LabelSet, a 'value:name,...' string or 'auto', got {labels!r}")
    return labels


class LabelChoice:
    """The label set of one training run, settled when the first (training) records are seen.

    ``"auto"`` becomes :meth:`LabelSet.from_values` of the non-zero values in the training masks; ``None`` with a
    manifest that has a ``# labels:`` line (and no ``label_value``) becomes that line's set; otherwise as given.
    """

    def __init__(self, labels: LabelSet | str | None, label_value: int | None, data: Any = None) -> None:
        self.labels = check_label_options(labels, label_value)
        self.label_value = label_value
        if self.labels is None and label_value is None and isinstance(data, (str, Path)) \
                and Path(data).is_file() and Path(data).suffix.lower() == ".csv":
            from usseg_models.data.manifest import read_manifest_labels

            self.labels = read_manifest_labels(data)
            if self.labels is not None:
                logger.info("%s: label map from the manifest: %s", data, self.labels.describe())

    def resolve(self, records: Sequence[Any]) -> LabelSet | None:
        """The label set for ``records`` (the first call, with the training records, settles ``"auto"``)."""
        if self.labels == "auto":
            from usseg_models.data.datasets import mask_values

            values = mask_values(records)
            if not values:
                raise LabelOptionError("--labels auto: the training masks hold no non-zero value")
            self.labels = LabelSet.from_values(values)
            logger.info("--labels auto: %s", self.labels.describe())
        return self.labels

    def final(self, train_ds: Dataset) -> LabelSet:
        """The settled set after the datasets exist (datasets given directly carry theirs as ``.labels``);
        one-structure runs without a set get :meth:`LabelSet.binary` (what their checkpoints store)."""
        if self.labels == "auto":
            found = getattr(train_ds, "labels", None)
            if found is None:
                raise LabelOptionError("--labels auto needs a data folder or manifest (masks to read), not datasets")
            self.labels = found
        if self.labels is None:
            self.labels = getattr(train_ds, "labels", None)
        return self.labels if self.labels is not None else LabelSet.binary()


def label_overrides(labels: LabelSet, overrides: dict[str, Any]) -> dict[str, Any]:
    """Network overrides for ``labels``: ``out_channels = 1 + n`` for several structures (one structure keeps the
    configuration's single channel, so its checkpoints stay as before)."""
    out = dict(overrides)
    if not labels.is_binary:
        out["out_channels"] = labels.out_channels
    return out


def fit_network(network: str, config: str, choice: LabelChoice, overrides: dict[str, Any],
                init_from: str | Path | None, train_ds: Dataset, val_ds: Dataset | None, info: dict[str, Any],
                train_step: TrainStep, predict: Predict, settings: TrainSettings, out_dir: str | Path | None,
                device: str | torch.device | None) -> dict[str, Any]:
    """Build ``network`` for the run's label set and train it with :func:`usseg_models.training.engine.fit`.

    The label set (``choice.final(train_ds)``) sets the output channels (:func:`label_overrides`) and goes, with
    the data description ``info`` and the label value, into the checkpoints' ``extra``. The weights are seeded
    with ``settings.seed``, then loaded from the usseg checkpoint ``init_from`` when given
    (:func:`pretrained_overrides`).

    Returns:
        The :func:`~usseg_models.training.engine.fit` result plus ``data`` (``info``) and ``labels`` (the set).
    """
    label_set = choice.final(train_ds)
    net_overrides = label_overrides(label_set, overrides)
    torch.manual_seed(settings.seed)
    model = build_network(network, config, **net_overrides)
    if init_from is not None:
        apply_pretrained(model, init_from)
    result = fit(model, train_ds, val_ds, train_step, predict, settings, out_dir, network, config, net_overrides,
                 device, extra={"data": info, "label_value": choice.label_value, "labels": label_set.to_json()})
    result["data"] = info
    result["labels"] = label_set
    return result
