"""Strict loading of ImageNet backbone weights from a local file (never a download).

Shared by the Res2Net-50 v1b backbone of DSANet and the ResNet-50 encoder of IntraSense-Net.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import torch
import torch.nn as nn

from usseg_models.errors import CheckpointError

__all__ = ["load_pretrained_state"]

logger = logging.getLogger(__name__)


def load_pretrained_state(
    module: nn.Module,
    path: str | os.PathLike,
    what: str,
    strip_prefixes: Sequence[str] = ("module.",),
    ignore_prefixes: Sequence[str] = ("fc.",),
) -> int:
    """Load a state dict from ``path`` into ``module`` with strict name and shape matching.

    The file may hold the state dict itself or under ``"state_dict"``/``"model"``. Key prefixes in
    ``strip_prefixes`` are removed, keys starting with ``ignore_prefixes`` (the ImageNet classifier) are dropped,
    and ``num_batches_tracked`` buffers absent from older files are tolerated (they do not affect inference).
    Any other missing, unexpected or wrongly shaped key raises :class:`CheckpointError` listing them.

    Args:
        module: the network (part) to fill.
        path: local ``.pth``/``.pt`` file.
        what: name used in messages, e.g. ``"the Res2Net backbone"``.
        strip_prefixes: prefixes to strip from the file's keys.
        ignore_prefixes: file keys to ignore.

    Returns:
        the number of tensors loaded.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"weights for {what} not found: {path} (weights are never downloaded)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is a bad file
        raise CheckpointError(f"cannot read weights for {what} from {path}: {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    clean = {}
    for key, value in state.items():
        for prefix in strip_prefixes:
            if prefix and key.startswith(prefix):
                key = key[len(prefix) :]
        if not any(key.startswith(p) for p in ignore_prefixes):
            clean[key] = value
    own = module.state_dict()
    missing = [k for k in own if k not in clean and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in clean if k not in own]
    wrong_shape = [
        f"{k}: file {tuple(clean[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in clean and tuple(clean[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or wrong_shape:
        raise CheckpointError(
            f"{path} does not match {what}: {len(missing)} missing {missing[:10]}, "
            f"{len(unexpected)} unexpected {unexpected[:10]}, {len(wrong_shape)} wrong shape {wrong_shape[:10]}"
        )
    module.load_state_dict({**own, **clean}, strict=True)
    logger.info("loaded weights for %s from %s (%d tensors)", what, path, len(clean))
    return len(clean)
