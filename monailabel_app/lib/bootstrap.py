"""A working model at first start, and an honest answer while there is none.

When a model has never been trained (no ``model/<name>.pt``) and no pretrained file is configured, random weights
mark most of every frame as foreground — an answer that looks like a segmentation and is not one. So:

- **Bootstrap**: at start-up, if the datastore already holds at least ``bootstrap_min_labels`` final labels of the
  model's kind (default :data:`DEFAULT_BOOTSTRAP_MIN_LABELS`; the bundled sample studies hold 3 labelled cines and
  6 labelled images), the app starts that model's first training by itself, with ``bootstrap_epochs`` epochs
  (default :data:`DEFAULT_BOOTSTRAP_EPOCHS`) at ``bootstrap_lr`` (default :data:`DEFAULT_BOOTSTRAP_LR`: from random
  weights a short run needs a larger step than fine-tuning's 1e-4). ``bootstrap_min_labels 0`` turns it off.
  A model of several structures (``--conf labels``) bootstraps only when the labelled studies show every one of its
  structures (:func:`missing_structures`): the bundled sample studies are one-structure (value 1), so a server
  started on them with ``labels "1:LV,2:MYO,3:LA"`` does not train on them by itself — it starts untrained (409,
  or untrained output on request) until labels of every structure are saved and a training runs (``POST
  /train/<model>``, or the auto-retrain after ``auto_retrain_after`` new labels).
- **409 until trained**: ``POST /infer/<model>`` answers 409 with a sentence saying the model is not trained and
  what its training is doing, unless the request asks for untrained output with ``{"allow_untrained": true}``.
  Refinement (``<model>_refine``) is never refused: it adapts to the user's own corrected frames.
  ``--conf untrained_infer allow`` (development and tests) answers with the untrained network instead.
- ``GET /info/`` shows ``usseg.<model>.trained`` and ``usseg.<model>.training``.
"""

from __future__ import annotations

import logging
from typing import Any

from monailabel.utils.async_tasks.task import AsyncTask

from monailabel_app.lib.trainers.records import datastore_records
from usseg_models.labels import LabelSet

__all__ = [
    "DEFAULT_BOOTSTRAP_MIN_LABELS",
    "DEFAULT_BOOTSTRAP_EPOCHS",
    "DEFAULT_BOOTSTRAP_LR",
    "labelled_items",
    "missing_structures",
    "training_status",
    "untrained_message",
    "wants_untrained",
]

logger = logging.getLogger(__name__)

DEFAULT_BOOTSTRAP_MIN_LABELS = 3
# by kind: a cine gives one window per frame (3 cines x 24 frames: 36 steps an epoch at batch 2), an image one
# sample (6 images: 3 steps an epoch), so images need more epochs for a similar number of optimiser steps
DEFAULT_BOOTSTRAP_EPOCHS = {"cine": 20, "image": 150}
DEFAULT_BOOTSTRAP_LR = 1e-3


def labelled_items(datastore: Any, kind: str) -> list[str]:
    """Ids of the datastore's studies of ``kind`` that a training would use (the trainer's own record list)."""
    return sorted(datastore_records(datastore, kind))


def missing_structures(datastore: Any, kind: str, labels: LabelSet) -> list[str]:
    """Names of the structures of ``labels`` that no labelled study of ``kind`` shows (reads the label files)."""
    from usseg_models.data.datasets import mask_values

    records = list(datastore_records(datastore, kind).values())
    try:
        found = set(mask_values(records)) if records else set()
    except Exception as exc:  # noqa: BLE001 - an unreadable label leaves the question open: nothing counts as shown
        logger.warning("cannot read the %s labels to check their structures: %s", kind, exc)
        found = set()
    return [name for name, value in zip(labels.names, labels.values) if value not in found]


def training_status(name: str) -> dict[str, Any] | None:
    """The latest training task of model ``name`` on this server (MONAI Label's task record), or ``None``."""
    tasks, _ = AsyncTask.status("train", all=True)
    mine = [t for t in (tasks or []) if isinstance(t, dict) and (t.get("request") or {}).get("model") == name]
    return mine[-1] if mine else None


def _plural(kind: str, n: int) -> str:
    return f"{n} labelled {kind}{'' if n == 1 else 's'}"


def untrained_message(name: str, kind: str, labelled: int, minimum: int) -> str:
    """One plain sentence for a user whose request met an untrained model."""
    task = training_status(name)
    if task and task.get("status") in ("SUBMITTED", "RUNNING"):
        doing = (f"its first training is {task['status'].lower()} (started {task.get('start_ts', '?')}); "
                 "GET /train/ shows its progress — try again when it is DONE")
    elif task and task.get("status") == "ERROR":
        doing = "its last training failed (GET /train/ shows why)"
    elif minimum > 0 and labelled < minimum:
        doing = (f"the datastore holds {_plural(kind, labelled)}; a first training starts with {minimum} "
                 "(submit labels, or correct a few frames and use refinement)")
    else:
        doing = f"start a training with POST /train/{name}"
    return (f"model {name} is not trained yet, so its output would be meaningless: {doing}. "
            'Send params {"allow_untrained": true} to get untrained output anyway.')


def wants_untrained(request: dict[str, Any]) -> bool:
    """Whether the request explicitly asks for untrained output (``true`` or the string ``"true"``)."""
    value = request.get("allow_untrained")
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")
