"""Which structures a model of the app segments (``--conf labels``), and which model files belong to that set.

``--conf labels "1:LV,2:MYO,3:LA"`` (``<model>_labels`` for one model) configures a label set, read by
:func:`usseg_models.labels.parse_labels`; without it each model segments its palette's one structure
(:func:`usseg_models.palette.label_set`: ``lesion`` for ``dsanet``, ``tumor`` for ``intrasense``), exactly as
before label sets. Colours come from the one palette (:func:`usseg_models.palette.colored`).

A network with several structures has ``1 + n`` output channels, so its weights are not interchangeable with
another set's. Each label set therefore has **its own model files**: one-structure sets keep ``model/<name>.pt``
(and ``pretrained_<name>.pt``, the history, the candidate ...) as today; any other set uses the stem
``<name>_<values and names>`` (``dsanet_1-LV_2-MYO_3-LA.pt``), so a server started with a new set starts
untrained instead of loading another set's model. A checkpoint that reaches the model store anyway (a
``pretrained_path``, an upload, a file copied by hand) is loaded only when its label set
(``extra["labels"]``; checkpoints from before label sets are one-structure models) has the configured values
and, for several structures, the configured names: otherwise it is refused with a message naming both sets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from usseg_models import palette
from usseg_models.errors import CheckpointError
from usseg_models.labels import LabelSet, LabelSetError, labels_from_checkpoint, parse_labels

__all__ = ["LabelConfigError", "configured_labels", "model_stem", "check_checkpoint_labels"]


class LabelConfigError(ValueError):
    """``--conf labels`` cannot be used (the message names the option, the value and the problem)."""


def configured_labels(conf: Mapping[str, str], name: str, model: str) -> LabelSet:
    """The label set of model ``name`` (network ``model``): ``<name>_labels`` or ``labels`` from ``conf``, else
    the palette's one structure; coloured from the palette.

    Raises:
        LabelConfigError: the value is not a valid ``"value:name,..."`` list.
    """
    for key in (f"{name}_labels", "labels"):
        text = conf.get(key)
        if text not in (None, ""):
            try:
                return palette.colored(parse_labels(str(text)))
            except LabelSetError as exc:
                raise LabelConfigError(f"--conf {key} {text!r}: {exc}") from None
    return palette.label_set(model)


def model_stem(name: str, labels: LabelSet) -> str:
    """File stem of model ``name``'s files for ``labels``: ``name`` for one structure, else
    ``<name>_<v>-<name>_...`` (characters other than letters, digits, ``.`` and ``-`` become ``-``).

    Examples::

        >>> model_stem("dsanet", parse_labels("1:LV,2:MYO,3:LA"))
        'dsanet_1-LV_2-MYO_3-LA'
    """
    if labels.is_binary:
        return name
    parts = [f"{v}-{re.sub(r'[^A-Za-z0-9.-]+', '-', n)}" for v, n in zip(labels.values, labels.names)]
    return "_".join([name, *parts])


def check_checkpoint_labels(payload: Mapping[str, Any], labels: LabelSet, source: str) -> LabelSet:
    """Refuse a checkpoint made for another label set; returns the checkpoint's set.

    One structure: any one-structure checkpoint fits (the answer's value and name are the server's). Several:
    the values and the names must be the configured ones (a model of ``1:LV,2:MYO`` is not one of
    ``1:MYO,2:LV``).

    Raises:
        CheckpointError: naming both label sets.
    """
    try:
        theirs = labels_from_checkpoint(payload, LabelSet.binary())
    except LabelSetError as exc:
        raise CheckpointError(f"{source}: unreadable label set in the checkpoint ({exc})") from exc
    if labels.is_binary and theirs.is_binary:
        return theirs
    if theirs.values != labels.values or theirs.names != labels.names:
        raise CheckpointError(
            f"{source} was trained for the label set {theirs.describe()!r} ({theirs.num_structures} "
            f"structure{'s' if theirs.num_structures != 1 else ''}); this server segments "
            f"{labels.describe()!r}"
        )
    return theirs
