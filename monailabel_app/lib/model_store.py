"""One network per model, built once, whose weights follow the checkpoint files in ``model/``.

Weights are looked up in this order: ``model/<name>.pt`` (published by this app's trainer), then the
``pretrained_path`` configuration option, then ``model/pretrained_<name>.pt``; without any file the network
keeps its initial weights. ``<name>`` in these file names is the store's :attr:`ModelStore.stem`: the model name
for one structure, the model name and its label set for several (:mod:`monailabel_app.lib.label_config`), so each
label set has its own files; a checkpoint of another label set is refused (logged, and shown in ``GET /info/``).
Before every use the store compares the chosen file's modification time with the
one it loaded, so a checkpoint published by a training run is used by the next inference without a restart.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import torch

from monailabel_app.lib.label_config import check_checkpoint_labels, model_stem
from usseg_models import palette
from usseg_models.errors import CheckpointError
from usseg_models.labels import LabelSet
from usseg_models.networks.checkpoint import load_weights, read_checkpoint
from usseg_models.networks.factory import build_network, network_spatial_size

__all__ = ["ModelStore"]

logger = logging.getLogger(__name__)


class ModelStore:
    """Own one network instance and keep its weights in step with the newest checkpoint file.

    Args:
        name: network name for :func:`usseg_models.networks.factory.build_network` ("dsanet", "intrasense").
        config: configuration name ("small" or "paper").
        model_dir: the app's ``model/`` folder; the trainer publishes ``<model_dir>/<name>.pt`` there.
        device: torch device for inference.
        pretrained_path: optional usseg checkpoint used until a trained one exists.
        overrides: extra constructor arguments passed to ``build_network`` (e.g. backbone weights).
        labels: the structures the network segments (default: the palette's one structure of ``name``); with
            several the network is built with ``out_channels = labels.out_channels``.

    Examples::

        store = ModelStore("intrasense", "small", "monailabel_app/model", "cpu")
        with store.lock:
            net, version = store.refresh()
    """

    def __init__(
        self,
        name: str,
        config: str,
        model_dir: str | os.PathLike,
        device: str | torch.device = "cpu",
        pretrained_path: str | os.PathLike | None = None,
        overrides: dict[str, Any] | None = None,
        labels: LabelSet | None = None,
    ) -> None:
        if config not in ("small", "paper"):
            raise ValueError(f"config must be 'small' or 'paper', got {config!r}")
        self.name = name
        self.config = config
        self.model_dir = Path(model_dir)
        self.model_dir.mkdir(parents=True, exist_ok=True)
        self.device = torch.device(device)
        self.labels = labels if labels is not None else palette.label_set(name)
        self.stem = model_stem(name, self.labels)
        self.trained_path = self.model_dir / f"{self.stem}.pt"
        self.pretrained_path = (Path(pretrained_path) if pretrained_path
                                else self.model_dir / f"pretrained_{self.stem}.pt")
        self.overrides = dict(overrides or {})
        if not self.labels.is_binary:
            self.overrides["out_channels"] = self.labels.out_channels
        self.refused: dict[str, Any] | None = None  # the last checkpoint file refused, and why
        self.spatial_size = network_spatial_size(name, config)
        self.lock = threading.RLock()
        self._initial_weights()

    def _initial_weights(self) -> None:
        """A freshly built network with its initial weights, and no checkpoint file loaded."""
        self.network = build_network(self.name, self.config, **self.overrides).to(self.device).eval()
        self._loaded: tuple[str, int] | None = None
        self._version: dict[str, Any] = {"weights": "initial", "mtime": None, "config": self.config}

    def weights_path(self) -> Path | None:
        """The checkpoint file that should be in use now, or ``None`` when there is none."""
        for path in (self.trained_path, self.pretrained_path):
            if path.is_file():
                return path
        return None

    def refresh(self) -> tuple[torch.nn.Module, dict[str, Any]]:
        """Reload the weights if the checkpoint file changed; return ``(network, version_info)``.

        A checkpoint that cannot be loaded (wrong network or configuration) is logged and skipped: the
        previous weights stay in use, so a bad file never takes inference down.
        """
        with self.lock:
            path = self.weights_path()
            if path is None and self._loaded is not None:
                # the file in use was deleted and there is nothing to fall back on: back to initial weights, never
                # the deleted file's weights still in memory
                self._initial_weights()
                logger.warning("%s: its checkpoint file is gone; serving initial weights", self.name)
            if path is not None:
                stamp = (str(path), path.stat().st_mtime_ns)
                if stamp != self._loaded:
                    try:
                        self._load(path)
                        self._loaded = stamp
                        self.refused = None
                        self._version = {
                            "weights": path.name,
                            "mtime": stamp[1] / 1e9,
                            "config": self.config,
                        }
                        logger.info("%s: loaded weights from %s", self.name, path)
                    except CheckpointError as exc:
                        logger.error("%s: keeping previous weights, cannot use %s: %s", self.name, path, exc)
                        self._loaded = stamp
                        self.refused = {"file": path.name, "reason": str(exc)}
            return self.network, dict(self._version)

    def check_labels(self, payload: dict[str, Any], source: str) -> None:
        """Refuse a checkpoint (``read_checkpoint`` payload) of another label set (raises ``CheckpointError``)."""
        check_checkpoint_labels(payload, self.labels, source)

    def _load(self, path: Path) -> None:
        self.check_labels(read_checkpoint(path), str(path))
        load_weights(self.network, path, self.name, self.config)
        self.network.eval()
