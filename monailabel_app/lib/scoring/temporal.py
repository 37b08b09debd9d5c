"""Temporal-disagreement score of a cine: how much DSANet's masks change between consecutive frames.

The consecutive-frame Dice is :func:`usseg_models.metrics.consecutive_dice` (the metric the evaluation reports).

For predicted masks M_1..M_T of an unlabelled cine the score is

    U = 1/(T-1) · Σ_t (1 − Dice(M_t, M_{t+1})),   Dice(A, B) = 2|A∩B| / (|A| + |B|),  Dice(∅, ∅) = 1,

in [0, 1]. With several structures (a label set of ``n`` values) ``U`` is computed for each structure's mask
(``M_t == v``) and averaged over the structures, so a structure the model is unsure about counts as much as a large
one; for one structure this is the score above, unchanged. Frames of an ultrasound cine are a few tens of
milliseconds apart, so a confident model gives nearly the same mask on neighbouring frames; large frame-to-frame
disagreement marks clips the model is unsure about — the ones worth labelling next.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod

from monailabel_app.lib.infers.base import UltrasoundInferTask
from monailabel_app.lib.input_limits import read_checked
from monailabel_app.lib.inputs import resolve_request_file, spatial_ndim
from usseg_models.metrics import consecutive_dice

__all__ = ["temporal_disagreement", "TemporalDisagreementScoring", "UnscorableStudy", "SCORE_KEY"]

logger = logging.getLogger(__name__)

SCORE_KEY = "temporal_disagreement"


def temporal_disagreement(masks: np.ndarray, values: Sequence[int] | None = None) -> float:
    """Mean ``1 − Dice`` between consecutive frames of an ``(X, Y, T)`` mask volume (0 for T < 2).

    Args:
        masks: ``(X, Y, T)`` label map.
        values: the label values of the structures; ``None`` (or one value) = one structure, foreground ``> 0``.
            Several: the mean over the structures of each one's score (mask ``== v``).

    Examples::

        >>> m = np.zeros((4, 4, 3), np.uint8); m[:2, :, 0] = 1; m[:2, :, 1] = 1
        >>> temporal_disagreement(m)  # frames 0-1 agree, 1-2 disagree fully
        0.5
        >>> m[2:, :, :] = 2  # a second structure, the same on every frame
        >>> temporal_disagreement(m, values=(1, 2))  # structure 1: 0.5, structure 2: 0; their mean
        0.25
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (X, Y, T), got shape {masks.shape}")
    if masks.shape[2] < 2:
        return 0.0
    if values is None or len(values) <= 1:
        return float(np.mean(1.0 - consecutive_dice(masks > 0, frame_axis=-1)))
    return float(np.mean([np.mean(1.0 - consecutive_dice(masks == v, frame_axis=-1)) for v in values]))


class UnscorableStudy(Exception):
    """A study could not be read or scored (message: the reason); callers skip it with a warning."""


def _reason(exc: BaseException) -> str:
    detail = getattr(exc, "detail", None)  # HTTPException from the input checks
    return str(detail if detail is not None else exc) or type(exc).__name__


class TemporalDisagreementScoring(ScoringMethod):
    """Score unlabelled cines with :func:`temporal_disagreement`; results go to each image's info.

    Args:
        task: the DSANet infer task (its network and preprocessing are reused, nothing is built again).

    ``POST /scoring/temporal_disagreement`` scores every unlabelled cine and stores
    ``{"temporal_disagreement": {"score": U, "weights_mtime": ...}}`` in the image info; images that are
    not cines are not scored. A study that cannot be read or scored (corrupt file, NaN/Inf values, over the
    decoded-size limit, a failing forward pass) is skipped with a warning and listed in the answer's
    ``skipped`` as ``{"id": ..., "reason": ...}``; it never fails the whole request.
    """

    def __init__(self, task: UltrasoundInferTask) -> None:
        super().__init__("Temporal disagreement of DSANet masks between consecutive frames (higher = less sure)")
        self.task = task

    def score_path(self, path: str) -> tuple[float | None, dict[str, Any]]:
        """Score one file; ``(None, {})`` when it is not a cine.

        Raises:
            UnscorableStudy: the file cannot be read (see :func:`monailabel_app.lib.input_limits.read_checked`)
                or the network fails on it.
        """
        try:
            array, meta, _ = read_checked(resolve_request_file(path), "study")
        except Exception as exc:  # noqa: BLE001 - unreadable for any reason: the caller skips the study
            raise UnscorableStudy(_reason(exc)) from exc
        if spatial_ndim(array, meta) != 3 or array.shape[2] < 2:
            return None, {}
        store = self.task.store
        try:
            with store.lock:
                network, version = store.refresh()
                masks = self.task.predict(network, array)
            return temporal_disagreement(masks, store.labels.values), version
        except Exception as exc:  # noqa: BLE001 - a study the network cannot score is skipped, not a 500
            raise UnscorableStudy(f"scoring failed: {_reason(exc)}") from exc

    def score_image(self, image_id: str, datastore: Datastore, force: bool = False) -> float | None:
        """Score from the image info when it was computed with the current weights, else compute and store it.

        Returns ``None`` for a study that is not a cine.

        Raises:
            UnscorableStudy: the study cannot be read or scored.
        """
        _, version = self.task.store.refresh()
        try:
            cached = datastore.get_image_info(image_id).get(SCORE_KEY)
            uri = None if not force and self._is_current(cached, version) else datastore.get_image_uri(image_id)
        except Exception as exc:  # noqa: BLE001 - a study the datastore cannot hand over is skipped
            raise UnscorableStudy(f"not available from the datastore: {_reason(exc)}") from exc
        if uri is None:
            return cached.get("score")
        score, version = self.score_path(uri)
        if score is not None:
            try:
                datastore.update_image_info(
                    image_id, {SCORE_KEY: {"score": score, "weights_mtime": version.get("mtime")}}
                )
            except Exception as exc:  # noqa: BLE001 - a read-only datastore still gets its answer
                logger.warning("cannot store score of %s: %s", image_id, exc)
        return score

    @staticmethod
    def _is_current(cached: Any, version: dict[str, Any]) -> bool:
        return isinstance(cached, dict) and cached.get("weights_mtime") == version.get("mtime")

    def score_many(self, image_ids: list[str], datastore: Datastore, force: bool = False
                   ) -> tuple[dict[str, float | None], list[dict[str, str]]]:
        """Score each study; returns ``(scores by id, skipped)`` where ``skipped`` lists ``{"id", "reason"}``."""
        scores: dict[str, float | None] = {}
        skipped: list[dict[str, str]] = []
        for image_id in image_ids:
            try:
                scores[image_id] = self.score_image(image_id, datastore, force=force)
            except UnscorableStudy as exc:
                logger.warning("%s: skipping study %s: %s", SCORE_KEY, image_id, exc)
                skipped.append({"id": image_id, "reason": str(exc)})
        return scores, skipped

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        scores, skipped = self.score_many(datastore.get_unlabeled_images(), datastore, bool(request.get("force")))
        return {
            "method": SCORE_KEY,
            "scores": {k: v for k, v in scores.items() if v is not None},
            "skipped": skipped,
        }
