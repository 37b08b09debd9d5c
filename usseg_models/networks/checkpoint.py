"""Checkpoint files: weights plus everything needed to rebuild the network without guessing.

A checkpoint is a ``torch.save`` dict with keys ``network`` (name for :func:`build_network`), ``config``
(``paper``/``small``), ``overrides`` (constructor kwargs changed from the configuration), ``spatial_size``,
``state_dict`` and free-form ``extra`` (epoch, metrics, ...). Loading uses ``weights_only=True``.

:func:`load_weights` is the one strict loader of a usseg checkpoint into a live network (the app's model store,
fine-tuning from a checkpoint, :func:`load_checkpoint`): every key present on both sides with the same shape, or
:class:`CheckpointError` listing what differs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from usseg_models.errors import CheckpointError
from usseg_models.networks.factory import build_network, network_spatial_size

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint", "load_state_strict", "load_weights", "unwrap_model"]


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
        # torch's unpickling errors run over several lines of advice; the first names the problem
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"cannot read checkpoint {path}: not a PyTorch checkpoint ({first})") from exc
    missing = [k for k in ("network", "config", "state_dict") if not isinstance(payload, dict) or k not in payload]
    if missing:
        raise CheckpointError(f"{path} is not a usseg checkpoint (missing {', '.join(missing)})")
    return payload


def load_state_strict(model: nn.Module, state_dict: dict[str, Any], source: str, target: str = "this network") -> None:
    """Load ``state_dict`` into ``model`` with every key on both sides and every shape equal.

    Raises:
        CheckpointError: ``"<source> does not fit <target>: missing [...], unexpected [...]"`` (first ten of each)
            plus the keys whose shapes differ; the model is left unchanged then.
    """
    own = unwrap_model(model).state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k}: file {tuple(v.shape)} vs network {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and hasattr(v, "shape") and tuple(v.shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        detail = f"missing {missing[:10]}, unexpected {unexpected[:10]}" + (f", shapes {shapes[:10]}" if shapes else "")
        raise CheckpointError(f"{source} does not fit {target}: {detail}")
    unwrap_model(model).load_state_dict(state_dict, strict=True)


def load_weights(
    model: nn.Module, path: str | os.PathLike, network: str | None = None, config: str | None = None
) -> dict[str, Any]:
    """Read the usseg checkpoint ``path`` and load its weights strictly into ``model``; returns the payload.

    With ``network``/``config`` given, a checkpoint of another network or configuration is refused first.

    Raises:
        CheckpointError: unreadable file, not a usseg checkpoint, other network/configuration, or keys/shapes
            that differ (see :func:`load_state_strict`).
    """
    payload = read_checkpoint(path)
    if (network is not None and payload["network"] != network) or (config is not None and payload["config"] != config):
        raise CheckpointError(f"{path} holds {payload['network']}/{payload['config']}, expected {network}/{config}")
    target = f"{network}/{config}" if network and config else "this network"
    load_state_strict(model, payload["state_dict"], str(path), target)
    return payload


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the network stored in ``path`` and load its weights strictly. Returns ``(model, payload)``."""
    payload = read_checkpoint(path)
    overrides = {k: v for k, v in payload.get("overrides", {}).items() if k != "spatial_size"}
    model = build_network(payload["network"], payload["config"], **overrides)
    load_state_strict(model, payload["state_dict"], str(path), f"{payload['network']}/{payload['config']}")
    return model.to(map_location), payload
