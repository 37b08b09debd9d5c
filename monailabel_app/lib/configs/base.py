"""Shared ``TaskConfig`` for the usseg models: reads the app's ``--conf`` options and builds the network once.

Options (``monailabel start_server ... --conf KEY VALUE``; ``<name>_KEY`` overrides ``KEY`` for one model):

* ``labels``: the structures the model segments, ``"1:LV,2:MYO,3:LA"`` (default: the palette's one structure);
  see :mod:`monailabel_app.lib.label_config` (its own model files per label set).
* ``config``: ``small`` or ``paper`` (default ``paper`` when CUDA is present, else ``small``).
* ``device``: torch device for inference (default ``cuda`` when present, else ``cpu``).
* ``pretrained_path``: a usseg checkpoint used until this app has trained its own ``model/<name>.pt``.
* ``backbone_weights``: ImageNet backbone weights file handed to the network constructor (``pretrained_path``).
* ``auto_retrain_after``: number of newly saved labels that start a training run by itself
  (default :data:`DEFAULT_AUTO_RETRAIN_AFTER`; ``0`` turns it off).
* ``max_epochs``, ``batch_size``, ``lr``, ``val_split``: training defaults shown in ``GET /info/`` (a train
  request may override them); ``val_split`` is the validation fraction held out of the labelled studies
  (default 0.2; ``0`` trains on everything and publishes the last epoch).
* ``tolerance``, ``min_val_frames``: the publish gate (:mod:`monailabel_app.lib.trainers.options`); both shown
  in ``GET /info/`` under the trainer's config.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from monailabel.interfaces.config import TaskConfig

from monailabel_app.lib.label_config import configured_labels
from monailabel_app.lib.model_store import ModelStore
from monailabel_app.lib.trainers.options import DEFAULT_MIN_VAL_FRAMES, DEFAULT_TOLERANCE

__all__ = ["UltrasoundTaskConfig", "DEFAULT_AUTO_RETRAIN_AFTER", "conf_value"]

logger = logging.getLogger(__name__)

DEFAULT_AUTO_RETRAIN_AFTER = 5


def conf_value(conf: dict[str, str], name: str, key: str, default: Any = None) -> Any:
    """``conf["<name>_<key>"]`` if set, else ``conf[key]``, else ``default``."""
    for k in (f"{name}_{key}", key):
        if conf.get(k) not in (None, ""):
            return conf[k]
    return default


class UltrasoundTaskConfig(TaskConfig):
    """Base config: subclasses set the class attributes below and :meth:`infer` / :meth:`trainer`.

    Attributes:
        network_name: name for ``build_network``.
        kind: ``"cine"`` or ``"image"`` (which datastore items the model trains on).

    After :meth:`init`: ``label_set`` (the configured :class:`~usseg_models.labels.LabelSet`), ``labels``
    (``{name: value}``, MONAI Label's convention) and ``label_colors`` (``{name: (r, g, b)}`` in 0..1) from it.
    """

    network_name: str = ""
    kind: str = ""

    def init(self, name: str, model_dir: str, conf: dict[str, str], planner: Any, **kwargs: Any) -> None:
        super().init(name, model_dir, conf, planner, **kwargs)
        self.label_set = configured_labels(conf, name, self.network_name)
        self.labels = self.label_set.label_names()
        self.label_colors = self.label_set.label_colors()
        cuda = torch.cuda.is_available()
        self.config_name = str(conf_value(conf, name, "config", "paper" if cuda else "small"))
        if self.config_name not in ("small", "paper"):
            raise ValueError(f"conf config must be 'small' or 'paper', got {self.config_name!r}")
        self.device = str(conf_value(conf, name, "device", "cuda" if cuda else "cpu"))
        self.auto_retrain_after = int(conf_value(conf, name, "auto_retrain_after", DEFAULT_AUTO_RETRAIN_AFTER))
        if self.auto_retrain_after < 0:
            raise ValueError(f"auto_retrain_after must be >= 0, got {self.auto_retrain_after}")
        self.max_epochs = int(conf_value(conf, name, "max_epochs", 2 if self.config_name == "small" else 50))
        self.batch_size = int(conf_value(conf, name, "batch_size", 2))
        self.lr = float(conf_value(conf, name, "lr", 1e-4))
        self.val_split = float(conf_value(conf, name, "val_split", 0.2))
        if not 0 <= self.val_split < 1:
            raise ValueError(f"val_split must be in [0, 1), got {self.val_split}")
        self.tolerance = float(conf_value(conf, name, "tolerance", DEFAULT_TOLERANCE))
        self.min_val_frames = int(conf_value(conf, name, "min_val_frames", DEFAULT_MIN_VAL_FRAMES))
        if not 0 <= self.tolerance <= 1 or self.min_val_frames < 0:
            raise ValueError(f"tolerance must be in [0, 1] and min_val_frames >= 0, got {self.tolerance} and "
                             f"{self.min_val_frames}")
        pretrained = conf_value(conf, name, "pretrained_path")
        if pretrained and not os.path.isfile(pretrained):
            raise ValueError(f"pretrained_path {pretrained!r} for {name} does not exist")
        overrides = {}
        backbone = conf_value(conf, name, "backbone_weights")
        if backbone:
            overrides["pretrained_path"] = backbone
        os.makedirs(model_dir, exist_ok=True)
        self.store = ModelStore(
            self.network_name, self.config_name, model_dir, self.device, pretrained_path=pretrained,
            overrides=overrides, labels=self.label_set,
        )
        self.path = [str(self.store.pretrained_path), str(self.store.trained_path)]
        logger.info("%s: %s/%s on %s, labels %s (model files %s*)", name, self.network_name, self.config_name,
                    self.device, self.label_set.describe(), os.path.join(model_dir, self.store.stem))

    def train_defaults(self) -> dict[str, Any]:
        """Training options shown in ``GET /info/`` and used when a request does not set them."""
        return {
            "max_epochs": self.max_epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "config": self.config_name,
            "multi_gpu": False,
            "val_split": self.val_split,
            "tolerance": self.tolerance,
            "min_val_frames": self.min_val_frames,
        }

    def strategy(self):
        return None

    def scoring_method(self):
        return None
