"""Checkpoint files: weights plus everything needed to rebuild the network without guessing.

A checkpoint is a ``torch.save`` dict with keys ``network`` (name for :func:`build_network`), ``config``
(``paper``/``small``), ``overrides`` (constructor kwargs changed from the configuration), ``spatial_size``,
``state_dict`` and free-form ``extra`` (epoch, metrics, ...). Loading uses ``weights_only=True``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from usseg_models.errors import CheckpointError
from usseg_models.networks.factory import build_network, network_spatial_size

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint", "unwrap_model"]


def unwrap_model(model: nn.Module) -> nn.Module:
    """Return the plain module inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    network: str,
    config: str,
    overrides: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary file + rename) so a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    overrides = {k: v for k, v in (overrides or {}).items() if k != "pretrained_path"}
    payload = {
        "network": network,
        "config": config,
        "overrides": overrides,
        "spatial_size": int(overrides.get("spatial_size", network_spatial_size(network, config))),
        "state_dict": {k: v.detach().cpu() for k, v in unwrap_model(model).state_dict().items()},
        "extra": extra or {},
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a checkpoint dict (raises :class:`CheckpointError` naming the problem)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is a bad file
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    missing = [k for k in ("network", "config", "state_dict") if not isinstance(payload, dict) or k not in payload]
    if missing:
        raise CheckpointError(f"{path} is not a usseg checkpoint (missing {', '.join(missing)})")
    return payload


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the network stored in ``path`` and load its weights strictly. Returns ``(model, payload)``."""
    payload = read_checkpoint(path)
    overrides = {k: v for k, v in payload.get("overrides", {}).items() if k != "spatial_size"}
    model = build_network(payload["network"], payload["config"], **overrides)
    result = model.load_state_dict(payload["state_dict"], strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{path} does not match {payload['network']}/{payload['config']}: "
            f"missing {result.missing_keys[:10]}, unexpected {result.unexpected_keys[:10]}"
        )
    return model.to(map_location), payload
