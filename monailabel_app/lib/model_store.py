"""One network per model, built once, whose weights follow the checkpoint files in ``model/``.

Weights are looked up in this order: ``model/<name>.pt`` (published by this app's trainer), then the
``pretrained_path`` configuration option, then ``model/pretrained_<name>.pt``; without any file the network
keeps its initial weights. Before every use the store compares the chosen file's modification time with the
one it loaded, so a checkpoint published by a training run is used by the next inference without a restart.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import torch

from usseg_models.errors import CheckpointError
from usseg_models.networks.checkpoint import load_weights
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
    ) -> None:
        if config not in ("small", "paper"):
            raise ValueError(f"config must be 'small' or 'paper', got {config!r}")
        self.name = name
        self.config = config
        self.model_dir = Path(model_dir)
        self.model_dir.mkdir(parents=True, exist_ok=True)
        self.device = torch.device(device)
        self.trained_path = self.model_dir / f"{name}.pt"
        self.pretrained_path = Path(pretrained_path) if pretrained_path else self.model_dir / f"pretrained_{name}.pt"
        self.overrides = dict(overrides or {})
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
                        self._version = {
                            "weights": path.name,
                            "mtime": stamp[1] / 1e9,
                            "config": self.config,
                        }
                        logger.info("%s: loaded weights from %s", self.name, path)
                    except CheckpointError as exc:
                        logger.error("%s: keeping previous weights, cannot use %s: %s", self.name, path, exc)
                        self._loaded = stamp
            return self.network, dict(self._version)

    def _load(self, path: Path) -> None:
        load_weights(self.network, path, self.name, self.config)
        self.network.eval()
