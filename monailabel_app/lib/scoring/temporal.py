"""Temporal-disagreement score of a cine: how much DSANet's masks change between consecutive frames.

For predicted masks M_1..M_T of an unlabelled cine the score is

    U = 1/(T-1) · Σ_t (1 − Dice(M_t, M_{t+1})),   Dice(A, B) = 2|A∩B| / (|A| + |B|),  Dice(∅, ∅) = 1,

in [0, 1]. Frames of an ultrasound cine are a few tens of milliseconds apart, so a confident model gives
nearly the same mask on neighbouring frames; large frame-to-frame disagreement marks clips the model is
unsure about — the ones worth labelling next.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod

from monailabel_app.lib.infers.base import UltrasoundInferTask, resolve_input_file, spatial_ndim
from usseg_models.errors import UssegError
from usseg_models.io import load_image

__all__ = ["temporal_disagreement", "TemporalDisagreementScoring", "SCORE_KEY"]

logger = logging.getLogger(__name__)

SCORE_KEY = "temporal_disagreement"


def temporal_disagreement(masks: np.ndarray) -> float:
    """Mean ``1 − Dice`` between consecutive frames of an ``(X, Y, T)`` mask volume (0 for T < 2).

    Examples::

        >>> m = np.zeros((4, 4, 3), np.uint8); m[:2, :, 0] = 1; m[:2, :, 1] = 1
        >>> temporal_disagreement(m)  # frames 0-1 agree, 1-2 disagree fully
        0.5
    """
    masks = np.asarray(masks) > 0
    if masks.ndim != 3:
        raise ValueError(f"masks must be (X, Y, T), got shape {masks.shape}")
    if masks.shape[2] < 2:
        return 0.0
    a, b = masks[:, :, :-1], masks[:, :, 1:]
    inter = (a & b).sum(axis=(0, 1)).astype(np.float64)
    total = a.sum(axis=(0, 1)) + b.sum(axis=(0, 1))
    dice = np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0)
    return float(np.mean(1.0 - dice))


class TemporalDisagreementScoring(ScoringMethod):
    """Score unlabelled cines with :func:`temporal_disagreement`; results go to each image's info.

    Args:
        task: the DSANet infer task (its network and preprocessing are reused, nothing is built again).

    ``POST /scoring/temporal_disagreement`` scores every unlabelled cine and stores
    ``{"temporal_disagreement": {"score": U, "weights_mtime": ...}}`` in the image info; images that are
    not cines are skipped.
    """

    def __init__(self, task: UltrasoundInferTask) -> None:
        super().__init__("Temporal disagreement of DSANet masks between consecutive frames (higher = less sure)")
        self.task = task

    def score_path(self, path: str) -> tuple[float | None, dict[str, Any]]:
        """Score one file; ``(None, version)`` when it is not a readable cine."""
        try:
            array, meta = load_image(resolve_input_file(path))
        except (UssegError, Exception) as exc:  # noqa: BLE001 - an unreadable study just gets no score
            logger.warning("cannot score %s: %s", path, exc)
            return None, {}
        if spatial_ndim(array, meta) != 3 or array.shape[2] < 2:
            return None, {}
        store = self.task.store
        with store.lock:
            network, version = store.refresh()
            masks = self.task.predict(network, array)
        return temporal_disagreement(masks), version

    def score_image(self, image_id: str, datastore: Datastore, force: bool = False) -> float | None:
        """Score from the image info when it was computed with the current weights, else compute and store it."""
        _, version = self.task.store.refresh()
        cached = datastore.get_image_info(image_id).get(SCORE_KEY)
        if not force and isinstance(cached, dict) and cached.get("weights_mtime") == version.get("mtime"):
            return cached.get("score")
        score, version = self.score_path(datastore.get_image_uri(image_id))
        if score is not None:
            try:
                datastore.update_image_info(
                    image_id, {SCORE_KEY: {"score": score, "weights_mtime": version.get("mtime")}}
                )
            except Exception as exc:  # noqa: BLE001 - a read-only datastore still gets its answer
                logger.warning("cannot store score of %s: %s", image_id, exc)
        return score

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        scores = {i: self.score_image(i, datastore, force=bool(request.get("force"))) for i in
                  datastore.get_unlabeled_images()}
        return {"method": SCORE_KEY, "scores": {k: v for k, v in scores.items() if v is not None}}
