"""``PUT /model/{name}``: a model file is published only when it is a usseg checkpoint that really works.

MONAI Label 0.8.5 copies any uploaded file over the live model. This app accepts an upload only when

1. it loads with ``torch.load(..., weights_only=True)`` (no pickled code runs) and is a usseg checkpoint
   (``network``, ``config``, ``state_dict``; :func:`usseg_models.networks.checkpoint.read_checkpoint`);
2. it is for this model's network and configuration (e.g. ``dsanet``/``small``) and its label set (the structures
   the server segments, :func:`monailabel_app.lib.label_config.check_checkpoint_labels`);
3. its ``state_dict`` loads into a copy of the live network with ``strict=True`` (same keys, same shapes);
4. that copy gives finite outputs on a fixed probe input (uniform noise, seed 0: one ``(3, S, S)`` image, or a
   3-frame window for DSANet).

Otherwise the answer is 422 naming the failed check, and the live model file and the weights in memory are
unchanged. An accepted file is published atomically (recorded in the model history when the app keeps one) and
loaded by the next request, like a newly trained model.
"""

from __future__ import annotations

import copy
import logging
import os
from typing import Any

import torch

from monailabel_app.lib.datastore import atomic_copy
from monailabel_app.lib.model_store import ModelStore
from usseg_models.errors import CheckpointError
from usseg_models.networks.checkpoint import load_state_strict, read_checkpoint

__all__ = ["validate_checkpoint", "publish_checkpoint"]

logger = logging.getLogger(__name__)

PROBE_SEED = 0


def _probe(network: torch.nn.Module, spatial_size: int) -> torch.Tensor:
    """Logits of ``network`` on the fixed probe input (through the predictors the app uses)."""
    generator = torch.Generator().manual_seed(PROBE_SEED)
    if hasattr(network, "encode_frame"):
        from usseg_models.inference.video import DSANetPredictor

        predictor = DSANetPredictor(network, spatial_size, device=next(network.parameters()).device)
        clip = torch.rand((3, predictor.in_channels, spatial_size, spatial_size), generator=generator)
        return predictor.predict_logits(clip)
    from usseg_models.inference.image import ImagePredictor

    predictor = ImagePredictor(network, spatial_size, device=next(network.parameters()).device)
    return predictor.predict_logits(torch.rand((1, 3, spatial_size, spatial_size), generator=generator))


def validate_checkpoint(path: str | os.PathLike, store: ModelStore) -> dict[str, Any]:
    """Run the checks of the module docstring on ``path``; return a summary of the accepted checkpoint.

    Raises:
        CheckpointError: the first check that fails (message names it).
    """
    payload = read_checkpoint(path)  # weights_only=True
    if payload["network"] != store.name or payload["config"] != store.config:
        raise CheckpointError(
            f"the checkpoint holds {payload['network']}/{payload['config']}, this model is {store.name}/{store.config}"
        )
    store.check_labels(payload, "the checkpoint")
    state = payload["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError("the checkpoint's state_dict is not a mapping of tensors")
    with store.lock:
        candidate = copy.deepcopy(store.network)
    load_state_strict(candidate, state, "the uploaded checkpoint", f"the {store.name}/{store.config} network")
    candidate.eval()
    try:
        logits = _probe(candidate, store.spatial_size)
    except Exception as exc:  # noqa: BLE001 - any failure of the forward pass means the file is unusable
        raise CheckpointError(f"the network fails on a probe input with these weights: {exc}") from exc
    if not torch.isfinite(logits).all():
        bad = int((~torch.isfinite(logits)).sum())
        raise CheckpointError(f"the network gives {bad} NaN/infinite output value(s) on a probe input")
    return {"network": store.name, "config": store.config, "tensors": len(state), "probe": "finite"}


def publish_checkpoint(path: str | os.PathLike, store: ModelStore) -> dict[str, Any]:
    """Make a validated checkpoint the live model (atomic replace; in the model history when there is one)."""
    record: dict[str, Any] = {"source": "upload (PUT /model)"}
    try:
        from monailabel_app.lib.trainers.publish import ModelHistory
    except ImportError:  # an app without a model history: plain atomic replace
        ModelHistory = None  # noqa: N806
    with store.lock:
        if ModelHistory is not None:
            record["history"] = ModelHistory(store.model_dir, store.stem, store.trained_path).publish(
                path, record, current=store.weights_path())
        else:
            atomic_copy(os.fspath(path), str(store.trained_path))
        _, version = store.refresh()
    logger.info("%s: uploaded checkpoint published (%s)", store.name, version)
    return {"model": store.name, **version, **record}
